"""The daemon's own options (`c.Serve.<name>` in r2env_config.py, or `r2env serve --<name>`). Build and launch
options stay `c.R2env.*`: the daemon builds and launches the way the CLI does with the same file."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

from traitlets import Bool, Enum, Float, Int, List, Unicode
from traitlets.config import Configurable

from r2env.config import engine_address, read_config_file, traits_with_origins
from r2env.engine_address import EngineAddress
from r2env.errors import UsageError
from r2env.option_checks import Values, check_address, check_directory, memory_bytes
from r2env.serve.sources import SourcePolicy

# What a browser sends as Origin: scheme://host[:port], nothing after it (RFC 6454).
MIN_TOKEN_LENGTH = 32
_ORIGIN = re.compile(r"https?://[A-Za-z0-9.-]+(:[0-9]{1,5})?|https?://\[[0-9A-Fa-f:.]+\](:[0-9]{1,5})?")


class Serve(Configurable):
    """Every option of `r2env serve`."""

    host = Unicode("127.0.0.1", help="Address the daemon listens on; 0.0.0.0 for every interface (put TLS in front of it).").tag(config=True)
    port = Int(8585, help="Port the daemon listens on.").tag(config=True)
    state_dir = Unicode("~/.local/share/r2env/serve", help="Where the daemon keeps its database, repository mirrors and checkouts.").tag(config=True)
    token = Unicode("", help="API token; default one generated at first start and printed once (or R2ENV_SERVE_TOKEN).").tag(config=True)
    max_builds = Int(2, help="Builds that run at once; more wait in a queue.").tag(config=True)
    build_timeout = Float(3600.0, help="Seconds a build may run before it is stopped and failed.").tag(config=True)
    resolve_timeout = Float(300.0, help="Seconds a git clone or fetch of a requested repository may take.").tag(config=True)
    max_launches = Int(10, help="Notebook servers that may run at once.").tag(config=True)
    cull_idle_timeout = Float(3600.0, help="Stop a notebook server after this many seconds without activity; 0 = never.").tag(config=True)
    allowed_schemes = List(Unicode(), ["https"], help="URL schemes a requested repository may use (https, http, git, ssh).").tag(config=True)
    allowed_hosts = List(
        Unicode(), ["github.com", "gitlab.com", "bitbucket.org", "codeberg.org"],
        help="Hosts a requested repository may be on: names, *.example.org for subdomains, or * for any.",
    ).tag(config=True)
    allow_local_repos = Bool(False, help="Accept file:// URLs and absolute paths of repositories on the daemon's machine.").tag(config=True)
    block_host_network = Bool(True, help="Firewall the engine's default bridge while the daemon runs: build steps and launched servers cannot connect to this host or to link-local (cloud metadata) addresses; needs root and iptables on the engine's host.").tag(config=True)
    allowed_origins = List(Unicode(), [], help="Web origins (https://binder.example.org) whose pages may call the API from a browser; * for any; default none but the daemon's own.").tag(config=True)
    max_queued = Int(20, help="Builds that may wait in the queue; one more is refused with 429.").tag(config=True)
    max_age = Float(8 * 3600.0, help="Stop a notebook server this many seconds after it started, active or not; 0 = never.").tag(config=True)
    launch_memory = Unicode("4g", help="Memory limit of each notebook server unless c.R2env.memory is set; empty = none.").tag(config=True)
    launch_cpus = Float(1.0, help="CPU limit of each notebook server unless c.R2env.cpus is set; 0 = none.").tag(config=True)
    launch_pids = Int(1024, help="Processes and threads each notebook server may have; 0 = no limit.").tag(config=True)
    build_memory = Unicode("4g", help="Memory limit of each build step (classic builder), or of each build's share of all BuildKit steps (times max_builds); empty = none.").tag(config=True)
    build_cpus = Float(2.0, help="CPUs of each build's share of all BuildKit steps (times max_builds); 0 = none. Not applied by the classic builder.").tag(config=True)
    build_pids = Int(4096, help="Processes and threads of each build's share of all BuildKit steps (times max_builds); 0 = none. Not applied by the classic builder.").tag(config=True)
    max_repo_size = Unicode("1g", help="Largest git mirror of a requested repository; a clone or fetch that grows past it is stopped; empty = no limit.").tag(config=True)
    max_connections = Int(512, help="Open HTTP connections at once; more are refused (503).").tag(config=True)
    max_client_connections = Int(64, help="Open HTTP connections at once from one client address; more are refused (503).").tag(config=True)
    request_timeout = Float(20.0, help="Seconds a client may take to send a request's headers, or its body; also how long an idle connection is kept.").tag(config=True)
    launch_backend = Enum(["local", "jupyterhub"], "local", help="Where notebook servers run: local (containers of the daemon's own) or jupyterhub (through the hub at hub_url, one hub user per launch).").tag(config=True)
    hub_url = Unicode("", help="Public URL of the JupyterHub for launch_backend jupyterhub, e.g. https://hub.example.org/ (its API is under hub/api/).").tag(config=True)
    hub_api_token = Unicode("", help="API token of a hub service with the admin:users, admin:servers, tokens and read:users scopes; default JUPYTERHUB_API_TOKEN.").tag(config=True)
    hub_user_prefix = Unicode("r2env-", help="Prefix of the hub users the daemon makes (one per launch); give each daemon sharing a hub its own.").tag(config=True)
    launch_docker_host = Unicode("", help="Docker engine for notebook servers (launch_backend local), when not the build engine: unix://, tcp://HOST:PORT or ssh://USER@HOST.").tag(config=True)
    launch_docker_cert_path = Unicode("", help="Directory with ca.pem, cert.pem and key.pem for a tcp:// launch_docker_host with TLS.").tag(config=True)


@dataclass(frozen=True)
class ServeSettings:
    host: str
    port: int
    state_dir: Path
    token: str
    max_builds: int
    build_timeout: float
    resolve_timeout: float
    max_launches: int
    cull_idle_timeout: float
    sources: SourcePolicy
    allowed_origins: tuple[str, ...] = ()
    block_host_network: bool = False  # True from the configuration (its default there); off for tests that build nothing
    max_queued: int = 20
    max_age: float = 0.0  # 0: no limit
    launch_memory: str = ""
    launch_cpus: float = 0.0
    launch_pids: int = 0
    build_memory: str = ""
    build_cpus: float = 0.0
    build_pids: int = 0
    max_repo_size: int = 0  # bytes; 0: no limit
    max_connections: int = 512
    max_client_connections: int = 64
    request_timeout: float = 20.0
    launch_backend: str = "local"
    hub_url: str = ""
    hub_api_token: str = ""
    hub_user_prefix: str = "r2env-"
    launch_engine: EngineAddress | None = None  # None: launch where the builds run


def _size(values: Values, name: str) -> int:
    """Bytes of a size in Docker's notation (512m, 4g); 0 for "" (no limit)."""
    text = values[name].strip()
    if not text:
        return 0
    size = memory_bytes(text)
    if not size:  # None for a non-size or a 5,000-digit number (infinite as a float), 0 for zero
        raise values.refuse(name, "is not a size", "give a size such as 512m or 4g, or \"\" for no limit")
    return size


