"""The messages of BinderHub's /build/<provider>/<spec> event stream, so front-ends written for BinderHub can
follow an r2env daemon. Each is {"phase", "message"} (BinderHub's phases: waiting, fetching, building, built,
launching, ready, failed); messages end with a newline, as BinderHub's do, because front-ends append them to a
terminal. Pure: r2env/serve/app.py sends them."""

from __future__ import annotations

from typing import Any

from r2env.launch.launcher import split_server_url

# r2env's phases as BinderHub names them: getting the repository is "fetching", everything else "building".
PHASES = {"fetch": "fetching", "inspect": "fetching"}


def waiting() -> dict[str, Any]:
    return {"phase": "waiting", "message": "Waiting for build to start...\n"}


def progress(phase: str, kind: str, message: str, steps: tuple[int, int] | None) -> dict[str, Any]:
    """One build event, formatted as the r2env command line prints it."""
    if kind == "step":
        step, total = steps or (0, 0)
        text = f"[{phase} {step}/{total}] {message}"
    elif kind == "log":
        text = f"    {message}"
    elif kind == "cached":
        text = "    (cached)"
    else:
        text = f"[{phase}] {message}"
    return {"phase": PHASES.get(phase, "building"), "message": text + "\n"}


def built(image: str) -> dict[str, Any]:
    return {"phase": "built", "message": "Built image, launching...\n", "imageName": image}


def launching() -> dict[str, Any]:
    return {"phase": "launching", "message": "Launching server...\n"}


def ready(url_with_token: str, image: str, repo_url: str, commit: str, provider: str, raw_spec: str) -> dict[str, Any]:
    """BinderHub gives the server's URL and its token apart; front-ends open url + "?token=" + token."""
    url, token = split_server_url(url_with_token)
    request = f"v2/{provider}/{raw_spec}"
    return {
        "phase": "ready",
        "message": f"server running at {url}\n",
        "url": url,
        "token": token,
        "image": image,
        "repo_url": repo_url,
        "binder_ref_url": repo_url,
        "binder_launch_host": "",
        "binder_request": request,
        # The persistent request names the resolved commit, as BinderHub's does (its get_resolved_spec).
        "binder_persistent_request": f"v2/{provider}/{_resolved_spec(provider, raw_spec, commit)}",
        "resolved_ref": commit,
    }


def _resolved_spec(provider: str, raw_spec: str, commit: str) -> str:
    """The spec with its whole ref replaced by the commit. The ref may contain '/' (feature/x), so what is kept is
    counted from the front: gh specs are owner/repo/ref, gl and git ones escaped-namespace-or-URL/ref."""
    kept = 2 if provider == "gh" else 1
    return "/".join([*raw_spec.split("/", kept)[:kept], commit])


def failed(message: str) -> dict[str, Any]:
    return {"phase": "failed", "message": message.rstrip("\n") + "\n"}
