"""issue 17: repository code cannot read the operator's secrets. A postBuild searches everything it can reach (its
environment, every /proc/*/environ and cmdline it can read, /run/secrets, every readable file) for a credential
planted in a proxy URL (r2env's environment), an index URL and a Python mirror URL (r2env's settings), and finds
nothing; neither does a search of the build log, of the daemon's SQLite files holding that log, or of the image.

The build runs as the daemon runs it (`python -m r2env.serve.worker`), and its events go into a real Store."""

from __future__ import annotations

import json
import os
import pickle
import secrets
import shutil
import subprocess
import sys
from pathlib import Path

import docker

from r2env.config import load_config
from r2env.serve.store import Store
from r2env.serve.worker import Job
from r2env.source import Checkout

from support import build_ok

IMAGE = "r2env-it/h17-secrets-probe"
DOCKER = "/usr/bin/docker"

# The needle and the control are written reversed into the repository, so the repository (and the image,
# which holds a copy of it) never contains them; the probe turns them around at run time.
PROBE = r"""#!/bin/bash
set -u
# The patterns go to grep in files on /dev/shm (a tmpfs: not searched, not in any layer), never in an argv that
# the /proc/*/cmdline search would find.
patterns=$(mktemp -d -p /dev/shm 2>/dev/null || mktemp -d)
python3 -c 'import sys; print(sys.argv[1][::-1])' @NEEDLE@ > "$patterns/needle"
python3 -c 'import sys; print(sys.argv[1][::-1])' @CONTROL@ > "$patterns/control"
cat "$patterns/needle" "$patterns/control" > "$patterns/both"
say() { echo "r2env-probe: $*"; }
hit() { grep -aqF -f "$patterns/needle" "$@"; }
env | hit && say "FOUND in the environment"
for f in /proc/[0-9]*/environ /proc/[0-9]*/cmdline; do
    cat "$f" 2>/dev/null | hit && say "FOUND in $f"
done
say "secret files: $(ls /run/secrets 2>/dev/null | tr '\n' ' ')"
for f in /run/secrets/*; do
    [ -e "$f" ] && cat "$f" 2>/dev/null | hit && say "FOUND in $f"
done
for top in /*; do
    case "$top" in /proc|/sys|/dev) continue ;; esac
    while IFS= read -r -d '' f; do
        case "$f" in "$patterns"/*) continue ;; esac
        hit "$f" 2>/dev/null && say "FOUND in file $f"
        grep -aqF -f "$patterns/control" "$f" 2>/dev/null && say "control found in $f"
    done < <(grep -rlaFZ --no-messages -f "$patterns/both" "$top" 2>/dev/null)
done
rm -rf "$patterns"
say "ALL_PROXY=${ALL_PROXY:-unset} PIP_EXTRA_INDEX_URL=${PIP_EXTRA_INDEX_URL:-unset}"
say "done"
"""


def _state_files(database: Path) -> list[Path]:
    return [path for path in (database, database.with_name(database.name + "-wal"), database.with_name(database.name + "-shm")) if path.exists()]


def test_a_postbuild_finds_no_planted_credential_and_neither_log_database_nor_image_holds_it(
    engine: docker.DockerClient, tmp_path: Path
) -> None:
    needle = "PLANTED-" + secrets.token_hex(8)
    control = "CONTROL-" + secrets.token_hex(8)
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "requirements.txt").write_text("tabulate==0.9.0\n")
    (repo / "control.txt").write_text(control + "\n")
    (repo / "postBuild").write_text(PROBE.replace("@NEEDLE@", needle[::-1]).replace("@CONTROL@", control[::-1]))
    (repo / "postBuild").chmod(0o755)
    assert needle not in "".join(p.read_text() for p in repo.iterdir())
    # The steps before the repository copy, built first without the planted settings (from the same Dockerfile
    # lines: the same requirements, a postBuild of its own), come from the cache below: uv, unlike pip, does not
    # skip the unreachable planted index, and only the postBuild must run with them.
    warm = tmp_path / "warm"
    warm.mkdir()
    (warm / "requirements.txt").write_text("tabulate==0.9.0\n")
    (warm / "postBuild").write_text("#!/bin/sh\ntrue\n")
    (warm / "postBuild").chmod(0o755)
    build_ok(str(warm), "--image-name", f"{IMAGE}-warm")

    # Planted where r2env takes fetch settings from, in values the steps that run need not reach: the downloading
    # steps come from the cache, postBuild is given the settings without credentials, no step downloads a CPython.
    settings = load_config(None, {
        "cache_dir": str(tmp_path / "cache"), "image_name": IMAGE,
        "extra_index_url": f"http://user:{needle}-index@127.0.0.1:9/simple",
        "python_install_mirror": f"https://user:{needle}-mirror@127.0.0.1:9/",
    })
    env = {**os.environ, "ALL_PROXY": f"http://user:{needle}-proxy@127.0.0.1:9/", "NO_PROXY": "*"}
    job = Job(Checkout(repo, str(repo), "", ""), settings)
    worker = subprocess.run([sys.executable, "-m", "r2env.serve.worker"], input=pickle.dumps(job), capture_output=True,
                            env=env, timeout=1800, start_new_session=True)
    records = [json.loads(line) for line in worker.stdout.decode().splitlines()]
    log = "\n".join(record.get("message", "") for record in records)
    outcome = records[-1] if records else {}
    assert "result" in outcome, f"the build failed: {outcome}\n{log[-3000:]}\n{worker.stderr.decode()[-2000:]}"

    # The probe ran, could read what the notebook user can read, and got the settings without credentials.
    probe = [line.split("r2env-probe: ", 1)[1] for line in log.splitlines() if "r2env-probe: " in line]
    assert "done" in probe, log[-3000:]
    assert [line for line in probe if line.startswith("FOUND")] == []
    assert any(line.startswith("control found in /home/jovyan/control.txt") for line in probe), probe
    assert "ALL_PROXY=http://127.0.0.1:9/ PIP_EXTRA_INDEX_URL=http://127.0.0.1:9/simple" in probe, probe

    # The build log, as the daemon keeps it: its SQLite database and write-ahead log never hold the needle.
    assert needle not in log and needle.encode() not in worker.stdout + worker.stderr
    database = tmp_path / "state" / "r2env-serve.sqlite"
    store = Store(database)
    build = store.add_build(str(repo), "", "c" * 40, outcome["result"]["spec_digest"], IMAGE, str(repo))
    for record in records[:-1]:
        store.add_event(build.id, record["phase"], record["kind"], record["message"],
                        tuple(record["progress"]) if record.get("progress") else None)
    assert len(store.events(build.id, limit=100_000)) == len(records) - 1
    open_files = _state_files(database)
    assert any(path.name.endswith("-wal") for path in open_files)
    assert [path.name for path in open_files if needle.encode() in path.read_bytes()] == []
    store.close()
    assert [path.name for path in _state_files(database) if needle.encode() in path.read_bytes()] == []

    # The image: every layer, its config and history, as `docker save` writes them.
    save = subprocess.Popen([DOCKER, "save", IMAGE], stdout=subprocess.PIPE)
    assert save.stdout is not None
    grep = subprocess.run(["grep", "-aqF", "--", needle], stdin=save.stdout, timeout=600)
    save.stdout.close()
    assert save.wait(timeout=600) == 0 or grep.returncode == 0
    assert grep.returncode == 1, "docker save of the image contains the planted credential"
    shutil.rmtree(repo)
    engine.images.remove(f"{IMAGE}-warm")