def load_serve_config(config_file: str | None, overrides: Mapping[str, str | list[str]], environ: Mapping[str, str]) -> ServeSettings:
    values = traits_with_origins(Serve, read_config_file(config_file), overrides, config_file)
    for name in ("max_builds", "max_launches", "max_queued", "max_connections", "max_client_connections"):
        if values[name] < 1:
            raise values.refuse(name, "is not allowed", "give 1 or more")
    for name in ("build_timeout", "resolve_timeout", "request_timeout"):
        if not values[name] > 0:  # not `<= 0`: NaN compares false with everything (wait_for(nan) times out at once)
            raise values.refuse(name, "is not allowed", "give a number of seconds above 0")
    for name in ("max_age", "launch_cpus", "build_cpus"):
        if not 0 <= values[name] < float("inf"):  # NaN, negative and infinite values are refused alike
            raise values.refuse(name, "is not allowed", "give 0 (no limit) or a number above 0")
    for name in ("launch_pids", "build_pids"):
        if values[name] < 0:
            raise values.refuse(name, "is not allowed", "give 0 (no limit) or a number of processes")
    for name in ("launch_memory", "build_memory"):
        _size(values, name)
    token = values["token"] or environ.get("R2ENV_SERVE_TOKEN", "")
    if token and len(token) < MIN_TOKEN_LENGTH:
        source = "c.Serve.token" if values["token"] else "R2ENV_SERVE_TOKEN"
        # Every API call is a guess at the token: a short one could be found by trying (issue 17).
        raise UsageError(f"{source} has {len(token)} characters; a configured token needs at least {MIN_TOKEN_LENGTH}",
                         "make one with: python3 -c 'import secrets; print(secrets.token_urlsafe(32))'")
    origins = tuple(origin.strip().rstrip("/") for origin in values["allowed_origins"] if origin.strip())
    for origin in origins:
        if origin != "*" and not _ORIGIN.fullmatch(origin):
            raise UsageError(f"allowed_origins: {origin!r} is not a web origin", "give scheme://host[:port], e.g. https://binder.example.org, or *")
    if not 0 <= values["port"] <= 65535:
        raise values.refuse("port", "is not a port", "give 1-65535 (0: any free port)")
    # Checked before the engine is asked anything: a bad address or state directory is the user's to fix first.
    check_address(values, "host", host_names=True)
    state_dir = check_directory(values, "state_dir")
    hub_token = values["hub_api_token"] or environ.get("JUPYTERHUB_API_TOKEN", "")
    if values["launch_backend"] == "jupyterhub":
        if not re.fullmatch(r"https?://[^\s/?#]+(/[^\s?#]*)?", values["hub_url"]):
            raise values.refuse("hub_url", "is not the http(s) URL of a JupyterHub", "give the hub's public URL, e.g. https://hub.example.org/")
        if not hub_token:
            raise UsageError("launch_backend jupyterhub needs an API token: c.Serve.hub_api_token or JUPYTERHUB_API_TOKEN is empty",
                             "make a hub service token with the admin:users, admin:servers, tokens and read:users scopes (docs/serve.md#launch-backends)")
        if not re.fullmatch(r"[a-z0-9][a-z0-9._-]{0,30}", values["hub_user_prefix"]):
            raise values.refuse("hub_user_prefix", "is not a hub user name prefix", "give lower-case letters, digits, . _ -, e.g. r2env-")
    launch_engine = engine_address(values, "launch_docker_host", "launch_docker_cert_path") if values["launch_docker_host"] else None
    return ServeSettings(
        host=values["host"],
        port=values["port"],
        state_dir=state_dir,
        token=token,
        max_builds=values["max_builds"],
        build_timeout=values["build_timeout"],
        resolve_timeout=values["resolve_timeout"],
        max_launches=values["max_launches"],
        cull_idle_timeout=max(values["cull_idle_timeout"], 0.0),
        sources=SourcePolicy(
            schemes=tuple(s.strip().lower() for s in values["allowed_schemes"] if s.strip()),
            hosts=tuple(h.strip().lower() for h in values["allowed_hosts"] if h.strip()),
            allow_local=values["allow_local_repos"],
        ),
        allowed_origins=origins,
        block_host_network=values["block_host_network"],
        max_queued=values["max_queued"],
        max_age=values["max_age"],
        launch_memory=values["launch_memory"].strip(),
        launch_cpus=values["launch_cpus"],
        launch_pids=values["launch_pids"],
        build_memory=values["build_memory"].strip(),
        build_cpus=values["build_cpus"],
        build_pids=values["build_pids"],
        max_repo_size=_size(values, "max_repo_size"),
        max_connections=values["max_connections"],
        max_client_connections=values["max_client_connections"],
        request_timeout=values["request_timeout"],
        launch_backend=values["launch_backend"],
        hub_url=values["hub_url"],
        hub_api_token=hub_token,
        hub_user_prefix=values["hub_user_prefix"],
        launch_engine=launch_engine,
    )
