"""Layer caching: a rebuild with no change, or after editing a notebook, reinstalls nothing."""

from __future__ import annotations

import shutil
import uuid
from pathlib import Path

import docker

from support import EXAMPLES, build_ok, run_in

INSTALL_MARKERS = ("apt-get install", "pip install")


def _executed_install_steps(output: str) -> list[str]:
    """Build steps that ran (were not cached) and install packages: a step line not followed by '(cached)'."""
    lines = output.splitlines()
    ran = []
    for index, line in enumerate(lines):
        if line.startswith("[build ") and "/" in line.split("]")[0]:
            cached = index + 1 < len(lines) and lines[index + 1].strip() == "(cached)"
            if not cached and any(marker in line for marker in INSTALL_MARKERS):
                ran.append(line)
    return ran


def test_rebuild_without_change_reuses_every_layer(engine: docker.DockerClient, tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    shutil.copytree(EXAMPLES / "requirements", repo)
    build_ok(str(repo), "--image-name", "r2env-it/cache")
    first_id = engine.images.get("r2env-it/cache").id
    again = build_ok(str(repo), "--image-name", "r2env-it/cache")
    assert _executed_install_steps(again.stdout) == []
    assert "(cached)" in again.stdout
    assert engine.images.get("r2env-it/cache").id == first_id


def test_editing_a_notebook_rebuilds_without_reinstalling_dependencies(engine: docker.DockerClient, tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    shutil.copytree(EXAMPLES / "requirements", repo)
    build_ok(str(repo), "--image-name", "r2env-it/edit")
    notebook = repo / "analysis.ipynb"
    notebook.write_text(notebook.read_text().replace("1 + 2 + 3", "1 + 2 + 3 + 4"))
    (repo / "helpers.py").write_text((repo / "helpers.py").read_text() + "\nEDITED = True\n")
    rebuilt = build_ok(str(repo), "--image-name", "r2env-it/edit")
    assert _executed_install_steps(rebuilt.stdout) == []
    output = run_in(engine, "r2env-it/edit", ["python", "-c", "import helpers; print(helpers.EDITED)"])
    assert output.strip().endswith("True")
    assert "1 + 2 + 3 + 4" in run_in(engine, "r2env-it/edit", ["cat", "analysis.ipynb"])


def test_changing_requirements_reinstalls_only_from_the_dependency_step(engine: docker.DockerClient, tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    shutil.copytree(EXAMPLES / "requirements", repo)
    build_ok(str(repo), "--image-name", "r2env-it/deps")
    # A unique comment: BuildKit caches by content, so an edit seen in an earlier run would be cached.
    (repo / "requirements-extra.txt").write_text(f"iniconfig==2.1.0  # {uuid.uuid4()}\n")
    rebuilt = build_ok(str(repo), "--image-name", "r2env-it/deps")
    executed = _executed_install_steps(rebuilt.stdout)
    assert len(executed) == 1 and "-r requirements.txt" in executed[0], executed
    assert "2.1.0" in run_in(engine, "r2env-it/deps", ["python", "-c", "import importlib.metadata as m; print(m.version('iniconfig'))"])
