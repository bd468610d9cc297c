#!/usr/bin/env python3
"""R build speed and image size: r2env's build of examples/r-install-r against a hand-written Dockerfile doing the
same on the same base (Debian's R and IRkernel, a Python venv with JupyterLab, install.R run as the user).

    python benchmarks/r_build_speed.py [--runs 3]

R packages come from a CRAN-like repository made on the spot (integration/cran_repo.py; CRAN is not reachable
here), served on the engine's bridge address to both sides. Each run builds both sides with `--no-cache`,
alternating which goes first; BuildKit's cache mounts (apt, pip) stay warm for both, as they would on a
developer's machine, so the figures compare the build steps, not the network. It prints medians and ratios
(r2env / hand-written); a benchmark, not a test: it exits 1 only when a build fails.
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

import docker

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT / "integration"))

from conda_channel import serve_directory  # noqa: E402
from cran_repo import example_packages, write_repository  # noqa: E402
from r2env.plan import DEFAULT_SERVER  # noqa: E402

DOCKER = "/usr/bin/docker"  # Debian's client: BuildKit through DOCKER_BUILDKIT=1
CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"
HAND_IMAGE, R2ENV_IMAGE = "r2env-bench/r-hand", "r2env-bench/r-r2env"
# What a careful user writes for the same repository: apt and pip cache mounts, install.R before the repository.
HAND_DOCKERFILE = """\
FROM debian:bookworm
RUN --mount=type=cache,target=/var/cache/apt,sharing=locked \\
    --mount=type=cache,target=/var/lib/apt/lists,sharing=locked \\
    apt-get update && apt-get install -y --no-install-recommends \\
      python3 python3-venv ca-certificates r-base-core r-base-dev r-cran-irkernel
RUN useradd --create-home --shell /bin/bash --uid 1000 jovyan && \\
    install -d -o jovyan -g jovyan /srv/venv /srv/rlibs && \\
    echo 'options(repos = c(CRAN = "{cran}"))' >> /usr/lib/R/etc/Rprofile.site
USER jovyan
WORKDIR /home/jovyan
ENV PATH=/srv/venv/bin:$PATH R_LIBS_USER=/srv/rlibs PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_CACHE_DIR=/tmp/pip-cache
RUN --mount=type=secret,id=ca,mode=0444 \\
    --mount=type=cache,target=/tmp/pip-cache,uid=1000,gid=1000 \\
    python3 -m venv /srv/venv && PIP_CERT=/run/secrets/ca pip install {server}
RUN R --quiet -e "IRkernel::installspec(prefix = '/srv/venv')"
COPY --chown=jovyan:jovyan install.R ./
RUN Rscript install.R
COPY --chown=jovyan:jovyan . .
CMD ["jupyter", "lab", "--ip=0.0.0.0", "--port=8888", "--no-browser"]
"""


def build_hand(context: Path, dockerfile: Path) -> float:
    argv = [DOCKER, "build", "--no-cache", "-q", "--secret", f"id=ca,src={CA_BUNDLE}", "-t", HAND_IMAGE, "-f", str(dockerfile), str(context)]
    return _timed(argv, {"DOCKER_BUILDKIT": "1"})


def build_r2env(repo: Path, cran: str) -> float:
    r2env = [sys.executable, "-m", "r2env.cli"]
    return _timed([*r2env, "build", str(repo), "--image-name", R2ENV_IMAGE, "--cran-mirror", cran, "--no-cache"], {})


def _timed(argv: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    result = subprocess.run(argv, capture_output=True, text=True, env={**os.environ, **env}, check=False)
    seconds = time.perf_counter() - start
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(argv[:4])}… failed:\n{result.stdout[-3000:]}{result.stderr[-3000:]}")
    return seconds


def check(client: docker.DockerClient, image: str) -> str:
    """Both images must do the same: hellor and greetr installed, the R kernel registered."""
    script = 'Rscript -e \'cat(as.character(packageVersion("hellor")), as.character(packageVersion("greetr")), "\\n")\' && jupyter kernelspec list | grep -c " ir "'
    output: bytes = client.containers.run(image, ["bash", "-c", script], remove=True)
    return " ".join(output.decode().split())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    arguments = parser.parse_args(argv)
    client = docker.from_env()
    gateway = client.networks.get("bridge").attrs["IPAM"]["Config"][0]["Gateway"]
    with tempfile.TemporaryDirectory(prefix="r2env-r-bench-") as scratch:
        root = Path(scratch)
        repo = root / "r-install-r"
        shutil.copytree(REPO_ROOT / "examples" / "r-install-r", repo)
        with serve_directory(write_repository(root / "cran", example_packages()), address=gateway) as cran:
            hand_context = root / "hand"
            shutil.copytree(repo, hand_context)
            dockerfile = root / "hand.Dockerfile"
            dockerfile.write_text(HAND_DOCKERFILE.format(cran=cran, server=DEFAULT_SERVER))
            # One warm-up of each side fills the cache mounts (apt .debs, pip wheels) the measured builds share.
            build_hand(hand_context, dockerfile)
            build_r2env(repo, cran)
            times: dict[str, list[float]] = {"hand": [], "r2env": []}
            for run in range(arguments.runs):
                order = ("hand", "r2env") if run % 2 == 0 else ("r2env", "hand")
                for side in order:
                    seconds = build_hand(hand_context, dockerfile) if side == "hand" else build_r2env(repo, cran)
                    times[side].append(seconds)
                    print(f"run {run + 1}: {side:<5} cold build (--no-cache) {seconds:6.1f} s", flush=True)
            checks = {side: check(client, image) for side, image in (("hand", HAND_IMAGE), ("r2env", R2ENV_IMAGE))}
    sizes = {side: client.images.get(image).attrs["Size"] for side, image in (("hand", HAND_IMAGE), ("r2env", R2ENV_IMAGE))}
    hand, ours = statistics.median(times["hand"]), statistics.median(times["r2env"])
    print(f"\n{'':<22}{'hand-written':>14}{'r2env':>10}{'ratio':>8}")
    print(f"{'cold build (median)':<22}{hand:>12.1f} s{ours:>8.1f} s{ours / hand:>8.2f}")
    print(f"{'image size':<22}{sizes['hand'] / 1e6:>11.0f} MB{sizes['r2env'] / 1e6:>7.0f} MB{sizes['r2env'] / sizes['hand']:>8.2f}")
    print(f"same result: hand {checks['hand']!r}, r2env {checks['r2env']!r}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
