"""Configuration through traitlets: an r2env_config.py (`c.R2env.user_id = 1001`) and command-line flags
(`--user-id 1001`) set the same traits. Turned once into a plain Settings object; nothing else sees traitlets."""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from traitlets import Bool, Enum, Float, Int, List, TraitError, Unicode
from traitlets.config import Config, Configurable
from traitlets.config.loader import ConfigFileNotFound, LazyConfigValue, PyFileConfigLoader

from r2env.build_secrets import FetchSettings
from r2env.cuda import CUDA_BASES
from r2env.engine_address import BUILDER_NAME, EngineAddress, check_host
from r2env.errors import UsageError
from r2env.interpreter import DEBIAN_PYTHON
from r2env.launch.container import LaunchOptions
from r2env.option_checks import (Values, check_image_reference, check_launch, check_requirement, check_single_line,
                                 check_rstudio, check_url_template, check_user, expand_path, is_finite)
from r2env.options import check_repo_dir, check_subdir, parse_build_args, parse_channel_map, parse_labels
from r2env.r.snapshot import DEFAULT_CRAN_MIRROR
from r2env.r.versions import DEFAULT_R_BUILDS_URL
from r2env.plan import DEFAULT_SERVER, ENV_PREFIX, PlanOptions
from r2env.spec import CONDA_DIR
from r2env.registry import check_tag, parse_reference
from r2env.select import DEFAULT_PRIORITY

DEFAULT_CONFIG_FILE = "r2env_config.py"
# Options that only `r2env launch` takes.
LAUNCH_TRAITS = ("ip", "port", "detach", "volume", "editable", "env", "memory", "cpus", "gpus", "launch_timeout", "task")


