"""The daemon's builds: resolve a request to a commit and a spec digest, deduplicate on that pair, queue,
run each in a worker process with a time limit, cancel, and recover after a restart.

Everything here runs on the event loop thread (the store is used only there); git, planning and the
engine are called through threads, the build itself in a subprocess (r2env/serve/worker.py)."""

from __future__ import annotations

import asyncio
import json
import os
import pickle
import re
import secrets
import shutil
import signal
import sys
import traceback
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable

from r2env.config import PublishSettings, Settings
from r2env.errors import SpecError, UsageError
from r2env.pipeline import plan_checkout
from r2env.redact import safe_line
from r2env.repo import leads_outside
from r2env.serve.config import ServeSettings
from r2env.serve.dockerfile_policy import check_dockerfile
from r2env.serve.mirrors import Mirrors
from r2env.serve.sources import validate_ref, validate_repo
from r2env.serve.store import BUILD_ACTIVE, Build, Store
from r2env.serve.worker import Job
from r2env.source import Checkout

KILL_GRACE_SECONDS = 5.0


class QueueFull(UsageError):
    http_status = 429


def link_out_of(root: Path) -> str:
    """The first symbolic link under `root` (outside .git) that points outside it; "" when none does."""
    for directory, folders, files in os.walk(root):
        folders[:] = [name for name in folders if name != ".git"]
        for name in (*folders, *files):
            path = Path(directory) / name
            if path.is_symlink() and leads_outside(path, root):
                return path.relative_to(root).as_posix()
    return ""


class Changes:
    """Wakes everyone waiting for news (a new event, a state change). Take `current()` before reading the
    store, then wait on it: nothing written in between is missed."""

    def __init__(self) -> None:
        self._event = asyncio.Event()

    def current(self) -> asyncio.Event:
        return self._event

    def fire(self) -> None:
        self._event.set()
        self._event = asyncio.Event()


def image_name(url: str, commit: str, spec_digest: str) -> str:
    name = url.rstrip("/").rsplit("/", 1)[-1].removesuffix(".git").lower()
    # Docker allows one separator between alphanumerics ('.', '_', '__' or dashes): runs like '..' or '_.' become '-'.
    slug = re.sub(r"[._-]{2,}", "-", re.sub(r"[^a-z0-9._-]+", "-", name))[:60].strip("-._") or "repo"
    return f"r2env-serve/{slug}:{commit[:12] or 'nocommit'}-{spec_digest.removeprefix('sha256:')[:12]}"


