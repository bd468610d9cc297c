"""The container engine: the only module that imports docker. Builds go through BuildKit (the docker CLI)
when it is available, else through the engine API's classic builder (docker-py)."""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import subprocess
import tempfile
import urllib.parse
from collections import deque
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterator, Literal, Mapping, Protocol

from r2env.deferred_imports import ImportedOnFirstUse, import_lazily, stand_in_while_importing
from r2env.launch.container import SERVER_PORT, ContainerInfo, ContainerRequest, env_dict
from r2env.build_secrets import PROXY_VARIABLES, without_credentials
from r2env.engine_address import EngineAddress
from r2env.errors import BuildError, EngineUnavailableError, LaunchError, PushError, UsageError
from r2env.events import BuildEvent, Kind, Phase
from r2env.launch.gpus import GPU_CAPABILITIES, TOOLKIT_HINT, GpuRequest, no_gpu_runtime
from r2env.registry import Credentials
from r2env.render import display_command

import_lazily("paramiko")


def _import_docker_py() -> Any:
    with stand_in_while_importing("charset-normalizer", "charset_normalizer"):
        import docker
        import docker.errors
        import docker.types
    return docker


# docker-py loads at the first call that needs it (0.06 s here): `r2env build` starts the docker CLI before that.
docker: Any = ImportedOnFirstUse(_import_docker_py)