class R2env(Configurable):
    """Every option r2env has. Names follow repo2docker's where it has one."""

    image_name = Unicode("", help="Name (and tag) of the image to build; default r2env-<repository name>.").tag(config=True)
    ref = Unicode("", help="Branch, tag or commit to build (git sources).").tag(config=True)
    user_name = Unicode("jovyan", help="Name of the notebook user in the image.").tag(config=True)
    user_id = Int(1000, help="uid of the notebook user in the image.").tag(config=True)
    base_image = Unicode("", help="Base image; default debian:<suite> for the requested Python.").tag(config=True)
    base_suite = Enum(sorted(DEBIAN_PYTHON), "bookworm", help="Debian suite of the default base image (or of --base-image).").tag(config=True)
    mirror = Unicode("", help="Debian mirror to bootstrap a missing base from; default the host's apt mirror.").tag(config=True)
    buildpacks = List(Unicode(), list(DEFAULT_PRIORITY), help="Buildpack priority: the first that applies wins.").tag(config=True)
    server_requirement = Unicode(DEFAULT_SERVER, help="The notebook server requirement installed in every image.").tag(config=True)
    extra_ca_certs = Unicode("", help="Extra CA bundle (PEM) for package downloads during builds; default from SSL_CERT_FILE, PIP_CERT or REQUESTS_CA_BUNDLE.").tag(config=True)
    index_url = Unicode("", help="Python package index for builds (PIP_INDEX_URL).").tag(config=True)
    extra_index_url = Unicode("", help="Extra Python package index for builds.").tag(config=True)
    python_install_mirror = Unicode("", help="Mirror of python-build-standalone for Pythons Debian does not ship.").tag(config=True)
    cache_dir = Unicode("~/.cache/r2env", help="Where r2env keeps git checkouts, base image archives and parsed lock files.").tag(config=True)
    no_cache = Bool(False, help="Build without the engine's layer cache.").tag(config=True)
    relock = Bool(False, help="When r2env.lock is stale, update it instead of stopping (build).").tag(config=True)
    conda_channel = List(Unicode(), [], help="Conda channels to lock from instead of environment.yml's (names or URLs: an https mirror, a loopback http server, file:///path); default its channels, else conda-forge.").tag(config=True)
    channel_map = List(Unicode(), [], help="FROM=TO: fetch locked conda packages from TO where the lock says FROM (a mirror or an air-gapped copy of a channel).").tag(config=True)
    conda_pypi_lookup = Unicode("", help="PyPI-to-conda name mapping for conda-lock (file or URL); default conda-lock's own, downloaded.").tag(config=True)
    cran_mirror = Unicode(DEFAULT_CRAN_MIRROR, help="CRAN-like repository for R packages; {date} is runtime.txt's snapshot date (or latest), {suite} the Debian codename.").tag(config=True)
    rstudio = Unicode("", help="R repositories: install RStudio Server, opened at /rstudio: posit (Posit's build, pinned) or the URL of an RStudio Server .deb.").tag(config=True)
    r_builds_url = Unicode(DEFAULT_R_BUILDS_URL, help="Where R versions Debian does not ship come from: Posit's R builds; {platform} and {version} are filled in.").tag(config=True)
    pixi_environment = Unicode("default", help="The pixi environment to install from pixi.lock (a pixi project's [environments]).").tag(config=True)
    builder = Unicode("auto", help="auto: BuildKit when a capable docker CLI exists, else the classic builder; classic; or the name of a docker buildx builder (remote, kubernetes, docker-container driver).").tag(config=True)
    docker_host = Unicode("", help="Docker engine to build (and launch) on: unix://, tcp://HOST:PORT or ssh://USER@HOST; default DOCKER_HOST, else the local socket.").tag(config=True)
    docker_cert_path = Unicode("", help="Directory with ca.pem, cert.pem and key.pem for a tcp:// engine with TLS (verified); default DOCKER_CERT_PATH when DOCKER_TLS_VERIFY is set.").tag(config=True)
    gpu = Bool(False, help="Plan a GPU image: a CUDA base and torch's CUDA wheel index, chosen from the pinned torch, tensorflow or jax.").tag(config=True)
    cuda = Unicode("", help="CUDA version of a GPU image (implies --gpu), e.g. 12.4; default the newest the pinned frameworks share.").tag(config=True)
    # repo2docker's options of the same names (see docs/user-guide.md#repo2docker-options).
    target_repo_dir = Unicode("", help="Absolute path the repository is copied to in the image (REPO_DIR, the working directory); default the user's home.").tag(config=True)
    subdir = Unicode("", help="Build from this folder of the repository, as if it were the repository's root.").tag(config=True)
    label = List(Unicode(), [], help="Extra label KEY=VALUE on the built image (repeatable); not part of the spec digest.").tag(config=True, repeat=True)
    build_arg = List(Unicode(), [], help="Build arg KEY=VALUE, or KEY to pass this environment's value, for the build (repeatable): a repository's Dockerfile or an --appendix ARG sees it.").tag(config=True, repeat=True)

    # launch only (LAUNCH_TRAITS)
    ip = Unicode("127.0.0.1", help="Address the server is published on (launch); 0.0.0.0 for all interfaces.").tag(config=True)
    port = Int(0, help="Host port of the server (launch); default a free one.").tag(config=True)
    detach = Bool(False, help="Return once the server answers and leave it running (launch); see r2env ps / stop.").tag(config=True)
    volume = List(Unicode(), [], help="Mount HOST:CONTAINER[:ro] (launch; repeatable); a relative CONTAINER path is in the repository folder.").tag(config=True, repeat=True)
    editable = Bool(False, help="Mount the local repository over its copy in the image, so edits persist (launch).").tag(config=True)
    env = List(Unicode(), [], help="Set KEY=VALUE, or pass KEY from here, in the container (launch; repeatable).").tag(config=True, repeat=True)
    memory = Unicode("", help="Memory limit of the container (launch), e.g. 4g.").tag(config=True)
    cpus = Float(0.0, help="CPU limit of the container (launch), e.g. 1.5; 0 = none.").tag(config=True)
    gpus = Unicode("", help="GPUs for the container (launch): all, a count, or device=0,1.").tag(config=True)
    launch_timeout = Float(60.0, help="Seconds to wait for the server to answer (launch).").tag(config=True)
    task = Unicode("", help="Run this pixi task of the environment instead of the server (launch; a pixi project).").tag(config=True)
    appendix = Unicode("", help="Dockerfile instructions appended to the build (as repo2docker's --appendix); they run as the notebook user.").tag(config=True)
    push = Bool(False, help="Push the image (and --tag tags) to its registry after building; --image-name must name it: REGISTRY/NAME[:TAG].").tag(config=True)
    tag = List(Unicode(), [], help="More tags for the image, in the same repository (pushed too with --push).").tag(config=True)
    cache_from = List(Unicode(), [], help="Images (in a registry) whose layers the build may reuse, e.g. the last pushed image.").tag(config=True)
    check_registry = Bool(False, help="Skip the build when the registry already has the image of this locked spec and repository contents.").tag(config=True)
    json = Bool(False, help="Print the result as one JSON object on stdout (the build log goes to stderr).").tag(config=True)
    output_json = Unicode("", help="Also write the JSON result to this file (written whole or not at all).").tag(config=True)


