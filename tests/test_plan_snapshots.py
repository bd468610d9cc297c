"""Plan snapshots for every example repository, golden Dockerfiles, and the layer-order properties behind them.

Regenerate the snapshots with: R2ENV_UPDATE_SNAPSHOTS=1 python -m pytest tests/test_plan_snapshots.py
"""

from __future__ import annotations

import json
import os
from dataclasses import replace
from pathlib import Path
from typing import Mapping

import pytest

from buildpacks import load_buildpacks
from r2env.inspect import inspect
from r2env.pixi.lockfile import read_pixi_environment
from r2env.plan import PlanOptions, plan
from r2env.render import RenderOptions, render_dockerfile
from r2env.repo import DiskRepo, MemoryRepo, RepoView
from r2env.select import select
from r2env.uv_installer import UV, UV_STAGE
from r2env.spec import ImageSpec, Stage

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
SNAPSHOTS = Path(__file__).resolve().parent / "snapshots"
EXAMPLE_NAMES = sorted(p.name for p in EXAMPLES.iterdir() if p.is_dir())
REPO_COPY = "COPY --chown=1000:1000 . /home/jovyan/"


def planned(repo: RepoView, options: PlanOptions = PlanOptions()) -> ImageSpec:
    facts = inspect(repo)
    selection = select(facts, load_buildpacks())
    # A pixi project is planned from its pixi.lock (the pipeline reads it the same way).
    pixi = facts.pixi if selection.primary.name == "pixi" and isinstance(repo, DiskRepo) else None
    conda = read_pixi_environment(repo.root, pixi, options.pixi_environment) if pixi else None  # type: ignore[attr-defined]
    return plan(facts, selection, options, conda=conda)


def memory_plan(files: Mapping[str, str], options: PlanOptions = PlanOptions()) -> ImageSpec:
    return planned(MemoryRepo(files), options)


def check_snapshot(path: Path, text: str) -> None:
    if os.environ.get("R2ENV_UPDATE_SNAPSHOTS") == "1":
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        return
    assert path.is_file(), f"{path} is missing: run with R2ENV_UPDATE_SNAPSHOTS=1 to create it"
    assert text == path.read_text(encoding="utf-8"), f"{path.name} differs: if intended, regenerate with R2ENV_UPDATE_SNAPSHOTS=1"


def test_every_example_is_covered() -> None:
    assert EXAMPLE_NAMES, "no example repositories found"
    assert {p.stem for p in (SNAPSHOTS / "plans").glob("*.json")} <= set(EXAMPLE_NAMES), "stale plan snapshots"


@pytest.mark.parametrize("example", EXAMPLE_NAMES)
def test_example_plan_matches_snapshot(example: str) -> None:
    spec = planned(DiskRepo(EXAMPLES / example))
    check_snapshot(SNAPSHOTS / "plans" / f"{example}.json", spec.to_json() + "\n")
    if not spec.dockerfile:
        check_snapshot(SNAPSHOTS / "dockerfiles" / f"{example}.Dockerfile", render_dockerfile(spec))


def test_an_unlocked_conda_dockerfile_fails_with_the_way_to_lock_it() -> None:
    # A conda environment is installed only from its lock: without one, the rendered step says what to run.
    text = render_dockerfile(planned(DiskRepo(EXAMPLES / "environment-yml")))
    assert "binder/environment.yml is built from its lock: run \\`r2env lock\\` first" in text
    assert "exit 1" in text


def run_lines(dockerfile: str) -> dict[str, str]:
    """Each step's description comment → the instruction that follows it."""
    lines = dockerfile.splitlines()
    return {line: lines[i + 1] for i, line in enumerate(lines) if line.startswith("# [")}


@pytest.mark.parametrize("example", [name for name in EXAMPLE_NAMES if name != "dockerfile"])
def test_mounts_follow_what_each_step_does(example: str) -> None:
    spec = planned(DiskRepo(EXAMPLES / example))
    instructions = run_lines(render_dockerfile(spec))
    for step in spec.steps:
        if step.kind != "run":
            continue
        comment = f"# [{step.stage.name.lower()}] {step.buildpack}: {step.description}"
        # The user's step also writes r2env's entrypoint (r2env/render.py): its comment says so after its own.
        (line,) = [line for key, line in instructions.items() if key == comment or key.startswith(comment + "; r2env's entrypoint")]
        assert ("type=secret" in line) == step.fetches, line
        assert ("id=r2env-apt-cache" in line) == ("apt" in step.caches), line
        assert ("id=r2env-pip," in line) == ("pip" in step.caches), line
        assert (line.startswith("RUN --mount") or not (step.fetches or step.caches)), line


