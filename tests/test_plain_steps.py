"""r2env's small root steps join a neighbour whose rerun costs as little (r2env/plain_steps.py)."""

from __future__ import annotations

from buildpacks import load_buildpacks
from r2env.apt_install import REPOSITORY_APT, apt_install
from r2env.inspect import inspect
from r2env.plain_steps import fold_plain_steps
from r2env.plan import plan
from r2env.render import render_dockerfile
from r2env.repo import MemoryRepo
from r2env.select import select
from r2env.spec import ImageSpec, Stage, Step

USER = Step(kind="run", stage=Stage.SYSTEM, buildpack="python", description="create user", script="useradd jovyan")
NPM_DIR = Step(kind="run", stage=Stage.SYSTEM, buildpack="postbuild", description="create /srv/npm", script="install -d /srv/npm")
APT_TXT = apt_install(("jq",), REPOSITORY_APT, "install apt.txt packages")
NODE = apt_install(("nodejs", "npm"), "postbuild", "install Node.js and npm")
PYTHON = apt_install(("python3", "python3-venv"), "python", "install system packages")
NPM_ENV = Step(kind="env", stage=Stage.SYSTEM, buildpack="postbuild", description="npm's prefix", env=(("NPM_DIR", "/srv/npm"),))


def test_plain_steps_join_each_other_and_apt_txts_step_in_order() -> None:
    (joined,) = fold_plain_steps([USER, APT_TXT, NPM_DIR])
    assert joined.script == f"useradd jovyan && {APT_TXT.script} && install -d /srv/npm"
    # apt.txt's step leads: its buildpack, secrets, caches and packages (what a lock resolves) are the joined step's.
    assert (joined.buildpack, joined.secrets, joined.caches, joined.packages) == (REPOSITORY_APT, APT_TXT.secrets, ("apt",), ("jq",))
    assert joined.description == "install apt.txt packages; python: create user; postbuild: create /srv/npm"
    (both,) = fold_plain_steps([USER, NPM_DIR])
    assert both.script == "useradd jovyan && install -d /srv/npm" and not both.caches and not both.secrets


def test_r2envs_own_apt_step_and_the_python_step_the_uv_stage_repeats_stay_apart() -> None:
    # Rerunning Node.js's step (half a minute) for a changed user would cost what the fold saves many times over;
    # the Python step is one instruction with the uv stage's, built once for both, only while it is the same.
    assert fold_plain_steps([NODE, USER]) == [NODE, USER]
    assert fold_plain_steps([PYTHON, USER, NODE]) == [PYTHON, USER, NODE]


def test_only_neighbours_join_so_an_env_step_between_keeps_them_apart() -> None:
    assert fold_plain_steps([APT_TXT, NPM_ENV, NPM_DIR]) == [APT_TXT, NPM_ENV, NPM_DIR]
    repository = Step(kind="run", stage=Stage.SYSTEM, buildpack="python", description="build", script="./build", repository_code=True)
    as_user = Step(kind="run", stage=Stage.SYSTEM, buildpack="python", description="as the user", script="true", user="user")
    later = Step(kind="run", stage=Stage.SERVER, buildpack="python", description="later", script="true")
    for other in (repository, as_user, later):
        assert fold_plain_steps([USER, other]) == [USER, other]


def spec_of(files: dict[str, str]) -> ImageSpec:
    facts = inspect(MemoryRepo(files, frozenset(name for name in files if name.endswith("postBuild"))))
    return plan(facts, select(facts, load_buildpacks()))


def image_runs(spec: ImageSpec) -> list[str]:
    text = render_dockerfile(spec)
    return [line for line in text[text.rindex("\nFROM "):].splitlines() if line.startswith("RUN ")]


def test_a_conda_repository_with_apt_txt_and_post_build_has_two_steps_fewer() -> None:
    files = {"environment.yml": "dependencies:\n  - python=3.11\n", "apt.txt": "jq\n", "postBuild": "#!/bin/sh\ntrue\n"}
    runs = image_runs(spec_of(files))
    # r2env's packages; apt.txt's with the user, npm's folder and the entrypoint; the environment; postBuild.
    assert len(runs) == 4
    assert "ca-certificates" in runs[0] and "useradd" not in runs[0] and "r2env-entrypoint" not in runs[0]
    joined = runs[1]
    assert joined.index("useradd") < joined.index("--no-install-recommends jq") < joined.index("/srv/npm") < joined.index("r2env-entrypoint")


def test_without_apt_txt_the_user_and_npms_folder_share_a_step_with_the_entrypoint() -> None:
    runs = image_runs(spec_of({"environment.yml": "dependencies:\n  - python=3.11\n", "postBuild": "#!/bin/sh\ntrue\n"}))
    (joined,) = [run for run in runs if "useradd" in run]
    assert "install -d -o 1000 -g 1000 /srv/npm" in joined and "r2env-entrypoint" in joined and "--mount" not in joined