@dataclass(frozen=True)
class PublishSettings:
    """What a CI step asks for beyond building: tags, pushing, registry cache, machine-readable output."""

    push: bool = False
    tags: tuple[str, ...] = ()
    cache_from: tuple[str, ...] = ()
    check_registry: bool = False
    appendix: str = ""
    json: bool = False
    output_json: str = ""


@dataclass(frozen=True)
class Settings:
    image_name: str
    ref: str
    plan: PlanOptions
    buildpacks: tuple[str, ...]
    mirror: str
    fetch: FetchSettings
    cache_dir: Path
    no_cache: bool
    builder: str
    relock: bool = False
    channel_map: tuple[tuple[str, str], ...] = ()
    conda_pypi_lookup: str = ""
    launch: LaunchOptions = LaunchOptions()
    publish: PublishSettings = PublishSettings()
    subdir: str = ""  # the folder of the repository to build from ("" = its root)
    labels: tuple[tuple[str, str], ...] = ()  # extra image labels: not in the spec digest
    build_args: tuple[tuple[str, str], ...] = ()  # extra build args (values may be secrets: never printed)
    build_memory: str = ""  # memory limit of each build step (Docker's notation); set by `r2env serve` (c.Serve.build_memory)
    engine: EngineAddress = EngineAddress()  # the engine builds (and CLI launches) use; its buildx builder
    # Set by `r2env serve`, which builds what clients send: conda packages come from public addresses unless
    # under the operator's conda channels or channel map (r2env/conda/packages.py check_public).
    public_packages_only: bool = False


def cli_traits(configurable: type[Configurable] = R2env) -> dict[str, Any]:
    """The traits offered as --flags, by flag name."""
    return {name.replace("_", "-"): trait for name, trait in configurable.class_traits(config=True).items()}

def read_config_file(config_file: str | None) -> Config:
    """The traitlets config in `config_file`, or in ./r2env_config.py when that exists; else empty."""
    path = config_path(config_file)
    if path is None:
        return Config()
    try:
        return PyFileConfigLoader(path.name, path=str(path.parent.resolve())).load_config()
    except ConfigFileNotFound:
        raise UsageError(f"{path}: no such config file", "check the --config path") from None
    except Exception as error:  # a config file is Python: any error in it is the user's to fix
        raise UsageError(f"{path}: cannot load ({type(error).__name__}: {error})", "fix the config file") from None


def config_path(config_file: str | None) -> Path | None:
    """The config file in effect: `config_file`, or ./r2env_config.py when that exists."""
    path = Path(config_file or DEFAULT_CONFIG_FILE)
    try:
        exists = path.is_file()
    except OSError as error:  # a name longer than NAME_MAX, a path through a file: the OS's word, on one line
        raise UsageError(f"--config {str(path)!r}: {error.strerror or error}", "give the path of a config file") from None
    if config_file and path.exists() and not exists:  # a FIFO or device would block the loader, a folder confuse it
        raise UsageError(f"--config {str(path)!r} is not a regular file", "give the path of a config file")
    return path if config_file or exists else None


