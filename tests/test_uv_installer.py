"""uv installs every pip path of an image (issue 13): from a hash-pinned wheel in a build stage of its own, mounted
into the steps that install, never left in the image. Rendering only; integration/test_uv_in_image.py builds."""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

import pytest

from buildpacks import load_buildpacks
from r2env.errors import SpecError
from r2env.inspect import inspect
from r2env.plan import PlanOptions, plan
from r2env.render import RenderOptions, render_dockerfile
from r2env.repo import DiskRepo, MemoryRepo
from r2env.select import select
from r2env.spec import BuildStage, ImageSpec, Stage, Step
from r2env.uv_installer import UV, UV_STAGE, UV_VERSION, UV_WHEEL_HASHES, with_uv_stage

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
# Every example whose environment pip used to install (the conda and pixi ones are planned from their locks in
# tests/test_conda_lock.py and tests/test_pixi.py).
PIP_EXAMPLES = ["binder-folder", "hashed-requirements", "pipfile-lock", "poetry-lock", "pyproject", "requirements", "runtime-trixie",
                "setup-py", "uv-lock", "r-install-r", "r-renv"]
_PIP = re.compile(r"(?:^|&& |; )(?:\S*/)?pip3? install|python3? -m pip install")


def example_spec(name: str) -> ImageSpec:
    facts = inspect(DiskRepo(EXAMPLES / name))
    return plan(facts, select(facts, load_buildpacks()))


def memory_spec(files: dict[str, str], **options: object) -> ImageSpec:
    facts = inspect(MemoryRepo(files))
    return plan(facts, select(facts, load_buildpacks()), PlanOptions(**options))  # type: ignore[arg-type]


def stages_of(dockerfile: str) -> list[list[str]]:
    stages: list[list[str]] = []
    for line in dockerfile.splitlines():
        if line.startswith("FROM "):
            stages.append([])
        if stages:
            stages[-1].append(line)
    return stages


@pytest.mark.parametrize("example", PIP_EXAMPLES)
def test_every_pip_path_installs_with_the_mounted_uv_and_leaves_no_uv_in_the_image(example: str) -> None:
    spec = example_spec(example)
    dockerfile = render_dockerfile(spec)
    *_, image = stages_of(dockerfile)
    runs = [line for line in image if line.startswith("RUN ")]
    assert not [line for line in runs if _PIP.search(line.split(" for s in ")[-1])], "pip installs in the image"
    installs = [line for line in runs if f"{UV} pip install" in line or f"{UV} venv" in line]
    assert installs, "nothing installed with uv"
    assert all(f"--mount=type=bind,from={UV_STAGE},source=/opt/r2env-uv,target=/tmp/r2env-uv" in line for line in installs)
    # Nothing of the uv stage is copied into the image: uv is only ever mounted (no COPY, no leftover binary).
    assert not [line for line in image if line.startswith("COPY") and UV_STAGE in line]
    assert [stage.name for stage in spec.build_stages].count(UV_STAGE) == 1


def test_uv_comes_from_the_index_hash_pinned_at_one_version() -> None:
    (stage,) = example_spec("requirements").build_stages
    install = stage.steps[-1]
    assert f"uv=={UV_VERSION} " + " ".join(f"--hash=sha256:{h}" for h in UV_WHEEL_HASHES) in install.script
    assert "--require-hashes --target /opt/r2env-uv" in install.script and "index" in install.secrets
    assert all(re.fullmatch(r"[0-9a-f]{64}", digest) for digest in UV_WHEEL_HASHES)


def test_the_uv_stage_starts_with_the_images_own_apt_step_so_buildkit_runs_it_once() -> None:
    spec = example_spec("requirements")
    (stage,) = spec.build_stages
    assert stage.image_env and stage.steps[0] == spec.steps[0]
    uv_stage, image = stages_of(render_dockerfile(spec))
    # Same base, same ENV, same SHELL, same RUN: the same BuildKit vertex.
    assert uv_stage[0] == f"FROM {spec.base_image} AS {UV_STAGE}" and image[0] == f"FROM {spec.base_image}"
    shared = uv_stage[1:uv_stage.index(next(line for line in uv_stage if "uv " + UV_VERSION in line))]
    assert image[1:len(shared) + 1] == shared and any("apt-get install" in line for line in shared)


