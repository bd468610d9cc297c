"""r2env-repo2docker as BinderHub's builder, for real: run exactly as BinderHub's local executor runs
jupyter-repo2docker, and its output read with the rules BinderHub applies.

BinderHub (jupyterhub/binderhub): binderhub/build.py Build.get_r2d_cmd_options + get_cmd make the command line;
binderhub/build_local.py _execute_cmd runs it with stdout=PIPE, stderr=STDOUT and the environment copied, and
LocalRepo2dockerBuild._handle_log takes each line as JSON (a line that is not becomes phase "unknown"); a phase
"failed"/"failure" fails the build (binderhub/builder.py), so does a non-zero exit (CalledProcessError)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import docker

from git_repos import git
from support import EXAMPLES, run_in

IMAGE = "r2env-it/binderhub-builder"


def binderhub_cmd(ref: str, image: str, repo_url: str) -> list[str]:
    """binderhub/build.py get_cmd with get_r2d_cmd_options (no appendix, no push secret, no memory limit),
    with r2env's entry point in place of jupyter-repo2docker."""
    script = str(Path(sys.executable).with_name("r2env-repo2docker"))
    return [script, f"--ref={ref}", f"--image={image}", "--no-clean", "--no-run", "--json-logs", "--user-name=jovyan",
            "--user-id=1000", repo_url]


def read_as_binderhub(lines: list[str]) -> list[dict[str, object]]:
    """_handle_log's rule: each line must be JSON; what is not becomes {"phase": "unknown"}."""
    events = []
    for line in lines:
        try:
            events.append(json.loads(line))
        except ValueError:
            events.append({"phase": "unknown", "message": line})
    return events


def git_origin(tmp_path: Path, example: str) -> tuple[str, str]:
    repo = tmp_path / example
    shutil.copytree(EXAMPLES / example, repo)
    git("init", "-q", cwd=repo)
    git("add", ".", cwd=repo)
    git("commit", "-q", "-m", "example", cwd=repo)
    return f"file://{repo}", git("rev-parse", "HEAD", cwd=repo)


def test_binderhub_local_executor_builds_with_json_logs(engine: docker.DockerClient, tmp_path: Path) -> None:
    url, commit = git_origin(tmp_path, "requirements")
    image = f"{IMAGE}:{commit[:12]}"
    # _execute_cmd(cmd, capture=True, env=env): one stream of stdout and stderr, read line by line as it comes
    with subprocess.Popen(binderhub_cmd(commit, image, url), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          env=os.environ.copy()) as process:
        assert process.stdout is not None
        lines = [raw.decode("utf8", "replace") for raw in process.stdout]
        assert process.wait(timeout=1800) == 0, "".join(lines[-30:])
    events = read_as_binderhub(lines)
    phases = [str(event["phase"]) for event in events]
    assert "unknown" not in phases, [line for line in lines if not line.startswith("{")][:5]
    assert not {"failed", "failure"} & set(phases)
    # repo2docker's order: fetching, then building to the end
    assert phases[0] == "fetching" and "building" in phases
    assert phases.index("building") > max(i for i, phase in enumerate(phases) if phase == "fetching")
    assert all(isinstance(event["message"], str) and event["message"].endswith("\n") for event in events)
    assert events[-1]["message"] == f"Successfully built image {image}\n"
    # the image is there, with the repository at the commit BinderHub asked for, built for jovyan (1000)
    labels = engine.images.get(image).labels
    assert labels["org.r2env.source.commit"] == commit
    assert run_in(engine, image, ["sh", "-c", "id -un; id -u"]).split() == ["jovyan", "1000"]
    assert "verify: all checks passed" in run_in(engine, image, ["./verify"])


def test_binderhub_local_executor_sees_a_failure(engine: docker.DockerClient, tmp_path: Path) -> None:
    url, _ = git_origin(tmp_path, "requirements")
    process = subprocess.run(binderhub_cmd("no-such-ref", f"{IMAGE}:bad", url), stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, env=os.environ.copy(), timeout=300)
    events = read_as_binderhub(process.stdout.decode().splitlines())
    assert process.returncode != 0
    assert [event["phase"] for event in events][-1] == "failed" and "unknown" not in [e["phase"] for e in events]
    assert "no-such-ref" in str(events[-1]["message"])