def trait_values(configurable: type[Configurable], config: Config, overrides: Mapping[str, str | list[str]],
                 config_file: str | None = None) -> dict[str, Any]:
    """Every configurable trait's value: defaults < `config` < `overrides` (trait name -> command-line string,
    or a list for a repeatable option: one item per flag)."""
    return dict(traits_with_origins(configurable, config, overrides, config_file).values)


def traits_with_origins(configurable: type[Configurable], config: Config, overrides: Mapping[str, str | list[str]],
                        config_file: str | None = None) -> Values:
    """trait_values, remembering which flag or config file line set each value."""
    section = configurable.__name__
    traits = configurable.class_traits(config=True)
    path = config_path(config_file) if section in config else None
    file_name = str(path) if path else DEFAULT_CONFIG_FILE
    origins: dict[str, str] = {}
    defaults = configurable()
    for name, value in list(config[section].items()) if section in config else []:
        where = f"{file_name}: c.{section}.{name}"
        if name not in traits:
            close = difflib.get_close_matches(name, traits, n=1)
            raise UsageError(f"{where} is not an option of r2env", f"did you mean c.{section}.{close[0]}?" if close else "see r2env --help")
        origins[name] = where
        if isinstance(value, LazyConfigValue):  # c.R2env.label.append(...): checked below, with the rest
            continue
        try:
            setattr(defaults, name, value)
        except TraitError as error:
            raise UsageError(f"{where} = {value!r}: {_trait_problem(error)}", "fix the config file") from None
    for name, text in overrides.items():
        trait = traits[name]
        flag = f"--{name.replace('_', '-')}"
        origins[name] = flag
        try:
            if isinstance(text, list) and isinstance(trait, List):
                config[section][name] = trait.from_string_list(text)
            else:
                text = ",".join(text) if isinstance(text, list) else text
                config[section][name] = trait.from_string_list(text.split(",")) if isinstance(trait, List) else trait.from_string(text)
            setattr(defaults, name, config[section][name])
        except (TraitError, ValueError) as error:
            raise UsageError(f"{flag} {text!r}: {_trait_problem(error)}", "see r2env --help") from None
    try:
        options = configurable(config=config)
        values = {name: getattr(options, name) for name in traits}
    except TraitError as error:
        raise UsageError(f"invalid configuration: {_trait_problem(error)}", f"fix {file_name} or the flag") from None
    checked = Values(values, origins)
    for name, value in values.items():
        # Float accepts nan and inf ("nan" parses), which compare false with every bound: refused for every option.
        if not is_finite(value):
            raise checked.refuse(name, "is not a finite number", "give a number such as 1.5")
    check_single_line(checked)
    return checked


def _trait_problem(error: Exception) -> str:
    # traitlets says "The 'cpus' trait of an R2env instance expected a float, not the str 'x'.": the part after the
    # instance is the rule; the value itself is in our own message already.
    text = str(error)
    return text.split(" instance ", 1)[1].rstrip(".") if " instance " in text else text


def _pixi_environment(values: Values) -> str:
    from r2env.parsers.pixi import ENVIRONMENT_NAME

    if not ENVIRONMENT_NAME.match(values["pixi_environment"]):
        raise values.refuse("pixi_environment", "is not a pixi environment name", "use lowercase letters, digits and dashes, as pixi does")
    return str(values["pixi_environment"])


