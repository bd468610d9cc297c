"""The lock workflow for real: lock, build exactly the lock, refuse a stale lock, relock, skip unchanged builds."""

from __future__ import annotations

import shutil
from pathlib import Path

import docker
import pytest
from ruamel.yaml import YAML

from support import EXAMPLES, build_ok, r2env, run_in

FREEZE = ["python", "-c", "import importlib.metadata as m; print('\\n'.join(sorted(f'{d.metadata[\"Name\"].lower().replace(\"_\", \"-\")}=={d.version}' for d in m.distributions())))"]


def _locked_versions(lock_file: Path) -> set[str]:
    data = YAML(typ="safe").load(lock_file.read_text())
    packages = data["python-packages"]["server"] + data["python-packages"]["repository"]
    return {f"{p['name']}=={p['version']}" for p in packages}


@pytest.fixture(scope="module")
def locked_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    repo = tmp_path_factory.mktemp("locked") / "repo"
    shutil.copytree(EXAMPLES / "binder-folder", repo)
    result = r2env("lock", str(repo))
    assert result.returncode == 0, result.stdout + result.stderr
    assert (repo / "binder" / "r2env.lock").is_file()  # beside the configuration it locks
    return repo


def test_a_locked_build_installs_exactly_the_locked_versions(engine: docker.DockerClient, locked_repo: Path) -> None:
    build_ok(str(locked_repo), "--image-name", "r2env-it/locked")
    installed = set(run_in(engine, "r2env-it/locked", FREEZE).split())
    locked = _locked_versions(locked_repo / "binder" / "r2env.lock")
    bootstrap = {line for line in installed if line.split("==")[0] in {"pip", "setuptools"}}
    assert installed - bootstrap == locked
    assert "all checks passed" in run_in(engine, "r2env-it/locked", ["./verify"])
    apt = YAML(typ="safe").load((locked_repo / "binder" / "r2env.lock").read_text())["apt"]
    dpkg = dict(line.split("\t") for line in run_in(engine, "r2env-it/locked", ["dpkg-query", "-W", "-f", "${Package}\t${Version}\n"]).strip().splitlines())
    assert all(dpkg.get(name) == version for name, version in apt.items()), {n: (v, dpkg.get(n)) for n, v in apt.items() if dpkg.get(n) != v}


def test_an_unchanged_locked_build_performs_no_engine_build(engine: docker.DockerClient, locked_repo: Path) -> None:
    build_ok(str(locked_repo), "--image-name", "r2env-it/locked")
    again = build_ok(str(locked_repo), "--image-name", "r2env-it/locked")
    assert "nothing to build" in again.stdout
    assert "[build " not in again.stdout  # no engine build step at all


def test_a_stale_lock_stops_the_build_and_check_then_relock_fixes_it(engine: docker.DockerClient, locked_repo: Path, tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    shutil.copytree(locked_repo, repo)
    (repo / "binder" / "requirements.txt").write_text("tabulate==0.9.0\niniconfig==2.0.0\n")
    refused = r2env("build", str(repo), "--image-name", "r2env-it/stale")
    assert refused.returncode == 8
    assert "binder/r2env.lock is stale: binder/requirements.txt changed" in refused.stderr and "r2env lock" in refused.stderr
    assert "Traceback" not in refused.stderr
    assert r2env("lock", "--check", str(repo)).returncode == 8
    dry = r2env("lock", "--dry-run", str(repo))
    assert dry.returncode == 0 and "added  python  iniconfig" in dry.stdout
    assert r2env("lock", "--check", str(repo)).returncode == 8  # a dry run writes nothing
    build_ok(str(repo), "--image-name", "r2env-it/stale", "--relock")
    assert r2env("lock", "--check", str(repo)).returncode == 0
    assert "2.0.0" in run_in(engine, "r2env-it/stale", ["python", "-c", "import importlib.metadata as m; print(m.version('iniconfig'))"])


def test_an_unsatisfiable_requirement_writes_nothing(tmp_path: Path, locked_repo: Path) -> None:
    repo = tmp_path / "repo"
    shutil.copytree(locked_repo, repo)
    before = (repo / "binder" / "r2env.lock").read_bytes()
    (repo / "binder" / "requirements.txt").write_text("tabulate==0.9.0\nr2env-no-such-package-anywhere==1.0\n")
    result = r2env("lock", str(repo))
    assert result.returncode == 8
    assert "cannot resolve the Python packages" in result.stderr and "r2env-no-such-package-anywhere" in result.stderr
    assert (repo / "binder" / "r2env.lock").read_bytes() == before
    assert not list((repo / "binder").glob("*.tmp"))


@pytest.mark.parametrize("example", ["pipfile-lock", "uv-lock", "poetry-lock", "hashed-requirements"])
def test_an_ecosystem_lock_is_installed_exactly(engine: docker.DockerClient, example: str, tmp_path: Path) -> None:
    repo = tmp_path / example
    shutil.copytree(EXAMPLES / example, repo)
    assert r2env("lock", str(repo)).returncode == 0
    data = YAML(typ="safe").load((repo / "r2env.lock").read_text())
    assert data["python-packages"]["source"] != "r2env"
    build_ok(str(repo), "--image-name", f"r2env-it/lock-{example}")
    assert "all checks passed" in run_in(engine, f"r2env-it/lock-{example}", ["./verify"])


def test_a_download_that_does_not_match_the_locked_hash_names_the_package_and_both_hashes(locked_repo: Path, tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    shutil.copytree(locked_repo, repo)
    lock_file = repo / "binder" / "r2env.lock"
    yaml = YAML(typ="safe")
    data = yaml.load(lock_file.read_text())
    tabulate = next(p for p in data["python-packages"]["repository"] if p["name"] == "tabulate")
    real = set(tabulate["hashes"])
    tabulate["hashes"] = ["sha256:" + "0" * 64]  # what a tampered lock (or a tampered index) looks like
    with lock_file.open("w") as stream:
        yaml.dump(data, stream)
    result = r2env("build", str(repo), "--image-name", "r2env-it/tampered")
    assert result.returncode == 5
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("r2env: error: tabulate==0.9.0 does not match its locked hash: the lock expects sha256:" + "0" * 64)
    assert any(f"the download is {h}" in last for h in real), last
