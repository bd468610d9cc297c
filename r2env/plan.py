"""plan: turn a Selection into the image spec. Pure: no filesystem, no engine."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from r2env import __version__
from r2env.apt_install import fold_own_apt
from r2env.plain_steps import fold_plain_steps
from r2env.buildpack import Contribution, PlanContext, Role
from r2env.cuda import DRIVER_ENV, choose_cuda
from r2env.errors import SpecError
from r2env.inspect import RepoFacts
from r2env.lock.lockfile import Lock, LockedPackage
from r2env.interpreter import DEBIAN_PYTHON, choose_interpreter
from r2env.r.snapshot import DEFAULT_CRAN_MIRROR
from r2env.r.versions import DEFAULT_R_BUILDS_URL
from r2env.render import ENTRYPOINT
from r2env.select import Selection
from r2env.spec import Detection, ImageSpec, Interpreter
from r2env.node_installer import with_node_stage
from r2env.uv_installer import with_uv_stage

if TYPE_CHECKING:  # read only for conda and pixi environments: loaded by them
    from r2env.parsers.conda_lock import CondaLockFile

ENV_PREFIX = "/srv/venv"
# JupyterLab as the notebook server; the lock issue pins its whole closure.
DEFAULT_SERVER = "jupyterlab==4.6.6"


@dataclass(frozen=True)
class PlanOptions:
    user_name: str = "jovyan"
    user_id: int = 1000
    base_image: str = ""  # "" = debian:<suite chosen for the interpreter>
    base_suite: str = "bookworm"  # the suite of the default base, or of --base-image
    server_requirement: str = DEFAULT_SERVER
    conda_channels: tuple[str, ...] = ()  # replace environment.yml's channels when locking (a mirror, a local channel)
    cuda: str = ""  # "" = no GPU; "auto" = chosen from the pinned frameworks; or "X.Y"
    target_repo_dir: str = ""  # "" = the user's home, as repo2docker (checked in r2env/options.py)
    cran_mirror: str = DEFAULT_CRAN_MIRROR  # where R packages come from ({date}, {suite} filled in: r2env/r/snapshot.py)
    r_builds_url: str = DEFAULT_R_BUILDS_URL  # R builds for versions Debian does not ship ({platform}, {version})
    rstudio: str = ""  # R: RStudio Server at /rstudio: "" (none), "posit" or a .deb URL (r2env/r/rstudio.py)
    pixi_environment: str = "default"  # the pixi environment installed (buildpacks/pixi.py)


def _home(user_name: str) -> str:
    return f"/home/{user_name}"


def _common_env(options: PlanOptions, repo_dir: str, env_prefix: str) -> tuple[tuple[str, str], ...]:
    # Names follow repo2docker's so existing postBuild/start scripts keep working.
    return (
        ("DEBIAN_FRONTEND", "noninteractive"),
        ("LANG", "C.UTF-8"),
        ("LC_ALL", "C.UTF-8"),
        ("SHELL", "/bin/bash"),
        ("NB_USER", options.user_name),
        ("NB_UID", str(options.user_id)),
        ("USER", options.user_name),
        ("HOME", _home(options.user_name)),
        ("REPO_DIR", repo_dir),
        ("NB_PYTHON_PREFIX", env_prefix),
        ("KERNEL_PYTHON_PREFIX", env_prefix),
        ("PIP_DISABLE_PIP_VERSION_CHECK", "1"),
        ("PYTHONUNBUFFERED", "1"),
        ("PATH", f"{env_prefix}/bin:{_home(options.user_name)}/.local/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"),
    )


def _labels() -> tuple[tuple[str, str], ...]:
    return (("org.r2env.version", __version__),)


def declared_requirements(facts: RepoFacts) -> tuple[str, ...]:
    """Every Python requirement the repository names, wherever it names them."""
    from_files = [r for f in facts.requirements for r in f.requirements]
    from_pyproject = list(facts.pyproject.dependencies) if facts.pyproject else []
    from_pipfile = list(facts.pipfile.requirements) if facts.pipfile else []
    from_lock = [f"{p.name}=={p.version}" for p in facts.pipfile_lock or ()]
    return tuple(from_files + from_pyproject + from_pipfile + from_lock)


def plan(
    facts: RepoFacts,
    selection: Selection,
    options: PlanOptions = PlanOptions(),
    lock: Lock | None = None,
    pins: tuple[LockedPackage, ...] = (),
    pins_source: str = "",
    conda: CondaLockFile | None = None,
) -> ImageSpec:
    repo_dir = options.target_repo_dir or _home(options.user_name)
    detections = selection.detections
    if selection.primary.role is Role.EXCLUSIVE:
        return ImageSpec(
            base_image="",
            suite="",
            interpreter=None,
            user_name=options.user_name,
            user_id=options.user_id,
            repo_dir=repo_dir,
            config_dir=facts.config_dir,
            detections=detections,
            buildpacks=(selection.primary.name,),
            labels=_labels(),
            dockerfile=facts.path("Dockerfile"),
            # repo2docker passes REPO_DIR only when --target-repo-dir is given, so a Dockerfile's own default stands.
            build_args=(("NB_USER", options.user_name), ("NB_UID", str(options.user_id)))
            + ((("REPO_DIR", repo_dir),) if options.target_repo_dir else ()),
        )
    default_suite = options.base_suite if options.base_suite in DEBIAN_PYTHON else "bookworm"
    if selection.primary.suite is not None:
        # The primary needs a suite of its own (R 4.5 is Debian trixie's): its Python is that suite's.
        default_suite = selection.primary.suite(facts, default_suite, bool(options.base_image))
    env_prefix = ENV_PREFIX
    if selection.primary.environment is not None:
        interpreter, env_prefix = selection.primary.environment(facts, conda)
        suite = default_suite
    else:
        interpreter, suite = choose_interpreter(facts.python, default_suite)
    if options.base_image and suite != options.base_suite:
        # A chosen base keeps its suite: a Python its suite does not ship comes from a standalone build.
        suite = options.base_suite
        reason = f"{interpreter.reason}; the base image {options.base_image} is Debian {suite}"
        interpreter = Interpreter(interpreter.version, "conda" if interpreter.source == "conda" else "uv", reason)
    if options.cuda and selection.primary.environment is not None:
        raise SpecError(f"--gpu/--cuda do not apply to a {selection.primary.name} environment yet",
                        "declare the CUDA packages in the environment itself, and build without --gpu")
    cuda = choose_cuda(declared_requirements(facts), options.cuda) if options.cuda else None
    cuda_env: tuple[tuple[str, str], ...] = ()
    if cuda:
        # NVIDIA's CUDA images are Ubuntu: the Python comes from a standalone build, not from Debian.
        suite = ""
        interpreter = Interpreter(interpreter.version, "uv", f"{interpreter.reason}; the CUDA base is Ubuntu, so a standalone build")
        detections = (*detections, Detection("cuda", "gpu", f"CUDA {cuda.version} ({cuda.base_image}): {cuda.reason}"))
        cuda_env = (*DRIVER_ENV, ("R2ENV_CUDA_VERSION", cuda.version))
        if cuda.torch_index:
            # torch's CUDA builds live on PyTorch's own index: for uv, which installs, and for pip at run time.
            cuda_env += (("PIP_EXTRA_INDEX_URL", cuda.torch_index), ("UV_EXTRA_INDEX_URL", cuda.torch_index))
    context = PlanContext(
        user_name=options.user_name,
        user_id=options.user_id,
        repo_dir=repo_dir,
        env_prefix=env_prefix,
        interpreter=interpreter,
        server_requirement=options.server_requirement,
        lock=lock,
        pins=pins,
        pins_source=pins_source,
        conda=conda,
        suite=suite,
        cran_mirror=options.cran_mirror,
        r_builds_url=options.r_builds_url,
        rstudio=options.rstudio,
        base_fixed=bool(options.base_image),
    )
    contributions: list[Contribution] = [b.contribute(facts, context) for b in selection.buildpacks]
    steps = [step for c in contributions for step in c.steps]
    # Stable sort: stage order first, contribution order within a stage (the primary's steps come first).
    steps.sort(key=lambda step: step.stage)
    steps = fold_own_apt(steps, lock.apt if lock else None)  # one apt step for r2env's own packages
    steps = fold_plain_steps(steps)  # r2env's small root steps ride along with a neighbour
    packages = tuple(p for c in contributions for p in c.packages)
    env = _common_env(options, repo_dir, env_prefix) + cuda_env + tuple(e for c in contributions for e in c.env)
    return ImageSpec(
        base_image=options.base_image or (cuda.base_image if cuda else f"debian:{suite}"),
        suite=suite,
        interpreter=interpreter,
        user_name=options.user_name,
        user_id=options.user_id,
        repo_dir=repo_dir,
        config_dir=facts.config_dir,
        detections=detections,
        buildpacks=tuple(b.name for b in selection.buildpacks),
        packages=packages,
        env=env,
        steps=tuple(steps),
        command=("jupyter", "lab", "--ip=0.0.0.0", "--port=8888", "--no-browser"),
        entrypoint=(ENTRYPOINT,),
        labels=_labels(),
        build_stages=with_node_stage(tuple(steps), with_uv_stage(tuple(steps), tuple(stage for c in contributions for stage in c.build_stages))),
    )

