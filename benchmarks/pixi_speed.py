#!/usr/bin/env python3
"""Cold build time of a pixi project beside the conda environment of the same packages, in one run.

    python benchmarks/pixi_speed.py [--runs 3]

Both sides are r2env's examples, built from the tests' local conda channel (integration/conda_channel.py) on a
loopback server, each with its r2env.lock (so the notebook server's closure is pinned on both sides):

* conda: examples/environment-yml, locked with the real conda-lock CLI (the tests' py-rattler solver stand-in
  as micromamba), its pip: package (tabulate) from PyPI;
* pixi: examples/pixi, its pixi.lock written by py-rattler against the same channel (integration/pixi_lock.py),
  its PyPI package (hello-pypi) from a local index.

The conda packages are the same six (plus conda's `pip` stand-in on the conda side). "Cold" here is
`r2env build --no-cache`: no layer is reused and the locked packages are fetched again, but BuildKit's shared
apt/pip cache mounts stay warm for both sides alike (pruning them would empty the build cache of every other
user of this daemon). The sides alternate which goes first; the script prints each time, the medians and
their ratio (pixi / conda). It is a benchmark, not a test."""

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

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "integration"))

from conda_channel import example_packages, serve_directory, write_channel  # noqa: E402
from pixi_lock import EXAMPLE_ENVIRONMENTS, hello_pypi, write_pixi_lock, write_pypi_index  # noqa: E402

R2ENV = [sys.executable, "-m", "r2env.cli"]
IMAGES = {"conda": "r2env-bench/pixi-speed-conda", "pixi": "r2env-bench/pixi-speed-pixi"}


def run(argv: list[str], env: dict[str, str] | None = None) -> None:
    result = subprocess.run(argv, capture_output=True, text=True, env={**os.environ, **(env or {})})
    if result.returncode != 0:
        sys.exit(f"{' '.join(argv)} failed:\n{result.stdout[-2000:]}\n{result.stderr[-2000:]}")


def prepare(scratch: Path, channel: Path, channel_url: str, index_url: str) -> dict[str, Path]:
    conda = scratch / "environment-yml"
    shutil.copytree(ROOT / "examples" / "environment-yml", conda)
    apt = conda / "binder" / "apt.txt"
    apt.write_text(apt.read_text() + "python3\n")  # the channel's python stand-in links to Debian's python3.11
    lookup = scratch / "pypi-to-conda.json"
    lookup.write_text("{}")
    solver = {"PATH": f"{ROOT / 'integration' / 'conda_solver'}:{os.environ['PATH']}"}
    run([*R2ENV, "lock", str(conda), "--conda-channel", channel_url, "--conda-pypi-lookup", str(lookup)], env=solver)

    pixi = scratch / "pixi"
    shutil.copytree(ROOT / "examples" / "pixi", pixi)
    manifest = pixi / "pixi.toml"
    manifest.write_text(manifest.read_text().replace('channels = ["conda-forge"]', f'channels = ["{channel_url}"]'))
    (pixi / "apt.txt").write_text((pixi / "apt.txt").read_text() + "python3\n")
    write_pixi_lock(pixi / "pixi.lock", channel, EXAMPLE_ENVIRONMENTS, [hello_pypi(f"{index_url}/files")], channel_url)
    run([*R2ENV, "lock", str(pixi)])
    return {"conda": conda, "pixi": pixi}


def cold_build(side: str, repo: Path) -> float:
    started = time.perf_counter()
    run([*R2ENV, "build", str(repo), "--no-cache", "--image-name", IMAGES[side]])
    return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    arguments = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="r2env-pixi-bench-") as scratch_dir:
        scratch = Path(scratch_dir)
        channel = write_channel(scratch / "channel", example_packages())
        index = write_pypi_index(scratch / "index")
        with serve_directory(channel) as channel_url, serve_directory(index) as index_url:
            repos = prepare(scratch, channel, channel_url, index_url)
            for side, repo in repos.items():  # warm BuildKit's cache mounts for both sides alike, untimed
                cold_build(side, repo)
            times: dict[str, list[float]] = {"conda": [], "pixi": []}
            for number in range(arguments.runs):
                order = ["conda", "pixi"] if number % 2 == 0 else ["pixi", "conda"]
                for side in order:
                    seconds = cold_build(side, repos[side])
                    times[side].append(seconds)
                    print(f"run {number + 1}: {side:5} cold build {seconds:6.1f} s", flush=True)
    conda, pixi = statistics.median(times["conda"]), statistics.median(times["pixi"])
    print(f"\nmedian of {arguments.runs}: conda {conda:.1f} s, pixi {pixi:.1f} s; pixi / conda = {pixi / conda:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
