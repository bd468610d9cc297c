"""How long `r2env lock` takes on a typical data-science requirements file, cold and warm, and how long
a build of an unchanged locked repository takes (it should perform no engine build at all).

    python benchmarks/lock_speed.py [--runs 3]

Cold: uv's download cache is a fresh empty folder (UV_CACHE_DIR). Warm: the same folder, second time.
Prints one table; exits non-zero only when a command fails.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REQUIREMENTS = "numpy\npandas\nmatplotlib\nscikit-learn\nrequests\n"


def timed(argv: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    result = subprocess.run(argv, env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if result.returncode != 0:
        sys.exit(f"{' '.join(argv)} failed:\n{result.stdout[-2000:]}\n{result.stderr[-2000:]}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3)
    arguments = parser.parse_args()
    r2env = [sys.executable, "-m", "r2env.cli"]
    cold, warm, noop = [], [], []
    with tempfile.TemporaryDirectory(prefix="r2env-lock-bench-") as scratch:
        repo = Path(scratch) / "repo"
        repo.mkdir()
        (repo / "requirements.txt").write_text(REQUIREMENTS)
        for run in range(arguments.runs):
            cache = Path(scratch) / f"uv-cache-{run}"
            env = {**os.environ, "UV_CACHE_DIR": str(cache)}
            (repo / "r2env.lock").unlink(missing_ok=True)
            cold.append(timed([*r2env, "lock", str(repo)], env))
            (repo / "r2env.lock").unlink()
            warm.append(timed([*r2env, "lock", str(repo)], env))
            shutil.rmtree(cache)
        env = dict(os.environ)
        timed([*r2env, "build", str(repo), "--image-name", "r2env-bench/locked"], env)  # first build, not measured
        for _ in range(arguments.runs):
            noop.append(timed([*r2env, "build", str(repo), "--image-name", "r2env-bench/locked"], env))
        packages = sum(1 for line in (repo / "r2env.lock").read_text().splitlines() if line.strip().startswith("- name:"))
    print(f"requirements: {REQUIREMENTS.strip().replace(chr(10), ', ')} -> {packages} locked Python packages (server included)")
    print(f"{'measurement':<38}{'median':>10}{'min':>10}{'max':>10}")
    for name, values in (("r2env lock, cold (empty uv cache)", cold), ("r2env lock, warm", warm), ("build of the unchanged locked repo", noop)):
        print(f"{name:<38}{statistics.median(values):>9.2f}s{min(values):>9.2f}s{max(values):>9.2f}s")
    print(f"no-op locked build target (< 1 s): {'PASS' if statistics.median(noop) < 1 else 'MISS'}")


if __name__ == "__main__":
    main()