class Builds:
    def __init__(self, store: Store, settings: Settings, serve: ServeSettings, image_exists: Callable[[str], bool],
                 changes: Changes, log: Callable[[str], None]) -> None:
        self.store = store
        # The daemon builds what was asked, locally: publishing and relocking are for the CLI and CI.
        self.settings = replace(settings, publish=PublishSettings(), relock=False, ref="", build_memory=serve.build_memory,
                                public_packages_only=True)
        self.serve = serve
        self.image_exists = image_exists
        self.changes = changes
        self.log = log
        self.mirrors = Mirrors(serve.state_dir / "mirrors", serve.sources, timeout=serve.resolve_timeout, max_size=serve.max_repo_size)
        self.checkouts = serve.state_dir / "checkouts"
        self.checkouts.mkdir(parents=True, exist_ok=True)
        self._slots = asyncio.Semaphore(serve.max_builds)
        self._resolving: dict[tuple[str, str], asyncio.Future[Build]] = {}
        self._digests: dict[str, str] = {}  # commit -> spec digest: the settings do not change while the daemon runs
        self._tasks: dict[str, asyncio.Task[None]] = {}

    # requests

    async def submit(self, repo: str, ref: str) -> tuple[Build, bool]:
        """The build for this repository and ref: a new one (True), or the queued, running or finished build of the
        same commit and spec (False). Concurrent requests for the same repository and ref share one resolution."""
        url = validate_repo(repo, self.serve.sources)
        ref = validate_ref(ref)
        key = (url, ref)
        pending = self._resolving.get(key)
        if pending is not None:
            return await asyncio.shield(pending), False
        future: asyncio.Future[Build] = asyncio.get_running_loop().create_future()
        self._resolving[key] = future
        try:
            build, created = await self._resolve(url, ref)
        except asyncio.CancelledError:
            future.cancel()
            raise
        except Exception as error:
            future.set_exception(error)
            future.exception()  # marks it retrieved: the waiters re-raise it, nobody else needs it
            raise
        else:
            future.set_result(build)
            return build, created
        finally:
            del self._resolving[key]

    async def _resolve(self, url: str, ref: str) -> tuple[Build, bool]:
        commit = await asyncio.to_thread(self.mirrors.resolve, url, ref)
        directory: Path | None = None
        try:
            spec_digest = self._digests.get(commit)
            if spec_digest is None:
                directory = await self._export(url, commit)
                planned = await asyncio.to_thread(plan_checkout, Checkout(directory, url, commit, ref), self.settings)
                if planned.spec.dockerfile:  # before its digest is remembered: a refused commit is checked every time
                    await asyncio.to_thread(check_dockerfile, directory / planned.spec.dockerfile, planned.spec.dockerfile)
                spec_digest = self._digests[commit] = planned.spec.digest
            existing = self.store.build_for(commit, spec_digest, BUILD_ACTIVE)
            if existing is None:
                done = self.store.build_for(commit, spec_digest, ("built",))
                if done is not None and await asyncio.to_thread(self.image_exists, done.image):
                    existing = done
            if existing is not None:
                return existing, False
            if directory is None:
                directory = await self._export(url, commit)
            # Looked at again after the last wait, with none before the build is added: a request for another ref of
            # the same commit may have queued it meanwhile.
            existing = self.store.build_for(commit, spec_digest, BUILD_ACTIVE)
            if existing is not None:
                return existing, False
            queued = self.store.build_counts().get("queued", 0)
            if queued >= self.serve.max_queued:
                raise QueueFull(f"{queued} builds are waiting in the queue, the most this server allows",
                                "try again later (GET /api/v1/health shows the queue); a repository already built or queued is still answered")
            build = self.store.add_build(url, ref, commit, spec_digest, image_name(url, commit, spec_digest), str(directory))
            directory = None  # the build owns it now
            self._event(build.id, "fetch", "info", f"queued {url}" + (f" at {ref}" if ref else "") + f" (commit {commit[:12]})")
            self._schedule(build)
            return build, True
        finally:
            if directory is not None:
                shutil.rmtree(directory, ignore_errors=True)

    async def _export(self, url: str, commit: str) -> Path:
        directory = self.checkouts / secrets.token_hex(8)
        await asyncio.to_thread(self.mirrors.export, url, commit, directory)
        escaping = link_out_of(directory)
        if escaping:
            shutil.rmtree(directory, ignore_errors=True)
            # A client's repository must not make the daemon read (and echo in an error) a file of its host.
            raise SpecError(f"{url}: {escaping} is a symbolic link out of the repository", "this server builds only repositories whose links stay inside them")
        return directory

    def cancel(self, build_id: str) -> Build:
        """Stop a queued or running build; its state becomes cancelled."""
        task = self._tasks.get(build_id)
        if task is not None:
            task.cancel()
        build = self.store.build(build_id)
        assert build is not None
        if build.state in BUILD_ACTIVE:
            self._event(build_id, "done", "info", "build cancelled")
            build = self.store.set_build(build_id, state="cancelled", error="the build was cancelled", hint="submit it again to rebuild")
            self.changes.fire()
        return build

    # running

    def _schedule(self, build: Build) -> None:
        task = asyncio.create_task(self._run(build))
        self._tasks[build.id] = task
        task.add_done_callback(lambda _: self._tasks.pop(build.id, None))

    async def _run(self, queued: Build) -> None:
        try:
            async with self._slots:
                build = self.store.build(queued.id)
                if build is None or build.state != "queued":
                    return
                self.store.set_build(build.id, state="building")
                self._event(build.id, "fetch", "info", f"building {build.repo} at commit {build.commit[:12]} as {build.image}")
                await self._work(build)
        except Exception as error:  # a bug must fail the build, not leave it "building" for ever
            self.log(f"build {queued.id}: {traceback.format_exc()}")
            self._fail(queued.id, f"internal error: {type(error).__name__}: {error}", "see the daemon's log; please report it")
        finally:
            # A build still queued when the daemon stops keeps its checkout: it runs after the restart.
            ended = self.store.build(queued.id)
            if ended is None or ended.state not in ("queued",):
                shutil.rmtree(queued.checkout, ignore_errors=True)
            self.changes.fire()

    async def _work(self, build: Build) -> None:
        job = Job(Checkout(Path(build.checkout), build.repo, build.commit, build.ref), replace(self.settings, image_name=build.image))
        # Its own session: the worker and the docker CLI it runs are one process group, killed together.
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "r2env.serve.worker", stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            start_new_session=True, limit=1 << 20,
        )
        assert process.stdin is not None
        process.stdin.write(pickle.dumps(job))
        await process.stdin.drain()
        process.stdin.close()
        try:
            outcome = await asyncio.wait_for(self._follow(build.id, process), timeout=self.serve.build_timeout)
        except asyncio.TimeoutError:
            await _kill(process)
            self._fail(build.id, f"the build took longer than {self.serve.build_timeout:g} s and was stopped",
                       "make the build faster, or raise c.Serve.build_timeout")
            return
        except asyncio.CancelledError:
            await _kill(process)
            raise
        if "result" in outcome:
            result = outcome["result"]
            self._event(build.id, "done", "result", f"built {result['image']}")
            self.store.set_build(build.id, state="built", cached=bool(result.get("cached")))
        else:
            self._fail(build.id, outcome.get("error") or f"the build process ended with code {process.returncode}",
                       outcome.get("hint") or "see the daemon's log", outcome.get("details", ""))

    async def _follow(self, build_id: str, process: asyncio.subprocess.Process) -> dict[str, Any]:
        assert process.stdout is not None
        outcome: dict[str, Any] = {}
        async for line in process.stdout:
            record = json.loads(line)
            if "result" in record or "error" in record:
                outcome = record
            else:
                self._event(build_id, record["phase"], record["kind"], record["message"],
                            tuple(record["progress"]) if record.get("progress") else None)
        await process.wait()
        return outcome

    def _fail(self, build_id: str, error: str, hint: str, details: str = "") -> None:
        # The record is served as JSON and kept in SQLite: redacted and cut to an excerpt, as every error line.
        error, hint = safe_line(error), safe_line(hint)
        # A failed step's last lines (the details) were streamed as it ran: only what the log lacks is added.
        logged = self.store.last_messages(build_id, 200)
        for line in details.splitlines():
            if line not in logged:
                self._event(build_id, "build", "log", line)
        self._event(build_id, "done", "info", f"build failed: {error}" + (f": {hint}" if hint else ""))
        self.store.set_build(build_id, state="failed", error=error, hint=hint)

    def _event(self, build_id: str, phase: str, kind: str, message: str, progress: tuple[int, int] | None = None) -> None:
        self.store.add_event(build_id, phase, kind, message, progress)
        self.changes.fire()

    # restart

    def recover(self) -> None:
        """Builds that were running when the daemon stopped are failed; queued ones run again when their checkout
        survived; checkouts nobody owns are removed."""
        for kind, item in self.store.interrupted():
            self.log(f"{kind} {item} was interrupted by the restart: marked failed")
        keep: set[str] = set()
        for build in reversed(self.store.builds(states=("queued",))):
            if Path(build.checkout).is_dir():
                keep.add(build.checkout)
                self._schedule(build)
            else:
                self.log(f"build {build.id} was queued, but its checkout is gone: marked failed")
                self._fail(build.id, "the build was interrupted by restart before it started, and its checkout is gone", "submit it again")
        for directory in self.checkouts.iterdir():
            if str(directory) not in keep:
                shutil.rmtree(directory, ignore_errors=True)

    def counts(self) -> dict[str, int]:
        counts = self.store.build_counts()
        return {state: counts.get(state, 0) for state in BUILD_ACTIVE}

    async def close(self) -> None:
        """Daemon shutdown: running builds are stopped (and will read as interrupted after the restart)."""
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def _kill(process: asyncio.subprocess.Process) -> None:
    """SIGTERM to the worker's whole group (the docker CLI stops BuildKit's build), SIGKILL after a grace period."""
    for signum in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(process.pid, signum)
        except ProcessLookupError:
            return
        try:
            await asyncio.wait_for(process.wait(), KILL_GRACE_SECONDS)
            return
        except asyncio.TimeoutError:
            continue