def test_a_conda_environment_shares_the_conda_stages_apt_step() -> None:
    apt = Step(kind="run", stage=Stage.SYSTEM, buildpack="conda", description="install Python", script="apt-get install python3-venv",
               caches=("apt",), packages=("python3", "python3-venv"))
    uses_uv = Step(kind="run", stage=Stage.DEPENDENCIES, buildpack="conda", description="install", script=f"{UV} pip install x", caches=("uv",))
    image_apt = Step(kind="run", stage=Stage.SYSTEM, buildpack="conda", description="system", script="apt-get install ca-certificates",
                     caches=("apt",), packages=("ca-certificates",))
    stages = with_uv_stage((image_apt,), (BuildStage("r2env-conda", (apt, uses_uv)),))
    # Before the stage that mounts it: a bind mount's `from=` finds only stages defined earlier.
    assert [s.name for s in stages] == [UV_STAGE, "r2env-conda"]
    assert stages[0].steps[0] == apt and not stages[0].image_env


def test_a_build_stages_apt_step_has_caches_of_its_own_so_it_runs_beside_the_images() -> None:
    # apt's cache mounts are sharing=locked: steps on the same ones wait for each other. The conda stage and the uv
    # stage that repeats its apt step share theirs (one instruction, built once); the image keeps its own.
    apt = Step(kind="run", stage=Stage.SYSTEM, buildpack="conda", description="install Python", script="apt-get install python3-venv",
               caches=("apt",), packages=("python3", "python3-venv"))
    uses_uv = Step(kind="run", stage=Stage.DEPENDENCIES, buildpack="conda", description="install", script=f"{UV} pip install x", caches=("uv",))
    image_apt = Step(kind="run", stage=Stage.SYSTEM, buildpack="conda", description="system", script="apt-get install ca-certificates",
                     caches=("apt",), packages=("ca-certificates",))
    spec = replace(example_spec("requirements"), steps=(image_apt,),
                   build_stages=with_uv_stage((image_apt,), (BuildStage("r2env-conda", (apt, uses_uv)),)))
    uv_stage, conda_stage, image = stages_of(render_dockerfile(spec))

    def apt_caches(lines: list[str]) -> set[str]:
        line = next(line for line in lines if "apt-get install" in line)
        return set(re.findall(r"id=(r2env-apt-[a-z-]+)", line))

    assert apt_caches(uv_stage) == apt_caches(conda_stage) == {"r2env-apt-cache-build-stage", "r2env-apt-lists-build-stage"}
    assert apt_caches(image) == {"r2env-apt-cache", "r2env-apt-lists"}
    # A uv stage that repeats the image's own apt step keeps the image's caches: the same vertex.
    uv_stage, image = stages_of(render_dockerfile(example_spec("requirements")))
    assert apt_caches(uv_stage) == apt_caches(image) == {"r2env-apt-cache", "r2env-apt-lists"}


@pytest.mark.parametrize("example", PIP_EXAMPLES)
def test_the_uv_stage_comes_before_every_stage_that_mounts_it(example: str) -> None:
    lines = render_dockerfile(example_spec(example)).splitlines()
    defined = next(i for i, line in enumerate(lines) if line.startswith(f"FROM ") and line.endswith(f" AS {UV_STAGE}"))
    assert defined < min(i for i, line in enumerate(lines) if f"from={UV_STAGE}" in line)


def test_a_step_using_uv_without_python_to_fetch_it_is_refused() -> None:
    uses_uv = Step(kind="run", stage=Stage.DEPENDENCIES, buildpack="odd", description="install", script=f"{UV} pip install x", caches=("uv",))
    with pytest.raises(SpecError, match="no step before it installs Python"):
        with_uv_stage((uses_uv,), ())
    assert with_uv_stage((), ()) == ()