def test_classic_rendering_has_no_mounts_and_cleans_apt_lists() -> None:
    spec = memory_plan({"requirements.txt": "numpy\n", "apt.txt": "jq\n"})
    text = render_dockerfile(spec, RenderOptions(buildkit=False))
    assert "--mount" not in text
    assert "docker-clean" not in text
    apt_runs = [line for line in text.splitlines() if "apt-get install" in line]
    assert len(apt_runs) == 3  # the uv stage repeats the image's first one (the classic builder's cache has it then)
    assert all(line.endswith("&& rm -rf /var/lib/apt/lists/*") for line in apt_runs)
    # No bind mount: uv is copied in before the first step that uses it (and stays in such an image).
    lines = text.splitlines()
    copy = lines.index(f"COPY --from={UV_STAGE} /opt/r2env-uv /tmp/r2env-uv")
    assert copy < next(i for i, line in enumerate(lines) if line.startswith("RUN ") and "uv venv" in line)
    assert f'export UV_NO_CACHE=1 UV_NO_CONFIG=1' in text and f'{UV} pip install --python "$NB_PYTHON_PREFIX/bin/python" --compile-bytecode -r requirements.txt' in text


def test_editing_a_non_dependency_file_cannot_change_the_plan() -> None:
    files = {"requirements.txt": "numpy\n", "helpers.py": "x = 1\n"}
    edited = {**files, "helpers.py": "x = 2\n", "analysis.ipynb": '{"cells": []}'}
    assert memory_plan(files).digest == memory_plan(edited).digest
    assert render_dockerfile(memory_plan(files)) == render_dockerfile(memory_plan(edited))


def test_spec_digest_is_stable_and_depends_on_the_user_id() -> None:
    files = {"requirements.txt": "numpy\n"}
    first, second = memory_plan(files), memory_plan(files)
    assert first.digest == second.digest
    assert first.digest.startswith("sha256:") and len(first.digest) == len("sha256:") + 64
    assert memory_plan(files, PlanOptions(user_id=1234)).digest != first.digest
    assert json.loads(first.to_json())["user_id"] == 1000


def test_dependencies_are_installed_before_the_repository_is_copied() -> None:
    spec = memory_plan({"requirements.txt": "numpy\n", "apt.txt": "jq\n", "postBuild": "#!/bin/sh\n"})
    lines = render_dockerfile(spec).splitlines()
    repo_copy = lines.index(REPO_COPY)
    installs = [i for i, line in enumerate(lines) if line.startswith("RUN") and ("pip install" in line or "apt-get" in line)]
    assert installs and max(installs) < repo_copy
    assert lines.index("COPY --chown=1000:1000 [\"requirements.txt\", \"/home/jovyan/requirements.txt\"]") < max(installs)
    post_build = next(i for i, line in enumerate(lines) if line.endswith("./postBuild"))
    assert post_build > repo_copy


def test_user_switches_to_the_notebook_user_after_system_steps() -> None:
    lines = render_dockerfile(memory_plan({"requirements.txt": "numpy\n"})).splitlines()
    users = [line for line in lines if line.startswith("USER ")]
    assert users == ["USER jovyan"]
    assert all(i < lines.index("USER jovyan") for i, line in enumerate(lines) if "apt-get install" in line or "useradd" in line)


def test_local_reference_installs_named_packages_before_the_repository_and_the_file_after() -> None:
    spec = memory_plan({"requirements.txt": "numpy==1.26.4\n-e .\n", "setup.py": ""})
    lines = render_dockerfile(spec).splitlines()
    repo_copy = lines.index(REPO_COPY)
    named = next(i for i, line in enumerate(lines) if line.endswith("--compile-bytecode numpy==1.26.4"))
    whole_file = next(i for i, line in enumerate(lines) if f'{UV} pip install --python "$NB_PYTHON_PREFIX/bin/python" -r requirements.txt && ' in line)
    assert named < repo_copy < whole_file
    assert [s.stage for s in spec.steps if "requirements.txt" in s.description] == [Stage.DEPENDENCIES, Stage.REPO]


