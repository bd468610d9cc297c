"""Git mirrors of the repositories clients ask for: one bare clone per URL, fetched on demand, from which each build
gets its own checkout. Every git process runs in `git_environment`, which pins the transports the policy allows,
never prompts and ignores configuration that could send git elsewhere."""

from __future__ import annotations

import fcntl
import hashlib
import math
import os
import shutil
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

from r2env.errors import SourceError, UsageError
from r2env.serve.sources import FULL_COMMIT, SourcePolicy, ref_problem, shown, validate_ref, validate_repo
from r2env.source import Checkout

_KEPT_GIT_VARIABLES = ("GIT_SSL_CAINFO", "GIT_SSL_CAPATH", "GIT_PROXY_SSL_CAINFO", "GIT_SSH", "GIT_SSH_COMMAND", "GIT_SSH_VARIANT")
_EXISTING_REF = "give a branch, tag or commit that exists in the repository"
SIZE_CHECK_SECONDS = 0.5  # how often a clone, fetch or checkout is measured against c.Serve.max_repo_size

def git_environment(policy: SourcePolicy, base: Mapping[str, str]) -> dict[str, str]:
    """The environment for every git process the daemon runs, from `base` (the daemon's own environment)."""
    environment = {
        key: value
        for key, value in base.items()
        # Everything git reads from GIT_* (GIT_DIR, GIT_CONFIG_PARAMETERS, GIT_ALLOW_PROTOCOL, GIT_ASKPASS, …) is
        # decided here, except how to reach the network: CA bundles and the administrator's ssh command.
        # GIT_SSL_NO_VERIFY is dropped on purpose: use GIT_SSL_CAINFO for a private CA.
        if not key.startswith("GIT_") or key in _KEPT_GIT_VARIABLES
    }
    for key in ("SSH_ASKPASS", "SSH_ASKPASS_REQUIRE"):  # a graphical password prompt would hang a build
        environment.pop(key, None)
    protocols = sorted({scheme.lower() for scheme in policy.schemes} | ({"file"} if policy.allow_local else set()))
    environment.update(
        {
            # Never wait for a password: a private or missing repository fails at once (git(1), GIT_TERMINAL_PROMPT).
            "GIT_TERMINAL_PROMPT": "0",
            # Overrides protocol.allow: submodules, redirects and remote helpers (ext::, fd::) cannot use another
            # transport than the policy's (git-config(1), protocol.allow; CVE-2015-7545).
            "GIT_ALLOW_PROTOCOL": ":".join(protocols),
            # The operator's system and personal git configuration is not the daemon's: it can hold credential
            # helpers (clients would borrow the operator's access), url.*.insteadOf rewrites, filter drivers such
            # as git-lfs (a repository's .lfsconfig could then send requests anywhere) and core.fsmonitor commands.
            # Proxies and CAs still come from the environment (https_proxy, SSL_CERT_FILE, GIT_SSL_CAINFO).
            "GIT_CONFIG_NOSYSTEM": "1",
            "GIT_CONFIG_GLOBAL": os.devnull,
            # Attributes outside the repository (~/.config/git/attributes, /etc/gitattributes) could change line
            # endings at checkout: the same commit must give the same files.
            "GIT_ATTR_NOSYSTEM": "1",
            "GIT_CONFIG_COUNT": "2",
            "GIT_CONFIG_KEY_0": "core.attributesFile",
            "GIT_CONFIG_VALUE_0": os.devnull,
            # git follows an HTTP redirect of its first request by default (http.followRedirects=initial), so an
            # allowed host answering 301 would make the daemon clone from any host at all, past allowed_hosts
            # (issue 17). Command-line configuration outranks the repository's own (git-config(1), FILES).
            "GIT_CONFIG_KEY_1": "http.followRedirects",
            "GIT_CONFIG_VALUE_1": "false",
        }
    )
    if "ssh" in protocols and "GIT_SSH_COMMAND" not in environment and "GIT_SSH" not in environment:
        environment["GIT_SSH_COMMAND"] = "ssh -o BatchMode=yes"  # ssh asks on the terminal, not through git
    return environment