def load_config(config_file: str | None, overrides: Mapping[str, str | list[str]], host_env: Mapping[str, str] | None = None) -> Settings:
    """Defaults < config file < command line. `overrides` maps trait names to command-line strings
    (a list for repeatable options: one item per flag). `host_env` (default os.environ) gives `--build-arg KEY` its value."""
    import os

    values = traits_with_origins(R2env, read_config_file(config_file), overrides, config_file)
    if values["cuda"] and values["cuda"] not in CUDA_BASES:
        raise values.refuse("cuda", "is not a CUDA version r2env knows", f"choose one of {', '.join(CUDA_BASES)}")
    if values["image_name"]:
        parse_reference(values["image_name"])  # refused before anything runs, with the rule (docker's own error comes late)
    # Each value that reaches the Dockerfile or the engine is checked against its grammar here, where it enters.
    check_user(values)
    check_image_reference(values, "base_image")
    check_requirement(values, "server_requirement")
    check_launch(values)
    cache_dir = expand_path(values, "cache_dir")
    engine = engine_address(values, "docker_host", "docker_cert_path")
    builder = values["builder"]
    if builder not in ("auto", "classic"):
        if not BUILDER_NAME.match(builder):
            raise values.refuse("builder", "is neither auto, classic nor a docker buildx builder name", "give auto, classic, or a name made with `docker buildx create --name`")
        engine = EngineAddress(engine.host, engine.cert_path, buildx_builder=builder)
    return Settings(
        image_name=values["image_name"],
        ref=values["ref"],
        plan=PlanOptions(
            user_name=values["user_name"],
            user_id=values["user_id"],
            base_image=values["base_image"],
            base_suite=values["base_suite"],
            server_requirement=values["server_requirement"],
            conda_channels=tuple(c.strip() for c in values["conda_channel"] if c.strip()),
            cuda=values["cuda"] or ("auto" if values["gpu"] else ""),
            target_repo_dir=check_repo_dir(values["target_repo_dir"], ENV_PREFIX, CONDA_DIR) if values["target_repo_dir"] else "",
            cran_mirror=check_url_template(values, "cran_mirror"),
            r_builds_url=check_url_template(values, "r_builds_url"),
            rstudio=check_rstudio(values),
            pixi_environment=_pixi_environment(values),
        ),
        buildpacks=tuple(values["buildpacks"]),
        mirror=values["mirror"],
        fetch=FetchSettings(values["extra_ca_certs"], values["index_url"], values["extra_index_url"], values["python_install_mirror"]),
        cache_dir=cache_dir,
        no_cache=values["no_cache"],
        builder=builder,
        engine=engine,
        relock=values["relock"],
        channel_map=parse_channel_map(values["channel_map"]),
        conda_pypi_lookup=values["conda_pypi_lookup"],
        launch=LaunchOptions(
            ip=values["ip"],
            port=values["port"],
            detach=values["detach"],
            volumes=tuple(values["volume"]),
            editable=values["editable"],
            env=tuple(values["env"]),
            memory=values["memory"],
            cpus=values["cpus"],
            gpus=values["gpus"],
            timeout=values["launch_timeout"],
            task=values["task"],
        ),
        publish=PublishSettings(
            push=values["push"],
            tags=tuple(check_tag(tag) for tag in values["tag"]),
            cache_from=tuple(values["cache_from"]),
            check_registry=values["check_registry"],
            appendix=values["appendix"],
            json=values["json"],
            output_json=values["output_json"],
        ),
        subdir=check_subdir(values["subdir"]),
        labels=parse_labels(values["label"]),
        build_args=parse_build_args(values["build_arg"], os.environ if host_env is None else host_env),
    )


def engine_address(values: Values, host_name: str, cert_name: str) -> EngineAddress:
    """An engine address from two options (a DOCKER_HOST-style URL, a TLS certificate directory), checked."""
    if problem := check_host(values[host_name]):
        raise values.refuse(host_name, problem, "give unix:///PATH, tcp://HOST:PORT or ssh://USER@HOST (as DOCKER_HOST)")
    cert_path = expand_path(values, cert_name) if values[cert_name] else None
    if cert_path is not None:
        try:
            missing = [name for name in ("ca.pem", "cert.pem", "key.pem") if not (cert_path / name).is_file()]
        except OSError as error:  # a name longer than NAME_MAX: the OS's word, on one line
            raise values.refuse(cert_name, f"cannot be used ({error.strerror or error})", "give the directory with ca.pem, cert.pem and key.pem") from None
        if missing:
            raise values.refuse(cert_name, f"has no {', '.join(missing)}", "give the directory with the engine's ca.pem and your cert.pem and key.pem")
        if values[host_name] and not values[host_name].startswith("tcp://"):
            raise values.refuse(cert_name, f"is for a tcp:// engine, and {values[host_name]} is not one", "leave it out, or give a tcp:// address")
    return EngineAddress(values[host_name], str(cert_path) if cert_path else "")
