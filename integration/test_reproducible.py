"""Two builds of one locked repository, without the layer cache, give the same environment byte for byte."""

from __future__ import annotations

import shutil
from pathlib import Path

import docker

from support import EXAMPLES, build_ok, r2env, run_in

TREE_HASH = (
    "cd /srv/venv && find . \\( -type f -o -type l \\) -print0 | sort -z | "
    "xargs -0 -I{} sh -c 'if [ -L \"{}\" ]; then echo \"L {} $(readlink \"{}\")\"; else echo \"F {} $(stat -c %a \"{}\") $(sha256sum < \"{}\" | cut -c1-64)\"; fi' "
    "| sha256sum | cut -c1-64"
)


def test_two_uncached_builds_of_a_locked_repository_are_identical(engine: docker.DockerClient, tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    shutil.copytree(EXAMPLES / "requirements", repo)
    assert r2env("lock", str(repo)).returncode == 0
    facts = []
    for name in ("r2env-it/repro-a", "r2env-it/repro-b"):
        build_ok(str(repo), "--image-name", name, "--no-cache")
        facts.append({
            "pip freeze --all": run_in(engine, name, ["pip", "freeze", "--all"]),
            "dpkg-query -W": run_in(engine, name, ["dpkg-query", "-W"]),
            "environment tree": run_in(engine, name, ["bash", "-c", TREE_HASH]).strip(),
        })
    print(f"\nenvironment tree sha256: {facts[0]['environment tree']} and {facts[1]['environment tree']}")
    assert facts[0] == facts[1]
    assert len(facts[0]["environment tree"]) == 64