class Mirrors:
    """One bare mirror per repository URL under `root` (named by a hash of the URL), safe to use from several
    threads and processes: a file lock per URL (fcntl.flock) serialises clone, fetch and export of one repository."""

    def __init__(
        self, root: Path, policy: SourcePolicy, *, timeout: float = 300.0, environ: Mapping[str, str] | None = None,
        max_size: int = 0,
    ) -> None:
        self._root = root
        self._policy = policy
        self._timeout = timeout  # for each git command
        self._max_size = max_size  # bytes a mirror, or a checkout's files, may take; 0: no limit (c.Serve.max_repo_size)
        base = os.environ if environ is None else environ
        self._environment = git_environment(policy, base)
        # Exporting clones from our own mirror, a local path: git counts that as the file transport, which the
        # policy rightly refuses for clients. This environment allows nothing else, and export never fetches.
        self._local_environment = {**self._environment, "GIT_ALLOW_PROTOCOL": "file"}
        self._updated: dict[str, float] = {}  # URL -> when its last successful clone or fetch started (monotonic)

    def resolve(self, url: str, ref: str) -> str:
        """Clone or update the mirror, then the full commit of `ref` ("" or "HEAD": the remote's default branch).
        SourceError with one line on any failure."""
        url, ref = validate_repo(url, self._policy), validate_ref(ref)
        if FULL_COMMIT.fullmatch(ref.lower()):
            ref = ref.lower()  # git prints and fetches object names in lower case
        mirror = self._mirror(url)
        if FULL_COMMIT.fullmatch(ref) and mirror.is_dir():
            known = self._commit(mirror, ref, url)  # a commit never changes: no need to ask the remote
            if known:
                return known
        asked = time.monotonic()
        with self._locked(url):
            # Twenty requests for one repository arriving together need one fetch, not twenty in a row: a fetch
            # that started after this call did sees everything this call could.
            if self._updated.get(url, -math.inf) <= asked:
                started = time.monotonic()
                if mirror.is_dir():
                    self._fetch(mirror, url)
                else:
                    self._clone(url, mirror)
                self._updated[url] = started  # one key per URL, written under that URL's lock
            commit = self._commit(mirror, ref or "HEAD", url)
            if not commit and FULL_COMMIT.fullmatch(ref):
                # A commit on no branch or tag (a pull request's, say): most servers hand it out when asked by name.
                fetched = self._run(["-C", str(mirror), "fetch", "--quiet", "origin", ref], self._environment, url, "fetch")
                commit = self._commit(mirror, ref, url) if fetched.returncode == 0 else ""
        if not commit:
            if not ref:
                raise SourceError(f"{url}: the repository has no default branch (HEAD)", _EXISTING_REF)
            raise SourceError(f"{url}: unknown ref {ref!r}", _EXISTING_REF)
        return commit

    def export(self, url: str, commit: str, destination: Path) -> Checkout:
        """A working tree of `commit` (a full commit id from resolve) at `destination`, which must not exist, with a
        self-contained .git (tools such as setuptools-scm read it) whose origin is `url`."""
        url = validate_repo(url, self._policy)
        commit = commit.lower()
        if not FULL_COMMIT.fullmatch(commit):
            raise UsageError(f"{shown(commit)!r} is not a full commit id", "export the commit that resolve returned")
        if destination.exists() or destination.is_symlink():
            raise SourceError(f"{destination}: already exists", "export into a new directory")
        mirror = self._mirror(url)
        with self._locked(url):  # not while a fetch (and its gc) rewrites the packs we link to
            if not mirror.is_dir():
                raise SourceError(f"{url}: no mirror yet", "resolve the ref before exporting it")
            # --local hard-links the mirror's objects (cheap, copies across file systems) where --shared would
            # write .git/objects/info/alternates naming a host path: the build context copies .git into the image,
            # where that path does not exist and git would find no objects at all.
            clone = ["clone", "--local", "--no-checkout", "--quiet", "--", str(mirror), str(destination)]
            self._git(clone, url, "clone", "check the space on the server's disk", self._local_environment)
        try:
            checkout = ["-C", str(destination), "checkout", "--quiet", "--detach", commit, "--"]
            # A small pack can unpack to a huge tree (a file of zeros compresses 1000:1): the files are measured too.
            self._git(checkout, url, "checkout", "resolve the ref again, then export", self._local_environment, watch=destination)
            origin = ["-C", str(destination), "remote", "set-url", "origin", "--", url]
            self._git(origin, url, "remote", "check the destination directory", self._local_environment)
        except BaseException:
            shutil.rmtree(destination, ignore_errors=True)  # ours: git clone made it
            raise
        return Checkout(path=destination, url=url, commit=commit, ref="")

    # --- helpers -----------------------------------------------------------------------------------------

    def _mirror(self, url: str) -> Path:
        return self._root / (hashlib.sha256(url.encode()).hexdigest()[:32] + ".git")

    @contextmanager
    def _locked(self, url: str) -> Iterator[None]:
        """An exclusive lock on one URL's mirror. flock conflicts between separate open() calls even within one
        process, so it serialises threads as well as the daemon's worker processes; the kernel drops it when its
        holder dies, so a killed worker never leaves it taken."""
        self._root.mkdir(parents=True, exist_ok=True)
        with open(self._mirror(url).with_suffix(".lock"), "w") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def _clone(self, url: str, mirror: Path) -> None:
        """Clone beside the mirror, configure, then rename: a mirror directory is always complete."""
        for leftover in self._root.glob(mirror.name + ".tmp-*"):  # from a process killed mid-clone
            shutil.rmtree(leftover, ignore_errors=True)
        scratch = mirror.with_name(f"{mirror.name}.tmp-{uuid.uuid4().hex[:8]}")
        try:
            # --bare rather than --mirror: --mirror fetches every ref, GitHub's refs/pull/* (two per pull request,
            # the merge refs rewritten whenever the base moves) and Gerrit's refs/changes/* included. Branches and
            # tags are what clients name; commits elsewhere are fetched by id when asked for (resolve).
            clone = ["clone", "--bare", "--quiet", "--", url, str(scratch)]
            self._git(clone, url, "clone", "check the URL and that the repository is public", watch=scratch)
            config = (
                ("remote.origin.fetch", "+refs/heads/*:refs/heads/*"),
                ("remote.origin.fetch", "+refs/tags/*:refs/tags/*"),
                # Automatic gc in the foreground, under our lock: a detached one would still run after we return.
                ("gc.autoDetach", "false"),
            )
            for key, value in config:
                self._git(["-C", str(scratch), "config", "--add", key, value], url, "config", "check the mirror directory")
            scratch.rename(mirror)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)

    def _clear_stale_locks(self, mirror: Path) -> None:
        """Remove git's own lock files that outlived any git we could have started: a git killed with its daemon
        leaves packed-refs.lock or refs/…/x.lock behind, and every later fetch would fail on them."""
        candidates = [mirror / name for name in ("packed-refs.lock", "HEAD.lock", "config.lock", "shallow.lock")]
        candidates += (mirror / "refs").rglob("*.lock")
        horizon = time.time() - max(self._timeout, 60.0) - 60.0
        for path in candidates:
            try:
                if path.lstat().st_mtime < horizon:
                    path.unlink()
            except FileNotFoundError:
                pass

    def _fetch(self, mirror: Path, url: str) -> None:
        self._clear_stale_locks(mirror)
        hint = "check that the repository still exists, then try again"
        try:
            self._git(["-C", str(mirror), "fetch", "--quiet", "--prune", "origin"], url, "fetch", hint, watch=mirror)
        except TooLarge:
            shutil.rmtree(mirror, ignore_errors=True)  # grown past the limit: the next request clones (and is refused) anew
            raise
        # fetch never moves a bare repository's HEAD, so a renamed default branch (master -> main) would go
        # unnoticed, or leave HEAD dangling once the old branch is pruned: ask the remote which branch HEAD is.
        listed = self._git(["-C", str(mirror), "ls-remote", "--symref", "origin", "HEAD"], url, "ls-remote", hint)
        for line in listed.stdout.splitlines():
            target = line.removeprefix("ref: ").split("\t", 1)[0] if line.startswith("ref: ") else ""
            if target.startswith("refs/heads/") and not ref_problem(target):
                self._git(["-C", str(mirror), "symbolic-ref", "HEAD", target], url, "symbolic-ref", hint)
                return

    def _commit(self, mirror: Path, name: str, url: str) -> str:
        argv = ["-C", str(mirror), "rev-parse", "--verify", "--quiet", "--end-of-options", f"{name}^{{commit}}"]
        result = self._run(argv, self._environment, url, "rev-parse")
        return result.stdout.strip() if result.returncode == 0 else ""

    def _git(
        self, argv: Sequence[str], url: str, what: str, hint: str, environment: Mapping[str, str] | None = None,
        watch: Path | None = None,
    ) -> "subprocess.CompletedProcess[str]":
        """git that must succeed: SourceError with git's reason otherwise. With `watch`, the directory git writes
        may not grow past the size limit (TooLarge)."""
        result = self._run(argv, self._environment if environment is None else environment, url, what, watch)
        if result.returncode != 0:
            raise SourceError(f"{url}: git {what} failed: {_reason(result.stderr)}", hint)
        return result

    def _run(self, argv: Sequence[str], environment: Mapping[str, str], url: str, what: str,
             watch: Path | None = None) -> "subprocess.CompletedProcess[str]":
        """git in a session of its own: no terminal to prompt on, and a timeout ends git with its helpers."""
        try:
            process = subprocess.Popen(
                ["git", *argv],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                env=dict(environment),
                encoding="utf-8",
                errors="replace",
                start_new_session=True,
            )
        except OSError as error:
            raise SourceError(f"cannot run git: {error.strerror}", "install git on the server") from None
        limit = self._max_size if watch is not None else 0
        deadline = time.monotonic() + self._timeout
        while True:
            remaining = deadline - time.monotonic()
            try:
                # Retrying communicate() after its timeout loses no output (subprocess docs).
                stdout, stderr = process.communicate(timeout=max(0.0, min(remaining, SIZE_CHECK_SECONDS) if limit else remaining))
                break
            except subprocess.TimeoutExpired:
                if limit and watch is not None and _tree_size(watch) > limit:
                    _stop(process)
                    raise TooLarge(url, limit) from None
                if time.monotonic() >= deadline:
                    _stop(process)
                    message = f"{url}: git {what} did not finish within {self._timeout:g} s"
                    raise SourceError(message, "the repository may be very large or its server slow; try again later") from None
        if limit and watch is not None and process.returncode == 0 and _tree_size(watch) > limit:
            raise TooLarge(url, limit)
        return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)


