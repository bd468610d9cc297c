"""The GitHub Action's step (action.yml): its inputs, turned into r2env command lines. A front end like the CLI.

Input names are repo2docker-action's, so a workflow can switch by changing `uses:`. Credentials never become
arguments: action.yml hands them to r2env as R2ENV_REGISTRY_USERNAME/PASSWORD."""

from __future__ import annotations

import os
import re
import shlex
import sys
from typing import Mapping, Sequence

# Input name -> (description, default). action.yml declares exactly these (a test checks both ways).
INPUTS: dict[str, tuple[str, str]] = {
    "IMAGE_NAME": ("Image name without tag, e.g. myorg/analysis or ghcr.io/myorg/analysis; default DOCKER_USERNAME/<repository name>", ""),
    "DOCKER_REGISTRY": ("Registry host, prefixed to IMAGE_NAME unless IMAGE_NAME names one; default Docker Hub", ""),
    "DOCKER_USERNAME": ("Registry user name (given to r2env in the environment, never as an argument)", ""),
    "DOCKER_PASSWORD": ("Registry password or token (given to r2env in the environment, never as an argument)", ""),
    "NO_PUSH": ("Any value except false: build only, do not push", ""),
    "ADDITIONAL_TAG": ("More tags, separated by commas or spaces (the commit SHA tag is always given)", ""),
    "LATEST_TAG_OFF": ("Any value except false: do not tag (or push) latest", ""),
    "SUBDIR": ("Subdirectory of the repository to build (repo2docker's --subdir)", ""),
    "NOTEBOOK_USER": ("Name of the notebook user in the image", ""),
    "APPENDIX": ("Dockerfile instructions appended to the build", ""),
    "CHECK_LOCK": ("true: fail (exit 8) unless r2env.lock exists and is up to date", "false"),
    "CHECK_REGISTRY": ("true: with r2env.lock, skip the build when the registry already has this image", "true"),
    "CACHE_FROM": ("Images whose layers the build may reuse; default the image's latest tag", ""),
}
OUTPUTS = ("image", "digest")
_FALSE = ("", "false", "0", "no", "off")


def _flag(value: str) -> bool:
    """repo2docker-action's switches are on when set 'to any value'; an explicit false reads as off here."""
    return value.strip().lower() not in _FALSE


def _split(value: str) -> list[str]:
    return [word for word in re.split(r"[\s,]+", value) if word]


def image_repository(inputs: Mapping[str, str], github: Mapping[str, str]) -> str:
    name = inputs.get("IMAGE_NAME", "").strip()
    if not name:
        user = inputs.get("DOCKER_USERNAME", "").strip()
        repository = github.get("GITHUB_REPOSITORY", "repo").rsplit("/", 1)[-1]
        name = f"{user}/{repository}" if user else repository
    registry = inputs.get("DOCKER_REGISTRY", "").strip().removeprefix("https://").rstrip("/")
    first = name.split("/", 1)[0]
    names_host = "/" in name and ("." in first or ":" in first or first == "localhost")
    if registry and not names_host and registry not in ("docker.io", "registry.hub.docker.com", "index.docker.io"):
        name = f"{registry}/{name}"
    return name.lower()  # image names are lower-case; GitHub user and repository names need not be


def commands(inputs: Mapping[str, str], github: Mapping[str, str]) -> list[list[str]]:
    """The r2env command lines the step runs, in order (a lock check first when asked)."""
    source = os.path.join(github.get("GITHUB_WORKSPACE", "."), inputs.get("SUBDIR", "").strip().strip("/")).rstrip("/") or "."
    repository = image_repository(inputs, github)
    sha = github.get("GITHUB_SHA", "")[:12] or "latest"
    tags = ([] if _flag(inputs.get("LATEST_TAG_OFF", "")) or sha == "latest" else ["latest"]) + _split(inputs.get("ADDITIONAL_TAG", ""))
    cache_from = _split(inputs.get("CACHE_FROM", "")) or ([] if _flag(inputs.get("LATEST_TAG_OFF", "")) else [f"{repository}:latest"])
    build = ["build", source, "--image-name", f"{repository}:{sha}"]
    build += ["--tag", ",".join(dict.fromkeys(tags))] if tags else []
    build += ["--cache-from", ",".join(cache_from)] if cache_from else []
    build += [] if _flag(inputs.get("NO_PUSH", "")) else ["--push"]
    build += ["--check-registry"] if _flag(inputs.get("CHECK_REGISTRY", "true")) else []
    build += ["--user-name", inputs["NOTEBOOK_USER"].strip()] if inputs.get("NOTEBOOK_USER", "").strip() else []
    build += ["--appendix", inputs["APPENDIX"]] if inputs.get("APPENDIX", "").strip() else []
    build += ["--json"]
    check = [["lock", "--check", source]] if _flag(inputs.get("CHECK_LOCK", "false")) else []
    return [*check, build]


def inputs_from_env(env: Mapping[str, str]) -> dict[str, str]:
    """action.yml passes each input as R2ENV_INPUT_<NAME> (composite actions get no INPUT_ variables)."""
    return {name: env.get(f"R2ENV_INPUT_{name}", default) for name, (_, default) in INPUTS.items()}


def main(argv: Sequence[str] | None = None) -> int:
    from r2env.cli import main as r2env

    for command in commands(inputs_from_env(os.environ), os.environ):
        print(f"+ r2env {shlex.join(command)}", file=sys.stderr, flush=True)
        code = r2env(command)
        if code:
            return code
    return 0


if __name__ == "__main__":
    sys.exit(main())
