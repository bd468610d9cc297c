"""uv, the installer every pip path of an image uses: taken from the package index as a hash-pinned wheel in a
build stage of its own, and mounted read-only into the steps that install (so it is not left in the image).

The stage starts with the same apt step as the stage that uses uv (rendered with the same ENV), so BuildKit runs
that step once for both; pip runs straight from Debian's own pip wheel, so no venv is made for it."""

from __future__ import annotations

import shlex
from typing import Iterable

from r2env.errors import SpecError
from r2env.spec import BuildStage, Stage, Step

UV_VERSION = "0.13.9"
# sha256 of uv's Linux wheels on PyPI (x86_64, and aarch64 for arm64 engines): pip takes the one its platform needs.
UV_WHEEL_HASHES = (
    "d7f459fe4fd247d830351c75686d3996ace3c6f3f728eb0e85a30b7ada0cef19",  # manylinux_2_17_x86_64
    "ecb6028d79dc96fbeafffe5c8af62a7099487ebc05a701e76714eebcffd06375",  # manylinux_2_28_aarch64
    "5435c5ce14a56431208ca0996416d310f1598e8c2c8ba707688985a16bb82dbe",  # manylinux_2_17_aarch64
)
UV_STAGE = "r2env-uv"
UV_DIR = "/opt/r2env-uv"  # in the stage
# Where the steps that use uv see it (a read-only bind mount): under /tmp, like the cache mounts, since an engine
# with an older BuildKit leaves the empty mount point in the layer.
UV_MOUNT = "/tmp/r2env-uv"
UV = f"{UV_MOUNT}/bin/uv"
# Debian's python3-venv brings pip's and setuptools' wheels here (python3-pip-whl, python3-setuptools-whl).
DEBIAN_WHEELS = "/usr/share/python-wheels"
_REQUIREMENT = f"uv=={UV_VERSION} " + " ".join(f"--hash=sha256:{digest}" for digest in UV_WHEEL_HASHES)


# pip from Debian's own wheel (pip runs from its wheel): into a folder, so no venv is made; a tool's files, no bytecode.
DEBIAN_PIP_INSTALL = f"python3 $(ls {DEBIAN_WHEELS}/pip-*.whl | head -n 1)/pip install --disable-pip-version-check --root-user-action=ignore --no-compile"


def pip_tool_step(buildpack: str, description: str, requirement: str, target: str, then: str) -> Step:
    """A hash-pinned tool from the package index into `target` (the secrets reach the index as for any pip), then
    `then`: what lays it out and checks that it runs."""
    return Step(
        kind="run",
        stage=Stage.SYSTEM,
        buildpack=buildpack,
        description=description,
        script=f"{DEBIAN_PIP_INSTALL} --no-deps --require-hashes --target {target} -r <(echo {shlex.quote(requirement)}) && {then}",
        secrets=("ca", "proxy", "index"),
        caches=("pip",),
    )


def install_uv_step() -> Step:
    return pip_tool_step("r2env", f"uv {UV_VERSION} from the package index (hash-checked), for the steps that install Python packages",
                         _REQUIREMENT, UV_DIR, f"{UV_DIR}/bin/uv --version")


def installs_python(step: Step) -> bool:
    return step.kind == "run" and "apt" in step.caches and "python3-venv" in step.packages


def _uses_uv(steps: Iterable[Step]) -> bool:
    return any("uv" in step.caches for step in steps)


def with_uv_stage(steps: tuple[Step, ...], stages: tuple[BuildStage, ...]) -> tuple[BuildStage, ...]:
    """`stages` plus the uv stage when a step uses uv."""
    if not (_uses_uv(steps) or any(_uses_uv(stage.steps) for stage in stages)):
        return stages
    return python_tool_stage(UV_STAGE, install_uv_step(), steps, stages, "Python packages with uv")


def python_tool_stage(name: str, install: Step, steps: tuple[Step, ...], stages: tuple[BuildStage, ...], what: str,
                      own_python: Step | None = None) -> tuple[BuildStage, ...]:
    """`stages` plus a stage `name` that fetches a tool with pip (`install`). The stage repeats the apt step that
    installs Python in the image (or in a build stage): the same instruction after the same base, so it is built
    once; without one, it starts with `own_python` if given. First: a Dockerfile's `--mount=type=bind,from=NAME`
    or `COPY --from=NAME` finds only a stage defined before it (else it looks for an image of that name)."""
    if any(stage.name == name for stage in stages):
        return stages
    if steps and installs_python(steps[0]):
        return (BuildStage(name, (steps[0], install), image_env=True), *stages)
    for stage in stages:
        if stage.steps and installs_python(stage.steps[0]):
            return (BuildStage(name, (stage.steps[0], install)), *stages)
    if own_python is not None:
        return (BuildStage(name, (own_python, install)), *stages)
    # Buildpacks start from system_steps (buildpacks/steps.py), whose apt step installs Python.
    raise SpecError(f"a build step needs {what}, but no step before it installs Python to fetch it with",
                    "report this as a bug in r2env (or in the third-party buildpack that made the step)")