class TooLarge(SourceError):
    def __init__(self, url: str, limit: int) -> None:
        super().__init__(f"{url}: the repository is larger than {_shown_size(limit)}, the most this server fetches or checks out",
                         "build it elsewhere, or ask the server's operator to raise c.Serve.max_repo_size")


def _shown_size(size: int) -> str:
    for unit, factor in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if size >= factor:
            return f"{size / factor:g} {unit}"
    return f"{size} bytes"


def _tree_size(root: Path) -> int:
    """Bytes of the files under `root`, without a checkout's own .git (its objects are the mirror's, hard-linked)."""
    total = 0
    for directory, folders, files in os.walk(root):
        if Path(directory) == root:
            folders[:] = [name for name in folders if name != ".git"]
        for name in files:
            try:
                total += os.lstat(os.path.join(directory, name)).st_size
            except OSError:
                pass  # git renames and removes its temporary files as it goes
    return total


def _stop(process: "subprocess.Popen[str]") -> None:
    """SIGTERM first (git removes its lock files on it), SIGKILL for whatever of the group is left."""
    for signal_number, grace in ((signal.SIGTERM, 5.0), (signal.SIGKILL, None)):
        try:
            os.killpg(process.pid, signal_number)
        except ProcessLookupError:
            pass
        try:
            process.communicate(timeout=grace)
            return
        except subprocess.TimeoutExpired:
            continue


def _reason(stderr: str) -> str:
    """git's reason in one printable line: its last "fatal:" or "error:" line (advice follows those, as after a
    lock failure), else its last line."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    marked = [line.split(":", 1)[1].strip() for line in lines if line.startswith(("fatal:", "error:"))]
    reason = (marked or lines or ["no output"])[-1]
    return "".join(c if c.isprintable() else "?" for c in reason)