def test_constraints_are_not_installed_as_packages() -> None:
    # -c pins versions for whatever else gets installed; it must not add packages (pip's constraints semantics).
    spec = memory_plan({
        "requirements.txt": "-c constraints.txt\n-e .\nrequests\n",
        "constraints.txt": "numpy==1.26.4\n",
        "setup.py": "",
    })
    installs = [s.script for s in spec.steps if s.kind == "run" and "pip install" in s.script]
    assert not any("numpy" in script and "-c" not in script for script in installs), installs


def test_pip_runs_from_the_repository_root_so_dash_e_dot_in_binder_means_the_repository() -> None:
    # repo2docker runs `pip install -r binder/requirements.txt` from the repository root: `-e .` is the repository.
    spec = memory_plan({"binder/requirements.txt": "-e .\n", "setup.py": "", "mypkg/__init__.py": ""})
    installs = [s for s in spec.steps if s.kind == "run" and "-r binder/requirements.txt" in s.script]
    assert [(s.stage, s.repository_code) for s in installs] == [(Stage.REPO, True)]
    assert installs[0].script.startswith(f'{UV} pip install --python "$NB_PYTHON_PREFIX/bin/python" -r binder/requirements.txt && ')
    assert "cd " not in render_dockerfile(spec)


def test_a_chosen_base_image_keeps_its_suite_and_other_pythons_come_from_standalone_builds() -> None:
    options = PlanOptions(base_image="example.org/base:1", base_suite="bookworm")
    spec = memory_plan({"runtime.txt": "python-3.13\n"}, options)
    assert (spec.base_image, spec.suite) == ("example.org/base:1", "bookworm")
    assert spec.interpreter is not None and (spec.interpreter.version, spec.interpreter.source) == ("3.13", "uv")
    matching = memory_plan({"runtime.txt": "python-3.11\n"}, options)
    assert matching.interpreter is not None and matching.interpreter.source == "debian"


def test_package_downloads_in_apt_steps_get_the_build_settings() -> None:
    spec = memory_plan({"apt.txt": "jq\n"})
    apt_steps = [s for s in spec.steps if "apt-get install" in s.script]
    assert apt_steps and all(s.fetches for s in apt_steps)


def test_the_users_step_writes_the_entrypoint_so_it_costs_no_step_of_its_own() -> None:
    text = render_dockerfile(memory_plan({"requirements.txt": "numpy\n"}))
    (writer,) = [line for line in text.splitlines() if "> /usr/local/bin/r2env-entrypoint && chmod 0755 /usr/local/bin/r2env-entrypoint" in line]
    assert writer.startswith("RUN groupadd --gid 1000 jovyan && useradd ")
    assert text.splitlines()[text.splitlines().index(writer) + 1] == "WORKDIR /home/jovyan"


def test_without_a_plain_root_step_the_entrypoint_gets_its_own() -> None:
    spec = memory_plan({"requirements.txt": "numpy\n"})
    spec = replace(spec, steps=tuple(step for step in spec.steps if not step.description.startswith("create user")))
    lines = render_dockerfile(spec).splitlines()
    writer = lines.index("# [system] r2env's entrypoint: runs the repository's start script around every command")
    assert lines[writer + 1].startswith("RUN printf '%b\\n' '#!/bin/sh") and lines[writer + 2] == "WORKDIR /home/jovyan"


def test_dependency_files_are_copied_one_folder_at_a_time() -> None:
    files = {"requirements.txt": "-r base.txt\n-r extra/more.txt\nnumpy\n", "base.txt": "pandas\n", "extra/more.txt": "scipy\n"}
    copies = [line for line in render_dockerfile(memory_plan(files)).splitlines() if line.startswith("COPY --chown")]
    assert copies == ['COPY --chown=1000:1000 ["base.txt", "requirements.txt", "/home/jovyan/"]',
                      'COPY --chown=1000:1000 ["extra/more.txt", "/home/jovyan/extra/more.txt"]',
                      "COPY --chown=1000:1000 . /home/jovyan/"]