BuilderKind = Literal["buildx", "buildkit", "classic"]
_ENV_ARG = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# Variables the docker CLI reads for itself: a build arg of that name goes in argv rather than change how the CLI runs.
_CLI_ENV = ("DOCKER_", "BUILDKIT_", "BUILDX_", "PATH", "HOME", "XDG_", "SSL_CERT_", "TMPDIR", "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "no_proxy", "all_proxy")


@dataclass(frozen=True)
class BuildRequest:
    context: Path
    dockerfile: Path  # may lie outside the context
    tag: str
    labels: Mapping[str, str]
    build_args: Mapping[str, str]
    secrets: Mapping[str, Path]  # BuildKit secret id -> file
    no_cache: bool = False
    cache_from: tuple[str, ...] = ()  # images whose layers the build may reuse (BuildKit reads their inline cache)
    inline_cache: bool = False  # write cache metadata into the image, so a later --cache-from can reuse it
    credentials: Credentials | None = None  # for a --cache-from registry; else the Docker config's
    # Ignore patterns (Docker's syntax) that replace the context's .dockerignore; None keeps Docker's usual reading
    # (a repository's own Dockerfile). Only for a Dockerfile outside the context: BuildKit reads them from beside it.
    ignore: tuple[str, ...] | None = None
    # Memory limit of each build step (Docker's notation, 4g). Only the classic builder applies it: BuildKit through the
    # docker CLI ignores `docker build --memory` (and --cgroup-parent) on Docker Engine 20.10, seen here (issue 17).
    memory: str = ""


class Engine(Protocol):
    @property
    def builder(self) -> BuilderKind: ...

    def image_id(self, reference: str) -> str | None: ...

    def pull(self, reference: str, credentials: Credentials | None = None) -> bool: ...

    def load(self, archive: Path) -> None: ...

    def tag(self, image: str, reference: str) -> None: ...

    def build(self, request: BuildRequest) -> Iterator[BuildEvent]: ...

    def image_labels(self, reference: str) -> dict[str, str]: ...

    def run(self, image: str, command: list[str]) -> tuple[int, str]: ...

    def image_size(self, reference: str) -> int: ...

    def push(self, reference: str, credentials: Credentials | None) -> str: ...

    def registry_digest(self, reference: str, credentials: Credentials | None) -> str | None: ...


@dataclass(frozen=True)
class _Cli:
    path: str
    kind: BuilderKind


def _run(argv: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, check=False, timeout=30)


_PLUGIN_DIRS = ("/usr/local/lib/docker/cli-plugins", "/usr/local/libexec/docker/cli-plugins", "/usr/lib/docker/cli-plugins",
                "/usr/libexec/docker/cli-plugins")


def _cli_candidates() -> list[str]:
    return [p for p in dict.fromkeys(p for p in (shutil.which("docker"), "/usr/bin/docker", "/usr/local/bin/docker") if p)
            if os.access(p, os.X_OK)]


def _cli_fingerprint(candidates: list[str]) -> str:
    """What the answer of find_buildkit_cli depends on: the CLIs and the buildx plugins they would find."""
    config = os.environ.get("DOCKER_CONFIG") or os.path.expanduser("~/.docker")
    plugins = [os.path.join(directory, "docker-buildx") for directory in (os.path.join(config, "cli-plugins"), *_PLUGIN_DIRS)]
    facts = []
    for path in [*candidates, *plugins]:
        try:
            status = os.stat(path)
            facts.append(f"{path}:{os.path.realpath(path)}:{status.st_size}:{status.st_mtime_ns}")
        except OSError:
            facts.append(f"{path}:-")
    return "\n".join(facts)


def _cli_memo() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache")) / "r2env" / "docker-cli.json"


@lru_cache(maxsize=1)
def find_buildkit_cli() -> _Cli | None:
    """A docker CLI that can drive BuildKit: one with the buildx plugin, or a pre-23 client whose
    `DOCKER_BUILDKIT=1 docker build` has BuildKit built in (Debian's docker.io 20.10).
    Asking the CLIs takes four processes (0.1 s); the answer is kept on disk while the CLIs and plugins stay the same."""
    candidates = _cli_candidates()
    fingerprint = _cli_fingerprint(candidates)
    try:
        memo = json.loads(_cli_memo().read_text(encoding="utf-8"))
        if memo["fingerprint"] == fingerprint:
            return _Cli(memo["path"], memo["kind"]) if memo["path"] else None
    except (OSError, ValueError, KeyError, TypeError):
        pass
    found = _ask_clis(candidates)
    try:
        _cli_memo().parent.mkdir(parents=True, exist_ok=True)
        scratch = _cli_memo().with_suffix(f".{os.getpid()}.tmp")
        scratch.write_text(json.dumps({"fingerprint": fingerprint, "path": found.path if found else "", "kind": found.kind if found else ""}),
                           encoding="utf-8")
        scratch.replace(_cli_memo())
    except OSError:
        pass  # a read-only home: ask again next time
    return found


def _ask_clis(candidates: list[str]) -> _Cli | None:
    for path in candidates:
        if _run([path, "buildx", "version"]).returncode == 0:
            return _Cli(path, "buildx")
    for path in candidates:
        version = _run([path, "version", "--format", "{{.Client.Version}}"]).stdout.strip()
        match = re.match(r"(\d+)\.", version)
        if match and int(match.group(1)) < 23:
            return _Cli(path, "buildkit")
    return None


_STEP = re.compile(r"^#(\d+) \[(?:[\w-]+ )?\s*(\d+)/(\d+)\] (.*)$")
_LOG = re.compile(r"^#(\d+) (\d+\.\d+) (.*)$")
_CACHED = re.compile(r"^#(\d+) CACHED$")
_ERROR = re.compile(r"^#(\d+) ERROR: (.*)$")
_CACHE_IMPORT = re.compile(r"^#(\d+) importing cache manifest from (.*)$")


def parse_buildkit_progress(lines: Iterator[str], tail: int = 20) -> Iterator[BuildEvent]:
    """Turn `--progress=plain` output into BuildEvents; raise BuildError naming the failed step."""
    steps: dict[str, str] = {}
    logs: dict[str, deque[str]] = {}
    failure: tuple[str, str] | None = None
    cache_imports: dict[str, str] = {}
    for raw in lines:
        line = raw.rstrip("\n")
        if match := _CACHE_IMPORT.match(line):
            cache_imports[match.group(1)] = match.group(2)
        elif (match := _ERROR.match(line)) and match.group(1) in cache_imports:
            # A --cache-from image that is missing (a first CI run) or unreachable: BuildKit builds without it.
            yield BuildEvent(Phase.BUILD, Kind.INFO, f"no cache from {cache_imports[match.group(1)]}: {_shorten(match.group(2))}")
        elif match := _STEP.match(line):
            number, index, total, text = match.groups()
            text = display_command(text)
            steps[number] = text
            yield BuildEvent(Phase.BUILD, Kind.STEP, text, (int(index), int(total)))
        elif match := _CACHED.match(line):
            if match.group(1) in steps:
                yield BuildEvent(Phase.BUILD, Kind.CACHED, steps[match.group(1)])
        elif match := _LOG.match(line):
            number, _, text = match.groups()
            logs.setdefault(number, deque(maxlen=tail)).append(text)
            if number in steps:
                yield BuildEvent(Phase.BUILD, Kind.LOG, text)
        elif (match := _ERROR.match(line)) and failure is None:
            failure = (match.group(1), match.group(2))
    if failure:
        number, message = failure
        step = steps.get(number, "a build step")
        output = list(logs.get(number, ()))
        # A step may explain its own failure in one sentence (r2env's steps print "r2env: ..."): lead with it.
        own = [line.split("r2env: ", 1)[1] for line in output if line.startswith("r2env: ")]
        details = "\n".join([*output, _shorten(display_command(message), 300)])
        if own:
            raise BuildError(own[-1], details=details)
        raise BuildError(f"build step failed: {_shorten(step)}", "fix the step and build again", details=details)


def _shorten(text: str, limit: int = 200) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


class _Started:
    """The events of a build already started: when they end, or the iterator is closed before, it closes them (which
    stops a build that still runs) and then `cleanup` (what the build needed, such as a throwaway docker config)."""

    def __init__(self, events: Iterator[BuildEvent], cleanup: ExitStack, notes: tuple[BuildEvent, ...] = ()) -> None:
        self._events = events
        self._cleanup = cleanup
        self._notes = deque(notes)

    def __iter__(self) -> "_Started":
        return self

    def __next__(self) -> BuildEvent:
        if self._notes:
            return self._notes.popleft()
        try:
            return next(self._events)
        except BaseException:  # the end (StopIteration), a failed build, an interrupt
            self.close()
            raise

    def close(self) -> None:
        close = getattr(self._events, "close", None)
        try:
            if close is not None:
                close()
        finally:
            self._cleanup.close()


def _buildkit_events(process: subprocess.Popen[str]) -> Iterator[BuildEvent]:
    assert process.stdout is not None
    tail: deque[str] = deque(maxlen=20)

    def lines() -> Iterator[str]:
        for line in process.stdout:  # type: ignore[union-attr]
            tail.append(line.rstrip())
            yield line

    yield from parse_buildkit_progress(lines())
    if process.wait() != 0:
        raise BuildError("the image build failed", "fix the problem shown above and build again", details="\n".join(tail))


def _stop(process: subprocess.Popen[str]) -> None:
    if process.poll() is None:
        # Killed, not asked: on SIGTERM the docker CLI can wait half a minute and more for its BuildKit session
        # (seen here); BuildKit cancels a build whose client has gone.
        process.kill()
        process.wait()
    if process.stdout is not None:
        process.stdout.close()


class DockerEngine:
    """Docker through docker-py; image builds through BuildKit when a capable CLI is present."""

    def __init__(self, client: Any, cli: _Cli | None, env: Mapping[str, str] | None = None, buildx_builder: str = "",
                 host: str = "") -> None:
        self._docker = client  # None: made at the first call that needs it (connect_on_first_use)
        self._cli = cli
        # The environment of every docker CLI call: DOCKER_HOST and its TLS settings name the same engine as the client's.
        self._env = dict(os.environ if env is None else env)
        self._buildx_builder = buildx_builder
        self._host = host or self.host  # as errors name it: address.describe(), else DOCKER_HOST

    @classmethod
    def connect(cls, prefer_classic: bool = False, address: EngineAddress = EngineAddress()) -> "DockerEngine":
        """The engine at `address` (default: DOCKER_HOST, DOCKER_TLS_VERIFY and DOCKER_CERT_PATH, else the local
        socket), which has answered. tcp:// with TLS and ssh:// work for docker-py and the docker CLI alike; ssh goes
        through the ssh client (docker-py's use_ssh_client), as the docker CLI's does, so ~/.ssh/config and agents
        apply to both."""
        env = address.environment(os.environ)
        host = address.describe(os.environ)
        client = _open_client(env, host)
        return cls(client, _buildkit_cli(prefer_classic, address, env), env, address.buildx_builder, host)

    @classmethod
    def connect_on_first_use(cls, prefer_classic: bool = False, address: EngineAddress = EngineAddress()) -> "DockerEngine":
        """The same engine, asked (through docker-py) at the first call that needs it, which raises
        EngineUnavailableError if it does not answer. A build starts the docker CLI before that (pipeline.py)."""
        env = address.environment(os.environ)
        return cls(None, _buildkit_cli(prefer_classic, address, env), env, address.buildx_builder, address.describe(os.environ))

    @property
    def _client(self) -> Any:
        if self._docker is None:
            self._docker = _open_client(self._env, self._host)
        return self._docker

    @property
    def builder(self) -> BuilderKind:
        return self._cli.kind if self._cli else "classic"

    def image_id(self, reference: str) -> str | None:
        try:
            return str(self._client.images.get(reference).id)
        except docker.errors.ImageNotFound:
            return None

    def image_labels(self, reference: str) -> dict[str, str]:
        return dict(self._client.images.get(reference).labels or {})

    def run(self, image: str, command: list[str]) -> tuple[int, str]:
        """Run a command in a throwaway container; return its exit code and output. The container never outlives it."""
        container = self._client.containers.create(image, command, user="root", entrypoint=[])
        try:
            container.start()
            code = int(container.wait(timeout=600)["StatusCode"])
            return code, container.logs(stdout=True, stderr=True).decode(errors="replace")
        finally:
            container.remove(force=True)

    def pull(self, reference: str, credentials: Credentials | None = None) -> bool:
        try:
            self._client.images.pull(reference, auth_config=credentials.auth_config() if credentials else None)
        except docker.errors.DockerException:
            return False
        return True

    def load(self, archive: Path) -> None:
        with archive.open("rb") as stream:
            self._client.images.load(stream)

    def tag(self, image: str, reference: str) -> None:
        repository, _, tag = reference.rpartition(":") if ":" in reference.split("/")[-1] else (reference, "", "latest")
        self._client.images.get(image).tag(repository, tag)

    def image_size(self, reference: str) -> int:
        return int(self._client.images.get(reference).attrs.get("Size") or 0)

    def push(self, reference: str, credentials: Credentials | None) -> str:
        """Push one tag; return the manifest digest the registry stored. Without credentials, docker-py sends
        those of the Docker config (`docker login`, credential helpers)."""
        repository, _, tag = reference.rpartition(":")
        auth = credentials.auth_config() if credentials else None
        digest = ""
        try:
            for chunk in self._client.api.push(repository, tag, stream=True, decode=True, auth_config=auth):
                if "error" in chunk:
                    raise _push_error(reference, str(chunk["error"]))
                digest = str(chunk.get("aux", {}).get("Digest", digest))
        except docker.errors.APIError as error:
            raise _push_error(reference, str(error.explanation or error)) from None
        if not digest:
            raise PushError(f"pushing {reference} reported no digest", "check the registry's logs")
        return digest

    def registry_digest(self, reference: str, credentials: Credentials | None) -> str | None:
        """The manifest digest the registry has for `reference` (asked through the engine), or None if it has none."""
        auth = credentials.auth_config() if credentials else None
        try:
            return str(self._client.api.inspect_distribution(reference, auth_config=auth)["Descriptor"]["digest"])
        except docker.errors.NotFound:
            return None
        except docker.errors.APIError as error:
            text = str(error.explanation or error)
            if "manifest unknown" in text or "not found" in text.lower():
                return None
            raise _push_error(reference, text, asking=True) from None

    def build(self, request: BuildRequest) -> Iterator[BuildEvent]:
        """The build's events. With BuildKit the docker CLI starts at once, before the first event is asked for;
        closing the iterator (`close()`) stops a build that still runs."""
        if self._cli:
            return self._build_buildkit(self._cli, request)
        return self._build_classic(request)

    def _build_buildkit(self, cli: _Cli, request: BuildRequest) -> Iterator[BuildEvent]:
        argv = [cli.path, *(["buildx", "build", "--load"] if cli.kind == "buildx" else ["build"])]
        # A named builder (remote BuildKit, kubernetes, docker-container driver) builds; --load brings the image
        # into the engine of DOCKER_HOST, where the other calls look for it.
        argv += [f"--builder={self._buildx_builder}"] if self._buildx_builder else []
        argv += ["--progress=plain", "-f", str(request.dockerfile), "-t", request.tag]
        argv += [f"--label={key}={value}" for key, value in request.labels.items()]
        # `--build-arg KEY` takes KEY's value from the CLI's environment: values (proxy passwords, --build-arg
        # tokens) stay out of argv, which every user of the machine can read. Names the CLI itself reads stay in argv.
        by_name = {key: value for key, value in request.build_args.items()
                   if _ENV_ARG.match(key) and (self._env.get(key) == value or not key.startswith(_CLI_ENV) or _proxy_by_name(key, value, self._env))}
        argv += [f"--build-arg={key}" if key in by_name else f"--build-arg={key}={value}" for key, value in request.build_args.items()]
        argv += [f"--secret=id={name},src={path}" for name, path in request.secrets.items()]
        argv += ["--no-cache"] if request.no_cache else []
        argv += [f"--cache-from={image}" for image in request.cache_from]
        # Inline cache: the image's config records which build step made each layer, so a build on another
        # machine with --cache-from reuses the pushed layers (https://docs.docker.com/build/cache/backends/inline/).
        argv += ["--build-arg=BUILDKIT_INLINE_CACHE=1"] if request.inline_cache else []
        argv.append(str(request.context))
        if request.ignore is not None:
            _write_dockerfile_ignore(request)
        notes = (BuildEvent(Phase.BUILD, Kind.INFO, f"memory limit {request.memory} not applied: BuildKit through the docker CLI cannot limit build steps"),) if request.memory else ()
        cleanup = ExitStack()
        try:
            config = cleanup.enter_context(_docker_config(request.credentials))
            env = {**self._env, **by_name, "DOCKER_BUILDKIT": "1", "BUILDKIT_PROGRESS": "plain", **config}
            events = self._stream_buildkit(argv, env)
        except BaseException:
            cleanup.close()
            raise
        return _Started(events, cleanup, notes)

    def _stream_buildkit(self, argv: list[str], env: dict[str, str]) -> Iterator[BuildEvent]:
        """The docker CLI's build, started now; its events as they come."""
        process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
        stop = ExitStack()
        stop.callback(_stop, process)
        return _Started(_buildkit_events(process), stop)


    def _build_classic(self, request: BuildRequest) -> Iterator[BuildEvent]:
        if request.secrets:
            raise BuildError(
                "the classic builder cannot pass build secrets (a CA bundle from --extra-ca-certs, SSL_CERT_FILE, PIP_CERT "
                "or REQUESTS_CA_BUNDLE; proxy settings; --index-url) without leaving them in the image",
                "build with BuildKit (the default; a docker CLI with the buildx plugin, docker-buildx, provides it), "
                "or unset those settings",
            )
        # The classic builder reuses only local images' layers: pull the cache images first (a missing one is no error).
        auth = request.credentials.auth_config() if request.credentials else None
        for image in request.cache_from:
            try:
                self._client.images.pull(image, auth_config=auth)
            except docker.errors.DockerException:
                yield BuildEvent(Phase.BUILD, Kind.INFO, f"cache image {image} could not be pulled: building without it")
        with _classic_context(request) as context:
            yield from self._stream_classic(request, context)

    def _stream_classic(self, request: BuildRequest, context: dict[str, Any]) -> Iterator[BuildEvent]:
        try:
            stream = self._client.api.build(
                tag=request.tag, labels=dict(request.labels), buildargs=dict(request.build_args), decode=True, rm=True,
                forcerm=True, nocache=request.no_cache, cache_from=list(request.cache_from) or None,
                # memswap equal to memory: no swap beyond the limit (docker run --memory-swap semantics)
                container_limits=_memory_limits(request.memory), **context,
            )
            tail: deque[str] = deque(maxlen=20)
            for chunk in stream:
                if "error" in chunk:
                    raise BuildError(
                        f"build step failed: {str(chunk['error']).strip()}", "fix the step and build again", details="\n".join(tail)
                    )
                text = str(chunk.get("stream", "")).rstrip()
                if not text:
                    continue
                tail.append(text)
                if match := re.match(r"^Step (\d+)/(\d+) : (.*)$", text):
                    yield BuildEvent(Phase.BUILD, Kind.STEP, match.group(3), (int(match.group(1)), int(match.group(2))))
                elif text.strip() == "---> Using cache":
                    yield BuildEvent(Phase.BUILD, Kind.CACHED, "cached")
                else:
                    yield BuildEvent(Phase.BUILD, Kind.LOG, text)
        except docker.errors.APIError as error:
            raise BuildError(f"the engine refused the build: {error.explanation or error}", "check the Dockerfile") from None

    # --- containers the launcher starts ---------------------------------------------------------------

    @property
    def host(self) -> str:
        return self._env.get("DOCKER_HOST") or "unix:///var/run/docker.sock"

    @property
    def remote_host(self) -> str:
        """The engine's machine when it is another one (tcp:// or ssh:// to a non-loopback host), else "": where
        published ports are."""
        return remote_host_of(self.host)

    @property
    def environment(self) -> dict[str, str]:
        """The variables that name this engine, for the docker CLI."""
        return dict(self._env)

    def copy_image_to(self, other: "DockerEngine", reference: str) -> None:
        """Stream `reference` from this engine into `other` (docker save | docker load), for a daemon that builds
        on one engine and launches on another without a registry between them."""
        chunks = self._client.api.get_image(reference)
        other._client.api.load_image(chunks)

    def default_bridge(self) -> str:
        """The host interface of the network named "bridge", which the engine's BuildKit runs RUN steps on; "" when
        the engine has none (podman, a remote engine's own naming)."""
        try:
            attrs = self._client.networks.get("bridge").attrs
        except docker.errors.DockerException:
            return ""
        return str((attrs.get("Options") or {}).get("com.docker.network.bridge.name") or "")

    def cgroup_driver(self) -> str:
        """"cgroupfs" or "systemd" (where the engine puts containers' and BuildKit steps' cgroups); "" if unknown."""
        try:
            return str(self._client.info().get("CgroupDriver") or "")
        except docker.errors.DockerException:
            return ""

    def is_podman(self) -> bool:
        components = self._client.version().get("Components") or []
        return any("podman" in str(c.get("Name", "")).lower() for c in components)

    def image_config(self, reference: str) -> dict[str, Any]:
        """The image's Config (Cmd, Entrypoint, User, Env, Labels)."""
        return dict(self._client.images.get(reference).attrs.get("Config") or {})

    def _device_options(self, request: ContainerRequest) -> dict[str, Any]:
        if request.gpus is None:
            return {}
        if self.is_podman():
            return {"devices": [f"{name}:{name}" for name in request.gpus.cdi_devices()]}
        gpus = request.gpus
        device_request = docker.types.DeviceRequest(
            count=gpus.count if not gpus.device_ids else 0, device_ids=list(gpus.device_ids), capabilities=[list(GPU_CAPABILITIES)]
        )
        return {"device_requests": [device_request]}

    def gpu_support(self, image: str, gpus: GpuRequest) -> str:
        """"" when the engine can give a container these GPUs, else why not (the engine's own words).
        Docker accepts a device request at create and refuses it only at start, so a throwaway container tries."""
        runtimes = self._client.info().get("Runtimes") or {}
        if "nvidia" in runtimes:
            return ""
        if self.is_podman():
            return ""  # CDI names are checked when the container is created
        probe = ContainerRequest(image=image, command=("true",), gpus=gpus)
        try:
            container_id = self._create(probe, entrypoint=[])
        except docker.errors.APIError as error:
            return str(error.explanation or error)
        try:
            self._client.api.start(container_id)
        except docker.errors.APIError as error:
            text = str(error.explanation or error)
            # Only a device-driver refusal counts: a missing `true` in the image says nothing about GPUs.
            return text if "device driver" in text or "gpu" in text.lower() else ""
        finally:
            self._client.api.remove_container(container_id, force=True)
        return ""

    def _create(self, request: ContainerRequest, entrypoint: list[str] | None = None) -> str:
        options: dict[str, Any] = {
            "environment": dict(request.environment),
            "labels": dict(request.labels),
            "user": request.user or None,
            "mounts": [docker.types.Mount(m.container, m.host, type="bind", read_only=m.read_only) for m in request.mounts],
        }
        if request.publish:
            ip, port = request.publish
            options["ports"] = {f"{SERVER_PORT}/tcp": (ip, port or None)}
        if request.memory:
            options["mem_limit"] = request.memory
        if request.cpus:
            options["nano_cpus"] = int(request.cpus * 1e9)
        if request.pids_limit:
            options["pids_limit"] = request.pids_limit
        options.update(self._device_options(request))
        if entrypoint is not None:
            options["entrypoint"] = entrypoint
        command = list(request.command) if request.command is not None else None
        container = self._client.containers.create(request.image, command, **options)
        return str(container.id)

    def start_container(self, request: ContainerRequest) -> str:
        """Create and start; a container that fails to start is removed, never left behind."""
        try:
            container_id = self._create(request)
        except docker.errors.ImageNotFound:
            raise LaunchError(f"image {request.image} does not exist", "build it first with `r2env build`, or give a repository") from None
        except docker.errors.APIError as error:
            raise LaunchError(f"the engine refused the container: {error.explanation or error}", "check the launch options") from None
        try:
            self._client.api.start(container_id)
        except docker.errors.APIError as error:
            self._client.api.remove_container(container_id, force=True)
            text = str(error.explanation or error)
            if request.publish and ("port is already allocated" in text or "address already in use" in text):
                ip, port = request.publish
                raise LaunchError(f"port {port} on {ip} is already in use", "choose another --port, or leave --port out for a free one") from None
            if "device driver" in text:
                raise LaunchError(no_gpu_runtime(self.host, request.gpus), TOOLKIT_HINT) from None
            raise LaunchError(f"the container did not start: {text}", "check the launch options") from None
        return container_id

    def container(self, container_id: str) -> ContainerInfo:
        try:
            attrs = self._client.api.inspect_container(container_id)
        except docker.errors.NotFound:
            raise LaunchError(f"no container {container_id}", "see `r2env ps` for what runs") from None
        return _container_info(attrs, self.remote_host)

    def containers(self, label: str) -> list[ContainerInfo]:
        found = self._client.api.containers(all=True, filters={"label": label})
        return [_container_info(self._client.api.inspect_container(c["Id"]), self.remote_host) for c in found]

    def follow_logs(self, container_id: str) -> Iterator[str]:
        """The container's output, line by line, until it exits."""
        pending = b""
        for chunk in self._client.api.logs(container_id, stream=True, follow=True, stdout=True, stderr=True):
            pending += chunk
            *lines, pending = pending.split(b"\n")
            for line in lines:
                yield line.decode(errors="replace").rstrip("\r")
        if pending:
            yield pending.decode(errors="replace")

    def logs_tail(self, container_id: str, lines: int = 20) -> str:
        return bytes(self._client.api.logs(container_id, stdout=True, stderr=True, tail=lines)).decode(errors="replace")

    def wait(self, container_id: str) -> int:
        return int(self._client.api.wait(container_id)["StatusCode"])

    def stop_container(self, container_id: str, grace_seconds: int = 5) -> None:
        """Stop (SIGTERM, then SIGKILL after the grace period) and remove."""
        try:
            self._client.api.stop(container_id, timeout=grace_seconds)
        except docker.errors.NotFound:
            return
        except docker.errors.APIError:
            pass  # already stopping or gone: removal below settles it
        self.remove_container(container_id)

    def remove_container(self, container_id: str) -> None:
        try:
            self._client.api.remove_container(container_id, force=True)
        except docker.errors.NotFound:
            pass
        except docker.errors.APIError as error:
            if "already in progress" not in str(error):
                raise


def remote_host_of(docker_host: str) -> str:
    parts = urllib.parse.urlsplit(docker_host)
    if parts.scheme not in ("tcp", "ssh") or not parts.hostname:
        return ""
    if parts.hostname == "localhost" or parts.hostname.startswith("127.") or parts.hostname == "::1":
        return ""
    return parts.hostname


def _open_client(env: Mapping[str, str], host: str) -> Any:
    """docker-py's client for the engine, which has answered; else EngineUnavailableError."""
    client = None
    try:
        client = docker_client(env, timeout=120)
        client.ping()
    except (docker.errors.DockerException, OSError) as error:
        if client is not None:
            client.close()  # its socket would otherwise linger until garbage collection
        raise EngineUnavailableError(
            f"cannot reach the Docker engine at {host} ({_engine_problem(error)})",
            "start the Docker daemon (e.g. 'dockerd' or 'systemctl start docker') or set DOCKER_HOST"
            + (" and its TLS certificates (DOCKER_CERT_PATH)" if host.startswith("tcp://") else ""),
        ) from None
    return client


def _buildkit_cli(prefer_classic: bool, address: EngineAddress, env: Mapping[str, str]) -> _Cli | None:
    cli = None if prefer_classic else find_buildkit_cli()
    if address.buildx_builder:
        cli = _named_builder(cli, address.buildx_builder, env, prefer_classic)
    return cli


def docker_client(env: Mapping[str, str], timeout: int = 120) -> Any:
    """docker-py's client for the engine `env` names (DOCKER_HOST, DOCKER_TLS_VERIFY, DOCKER_CERT_PATH).
    With TLS, requests would let REQUESTS_CA_BUNDLE or CURL_CA_BUNDLE (set where a proxy's CA must be trusted, as
    for many of r2env's users) replace the engine's CA that docker-py gives the session (requests'
    merge_environment_settings), and the engine's certificate would fail to verify. So that connection ignores the
    environment: the API version is asked with a client that does, then the real client is made with it."""
    options = docker.utils.kwargs_from_env(environment=dict(env))
    options["use_ssh_client"] = str(options.get("base_url") or "").startswith("ssh://")
    if not options.get("tls"):
        return docker.DockerClient(version="auto", timeout=timeout, **options)
    probe = docker.DockerClient(version="1.24", timeout=timeout, **options)  # the oldest API docker-py speaks: no request yet
    try:
        probe.api.trust_env = False
        version = str(probe.api.version(api_version=False)["ApiVersion"])
    finally:
        probe.close()
    client = docker.DockerClient(version=version, timeout=timeout, **options)
    client.api.trust_env = False
    return client


def _engine_problem(error: BaseException) -> str:
    """Why the engine did not answer, in a few words (docker-py's messages run over several lines)."""
    text = " ".join(str(error).split())
    for needle, words in (("CERTIFICATE_VERIFY_FAILED", "its TLS certificate is not trusted"), ("certificate required", "it wants a client certificate"),
                          ("Connection refused", "connection refused"), ("timed out", "timed out"), ("No such file", "no such socket"),
                          ("Permission denied", "permission denied"), ("Name or service not known", "unknown host")):
        if needle in text:
            return words
    return f"{type(error).__name__}: {text[:120]}"


def _named_builder(cli: _Cli | None, name: str, env: Mapping[str, str], prefer_classic: bool) -> _Cli:
    """The buildx CLI, once `docker buildx inspect NAME` says the builder exists; else one line saying what is missing."""
    if prefer_classic or cli is None or cli.kind != "buildx":
        raise EngineUnavailableError(f"--builder {name}: a named builder needs the docker buildx plugin, and this machine's docker CLI has none",
                                     "install docker-buildx (docs/remote-engines.md), or give --builder auto")
    inspected = subprocess.run([cli.path, "buildx", "inspect", name], capture_output=True, text=True, check=False, timeout=60, env=dict(env))
    if inspected.returncode != 0:
        last = (inspected.stderr.strip().splitlines() or ["unknown error"])[-1]
        raise EngineUnavailableError(f"--builder {name}: docker buildx has no such builder ({_shorten(last, 160)})",
                                     f"create it (docker buildx create --name {name} --driver remote tcp://BUILDKITD:1234), or give --builder auto")
    return cli


def _memory_limits(memory: str) -> dict[str, int] | None:
    if not memory:
        return None
    limit = int(docker.utils.parse_bytes(memory))
    return {"memory": limit, "memswap": limit}


def _container_info(attrs: dict[str, Any], remote_host: str = "") -> ContainerInfo:
    state = attrs.get("State") or {}
    config = attrs.get("Config") or {}
    bindings = ((attrs.get("NetworkSettings") or {}).get("Ports") or {}).get(f"{SERVER_PORT}/tcp") or []
    host_ip, host_port = (str(bindings[0].get("HostIp") or ""), int(bindings[0].get("HostPort") or 0)) if bindings else ("", 0)
    if remote_host and host_ip in ("0.0.0.0", "::", ""):
        host_ip = remote_host  # published on every interface of the engine's machine: reached by its name
    environment = env_dict(config)
    return ContainerInfo(
        id=str(attrs["Id"]),
        image=str(config.get("Image", "")),
        status=str(state.get("Status", "")),
        exit_code=int(state.get("ExitCode") or 0),
        host_port=host_port,
        host_ip=host_ip,
        labels=dict(config.get("Labels") or {}),
        environment=environment,
        created=str(attrs.get("Created", "")),
    )


def _proxy_by_name(key: str, value: str, env: Mapping[str, str]) -> bool:
    """Whether a proxy build arg that differs from the CLI's own goes through the CLI's environment. The CLI
    sends its own requests through a proxy only to a tcp:// daemon (a unix socket or ssh ignores the variables),
    so locally it may; otherwise a value with credentials is refused rather than put in argv (issue 17)."""
    if key not in PROXY_VARIABLES:
        return False
    if not env.get("DOCKER_CONTEXT") and env.get("DOCKER_HOST", "unix://").startswith("unix://"):
        return True
    if without_credentials(value) != value:
        raise UsageError(f"--build-arg {key}: a proxy with credentials that differs from r2env's own {key} would be on the "
                         f"docker command line, which every user of the machine can read",
                         f"set {key} to that value in r2env's environment and give --build-arg {key} alone")
    return False


def _write_dockerfile_ignore(request: BuildRequest) -> None:
    """BuildKit's Dockerfile frontend reads `<Dockerfile>.dockerignore` from beside the Dockerfile instead of the
    context's .dockerignore (https://docs.docker.com/build/concepts/context/#filename-and-location; honoured by the
    BuildKit built into Debian's dockerd 20.10 through `DOCKER_BUILDKIT=1 docker build -f`, seen here)."""
    assert request.ignore is not None
    if request.dockerfile.parent.resolve().is_relative_to(request.context.resolve()):
        raise BuildError("r2env's Dockerfile must lie outside the build context to carry its own ignore patterns", "report this as a bug")
    text = "# Written by r2env: the repository's ignore files, then the declaration files the build reads\n"
    request.dockerfile.with_name(request.dockerfile.name + ".dockerignore").write_text(
        text + "".join(line + "\n" for line in request.ignore), encoding="utf-8"
    )


# The classic builder gets the Dockerfile inside the context under this name, as the docker CLI does for `-f` outside it.
_CLASSIC_DOCKERFILE = ".r2env.Dockerfile"


@contextmanager
def _classic_context(request: BuildRequest) -> Iterator[dict[str, Any]]:
    """docker-py's build arguments for the context. With ignore patterns, the context is a tar made here with
    docker-py's own matcher (Docker's syntax), since docker-py would apply only the context's .dockerignore."""
    if request.ignore is None:
        yield {"path": str(request.context), "dockerfile": str(request.dockerfile)}
        return
    from docker.utils.build import PatternMatcher, create_archive, exclude_paths

    root = str(request.context)
    patterns = list(request.ignore)
    # The daemon needs the context's .dockerignore and drops it (and the Dockerfile) from the context when that
    # file lists them, as the docker CLI arranges for a Dockerfile outside the context (cli/command/image/build
    # AddDockerfileToBuildContext): the repository's file, plus lines naming what the repository copy must not get.
    matcher = PatternMatcher(patterns)
    matcher.patterns.pop()  # docker-py's matcher always keeps .dockerignore; ask the patterns themselves
    own = request.context / ".dockerignore"
    text = own.read_text(encoding="utf-8-sig") if own.is_file() else ""
    dropped = [*([".dockerignore"] if not own.is_file() or matcher.matches(".dockerignore") else []), _CLASSIC_DOCKERFILE]
    text = text + ("\n" if text and not text.endswith("\n") else "") + "".join(line + "\n" for line in dropped)
    files = sorted(exclude_paths(root, patterns, dockerfile=_CLASSIC_DOCKERFILE))
    with tempfile.TemporaryFile() as archive:
        create_archive(
            root, files=files, fileobj=archive,
            extra_files=[(".dockerignore", text), (_CLASSIC_DOCKERFILE, request.dockerfile.read_text(encoding="utf-8"))],
        )
        yield {"fileobj": archive, "custom_context": True, "dockerfile": _CLASSIC_DOCKERFILE}


def _push_error(reference: str, text: str, asking: bool = False) -> PushError:
    """One sentence per failure class: credentials, unreachable registry, anything else the registry said."""
    host = reference.split("/", 1)[0] if "/" in reference else "docker.io"
    action = f"asking {host} for {reference}" if asking else f"pushing {reference}"
    lowered = text.lower()
    if any(word in lowered for word in ("unauthorized", "authentication required", "no basic auth", "denied", "forbidden")):
        return PushError(
            f"{action}: the registry refused the credentials ({_shorten(text.strip(), 160)})",
            f"run `docker login {host}` or set R2ENV_REGISTRY_USERNAME and R2ENV_REGISTRY_PASSWORD",
        )
    if any(word in lowered for word in ("connection refused", "no such host", "i/o timeout", "dial tcp", "server gave http response")):
        return PushError(f"{action}: cannot reach the registry ({_shorten(text.strip(), 160)})", f"check the registry host in the image name ({host})")
    return PushError(f"{action} failed: {_shorten(text.strip(), 200)}", "check the image name and the registry's permissions")


@contextmanager
def _docker_config(credentials: Credentials | None) -> Iterator[dict[str, str]]:
    """Environment for the docker CLI. With credentials from the environment, a throwaway DOCKER_CONFIG holds them
    (the CLI passes them to BuildKit to read --cache-from images); the user's config is never written to."""
    if credentials is None:
        yield {}
        return
    original = Path(os.environ.get("DOCKER_CONFIG") or Path.home() / ".docker")
    with tempfile.TemporaryDirectory(prefix="r2env-docker-config-") as scratch:
        token = base64.b64encode(f"{credentials.username}:{credentials.password}".encode()).decode()
        try:
            config = json.loads((original / "config.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            config = {}
        # A credential store would take precedence over the file's auths: this config has only file auths.
        config = {key: value for key, value in config.items() if key not in ("credsStore", "credHelpers")} if isinstance(config, dict) else {}
        config["auths"] = {**(config.get("auths") or {}), credentials.registry: {"auth": token}}
        path = Path(scratch) / "config.json"
        path.touch(mode=0o600)
        path.write_text(json.dumps(config), encoding="utf-8")
        if (original / "cli-plugins").is_dir():  # keep the user's buildx plugin
            (Path(scratch) / "cli-plugins").symlink_to(original / "cli-plugins")
        yield {"DOCKER_CONFIG": scratch}
