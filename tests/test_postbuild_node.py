"""A postBuild gets what Binder postBuild scripts expect: Debian's node and npm, and a global npm prefix the
notebook user owns, first on PATH. Images without a postBuild stay without them."""

from __future__ import annotations

from typing import Mapping

import pytest

from buildpacks import load_buildpacks
from r2env.inspect import inspect
from r2env.plan import PlanOptions, plan
from r2env.render import render_dockerfile
from r2env.repo import MemoryRepo
from r2env.select import select
from r2env.spec import ImageSpec, Stage, Step

POST_BUILD = "#!/bin/sh\nnpm install --global semver@7.6.3\n"
NPM_ENV = {"NPM_DIR": "/srv/npm", "NPM_CONFIG_PREFIX": "/srv/npm", "NPM_CONFIG_GLOBALCONFIG": "/srv/npm/npmrc", "PATH": "/srv/npm/bin:$PATH"}


def planned(files: Mapping[str, str], options: PlanOptions = PlanOptions()) -> ImageSpec:
    facts = inspect(MemoryRepo(files, frozenset(name for name in files if name.endswith("postBuild"))))
    return plan(facts, select(facts, load_buildpacks()), options)


def debian_packages(spec: ImageSpec) -> list[str]:
    return [package for step in spec.steps if "apt" in step.caches for package in step.packages]


def npm_env(spec: ImageSpec) -> dict[str, str]:
    return {key: value for step in spec.steps if step.kind == "env" for key, value in step.env if "NPM" in key or value.startswith("/srv/npm")}


def node_install(spec: ImageSpec) -> Step:
    (step,) = [step for step in spec.steps if "nodejs" in step.packages]
    return step


@pytest.mark.parametrize("post_build", ["postBuild", "binder/postBuild", ".binder/postBuild"])
@pytest.mark.parametrize("declaration", [{"requirements.txt": "tabulate==0.9.0\n"}, {}])
def test_a_postbuild_brings_node_npm_and_the_users_npm_prefix(post_build: str, declaration: dict[str, str]) -> None:
    files = {**declaration, post_build: POST_BUILD}
    if post_build.startswith(("binder/", ".binder/")):
        files = {f"{post_build.split('/')[0]}/{name}": text for name, text in declaration.items()} | {post_build: POST_BUILD}
    spec = planned(files)
    assert debian_packages(spec)[-2:] == ["nodejs", "npm"]
    assert node_install(spec).stage is Stage.SYSTEM and node_install(spec).fetches
    assert npm_env(spec) == NPM_ENV
    assert any(step.script == "install -d -o 1000 -g 1000 /srv/npm" and step.user == "root" for step in spec.steps)


def test_without_a_postbuild_there_is_no_node() -> None:
    spec = planned({"requirements.txt": "tabulate==0.9.0\n", "apt.txt": "jq\n", "start": "#!/bin/sh\nexec \"$@\"\n"})
    assert debian_packages(spec) == ["ca-certificates", "python3", "python3-venv", "jq"]
    assert npm_env(spec) == {}
    assert "npm" not in render_dockerfile(spec)


def test_the_npm_prefix_belongs_to_the_chosen_user() -> None:
    spec = planned({"postBuild": POST_BUILD}, PlanOptions(user_name="alice", user_id=1234))
    assert any(step.script == "install -d -o 1234 -g 1234 /srv/npm" for step in spec.steps)


def test_node_is_installed_with_the_system_packages_so_repository_edits_keep_it_cached() -> None:
    dockerfile = render_dockerfile(planned({"requirements.txt": "tabulate==0.9.0\n", "postBuild": POST_BUILD, "apt.txt": "jq\n"}))
    lines = dockerfile[dockerfile.rindex("\nFROM "):].splitlines()  # the image's stage (the uv stage repeats its first step)
    # Before apt.txt's step: editing apt.txt does not reinstall them. Apart from Debian's Python, which the uv stage
    # repeats: uv is ready while Node.js installs.
    node = next(i for i, line in enumerate(lines) if line.endswith("--no-install-recommends nodejs npm"))
    apt_txt = next(i for i, line in enumerate(lines) if "--no-install-recommends jq &&" in line)
    assert node < apt_txt < lines.index("USER jovyan") < lines.index("COPY --chown=1000:1000 . /home/jovyan/")
    assert lines.index('ENV NPM_DIR="/srv/npm" \\') < next(i for i, line in enumerate(lines) if line.endswith("./postBuild"))