def test_each_user_gets_its_own_uv_cache_and_the_repositorys_code_none() -> None:
    spec = memory_spec({"requirements.txt": "numpy==1.26.4\n-e .\n", "setup.py": ""}, user_id=1042, user_name="ana")
    lines = render_dockerfile(spec).splitlines()
    named = next(line for line in lines if line.endswith("--compile-bytecode numpy==1.26.4"))
    assert "--mount=type=cache,id=r2env-uv-1042,target=/tmp/r2env-uv-cache,uid=1042,gid=1042" in named
    assert "export UV_CACHE_DIR=/tmp/r2env-uv-cache UV_NO_CONFIG=1 UV_INDEX_STRATEGY=unsafe-best-match UV_LINK_MODE=copy" in named
    assert "export SOURCE_DATE_EPOCH=" in named  # deterministic (checked-hash) .pyc files
    own = next(line for line in lines if f'{UV} pip install --python "$NB_PYTHON_PREFIX/bin/python" -r requirements.txt' in line)
    assert "type=cache" not in own and "UV_NO_CACHE=1" in own and "--compile-bytecode" not in own
    assert "uv_cache.json" in own  # uv's note of the install time of a local folder is removed


def test_a_standalone_cpython_is_installed_by_the_mounted_uv_as_root_with_roots_cache() -> None:
    spec = memory_spec({"runtime.txt": "python-3.12\n"})
    (step,) = spec.steps_in(Stage.INTERPRETER)
    assert step.user == "root" and f"{UV} python install 3.12" in step.script and "pip install uv" not in step.script
    line = next(line for line in render_dockerfile(spec).splitlines() if f"{UV} python install 3.12" in line)
    assert "id=r2env-uv-0,target=/tmp/r2env-uv-cache,uid=0,gid=0" in line
    assert "--no-index --find-links /usr/share/python-wheels pip &&" in step.script  # no setuptools from 3.12 on


def test_the_venv_gets_debians_pip_and_setuptools_offline() -> None:
    (step,) = example_spec("requirements").steps_in(Stage.INTERPRETER)
    assert step.script.startswith(f"{UV} venv --allow-existing --python /usr/bin/python3.11 /srv/venv && ")
    assert "--no-index --find-links /usr/share/python-wheels pip setuptools" in step.script and not step.secrets


def test_the_classic_builder_copies_uv_in_once_per_stage() -> None:
    spec = memory_spec({"requirements.txt": "numpy\n"})
    text = render_dockerfile(spec, RenderOptions(buildkit=False))
    assert text.count(f"COPY --from={UV_STAGE} /opt/r2env-uv /tmp/r2env-uv") == 1 and "--mount" not in text


def test_the_plan_shows_uv_without_its_plumbing() -> None:
    from r2env.render import display_command

    line = next(line for line in render_dockerfile(example_spec("requirements")).splitlines() if "-r requirements.txt" in line)
    assert display_command(line) == f'RUN {UV} pip install --python "$NB_PYTHON_PREFIX/bin/python" --compile-bytecode -r requirements.txt'


def test_options_uv_reads_only_on_its_command_line_are_repeated_there() -> None:
    spec = memory_spec({"requirements.txt": "--trusted-host pypi.example.org\n--pre\n--prefer-binary\nnumpy\n"})
    (step,) = [s for s in spec.steps if "requirements.txt" in s.script]
    assert step.script.endswith("--compile-bytecode --trusted-host pypi.example.org --pre -r requirements.txt") and step.caches == ("uv",)


def test_options_uv_lacks_are_left_out_of_its_command_line_and_named_packages_keep_the_rest() -> None:
    spec = memory_spec({"requirements.txt": "--prefer-binary\n--use-feature truststore\n--extra-index-url https://x.example/simple\nnumpy\n-e .\n",
                        "setup.py": ""})
    named = next(s for s in spec.steps if s.description.startswith("install the packages named"))
    assert named.script.startswith(f'{UV} pip install --python "$NB_PYTHON_PREFIX/bin/python" --compile-bytecode --extra-index-url https://x.example/simple numpy')
    assert "--prefer-binary" not in named.script and "--use-feature" not in named.script


@pytest.mark.parametrize("option", ["--config-settings editable_mode=compat", "--global-option --no-user-cfg"])
def test_a_file_with_options_only_pip_has_is_installed_by_the_environments_pip(option: str) -> None:
    spec = memory_spec({"requirements.txt": f"{option}\nnumpy\n"})
    (step,) = [s for s in spec.steps if "requirements.txt" in s.script]
    assert step.script == "pip install -r requirements.txt" and step.caches == ("pip",)
    line = next(line for line in render_dockerfile(spec).splitlines() if line.endswith("pip install -r requirements.txt"))
    assert "id=r2env-pip" in line and "r2env-uv" not in line
