"""What the daemon costs and saves, against the command line in the same run:

    python benchmarks/serve_speed.py [--runs 5]

- a request for a repository whose image exists (resolve the ref, find the build): `POST /api/v1/builds`
  against `r2env build URL` of the same unchanged commit (which resolves, plans and finds nothing to build);
- 20 requests at once for a new commit: until all 20 are answered, and until the one build is done, against
  one request for another new commit (the queue and the deduplication should cost nothing);
- a notebook server for a built image: `POST /api/v1/launches` until the server answers, against
  `r2env launch IMAGE --detach`.

Needs a Docker engine with examples/requirements buildable (the integration tests' layers make it quick).
Prints one table; exits non-zero only when something fails."""

from __future__ import annotations

import argparse
import concurrent.futures
import re
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "integration"))
from serve_support import EXAMPLES, Daemon, GitServer  # noqa: E402


def timed(action: object) -> float:
    start = time.perf_counter()
    action()  # type: ignore[operator]
    return time.perf_counter() - start


def cli(*arguments: str) -> str:
    result = subprocess.run([sys.executable, "-m", "r2env.cli", *arguments], capture_output=True, text=True)
    if result.returncode != 0:
        sys.exit(f"r2env {' '.join(arguments)} failed:\n{result.stdout[-2000:]}\n{result.stderr[-2000:]}")
    return result.stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5)
    runs = parser.parse_args().runs
    rows: list[tuple[str, float, float]] = []
    with tempfile.TemporaryDirectory(prefix="r2env-serve-bench-") as scratch:
        root = Path(scratch)
        (root / "work").mkdir()
        git = GitServer(root / "git").start()
        daemon = Daemon(root / "state").start()
        try:
            url = git.url("bench")
            git.publish("bench", EXAMPLES / "requirements", root / "work")
            build = daemon.ok("POST", "/api/v1/builds", {"repo": url})
            assert daemon.wait_build(build["id"])["state"] == "built"
            cli("build", url, "--ref", "main", "--image-name", "r2env-bench/serve-cli")

            served = [timed(lambda: daemon.ok("POST", "/api/v1/builds", {"repo": url, "ref": "main"})) for _ in range(runs)]
            built = [timed(lambda: cli("build", url, "--ref", "main", "--image-name", "r2env-bench/serve-cli")) for _ in range(runs)]
            rows.append(("built image: daemon request / r2env build (s)", statistics.median(served), statistics.median(built)))

            answered, finished, single = [], [], []
            for _ in range(runs):
                git.publish("bench", EXAMPLES / "requirements", root / "work", {"bench.txt": uuid.uuid4().hex})
                start = time.perf_counter()
                with concurrent.futures.ThreadPoolExecutor(20) as pool:
                    ids = set(pool.map(lambda _: daemon.ok("POST", "/api/v1/builds", {"repo": url})["id"], range(20)))
                answered.append(time.perf_counter() - start)
                assert len(ids) == 1 and daemon.wait_build(ids.pop())["state"] == "built"
                finished.append(time.perf_counter() - start)
                git.publish("bench", EXAMPLES / "requirements", root / "work", {"bench.txt": uuid.uuid4().hex})
                start = time.perf_counter()
                one = daemon.ok("POST", "/api/v1/builds", {"repo": url})
                assert daemon.wait_build(one["id"])["state"] == "built"
                single.append(time.perf_counter() - start)
            rows.append(("new commit: 20 requests at once until built / 1 request (s)", statistics.median(finished), statistics.median(single)))
            rows.append(("new commit: all 20 answered (s) / 1 build (s)", statistics.median(answered), statistics.median(single)))

            launched, detached = [], []
            for _ in range(runs):
                start = time.perf_counter()
                launch = daemon.ok("POST", "/api/v1/launches", {"build": build["id"]})
                assert daemon.wait_launch(launch["id"], timeout=120)["state"] == "running"
                launched.append(time.perf_counter() - start)
                daemon.api("DELETE", f"/api/v1/launches/{launch['id']}")
                start = time.perf_counter()
                output = cli("launch", build["image"], "--detach")
                detached.append(time.perf_counter() - start)
                container = re.search(r"`r2env stop (\w+)`", output)
                assert container
                cli("stop", container.group(1))
            rows.append(("notebook server: daemon launch / r2env launch --detach (s)", statistics.median(launched), statistics.median(detached)))
        finally:
            for item in daemon.ok("GET", "/api/v1/builds"):
                subprocess.run(["/usr/bin/docker", "rmi", "-f", item["image"]], capture_output=True)
            subprocess.run(["/usr/bin/docker", "rmi", "-f", "r2env-bench/serve-cli"], capture_output=True)
            daemon.stop()
            git.stop()
    width = max(len(name) for name, _, _ in rows)
    print(f"{'measurement (median of ' + str(runs) + ')':<{width}} |   daemon |  baseline |  ratio")
    for name, value, baseline in rows:
        print(f"{name:<{width}} | {value:8.3f} | {baseline:9.3f} | {value / baseline:6.2f}")


if __name__ == "__main__":
    main()
