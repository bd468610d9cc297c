"""A JupyterHub's REST API, as the daemon's jupyterhub launch backend uses it: the way BinderHub launches
(binderhub/launcher.py): create a user, start its server with user_options {"image": ...}, wait until the hub
says it is ready, give the user a token; stop the server and delete the user afterwards. Every failure is one
LaunchError line; nothing here leaves a user behind (the caller deletes the user it created when a step fails).
API: https://jupyterhub.readthedocs.io/en/stable/reference/rest-api.html"""

from __future__ import annotations

import time
import urllib.parse
from dataclasses import dataclass
from typing import Any, Callable

import requests

from r2env.errors import LaunchError
from r2env.redact import safe_line

# What the hub's API token needs (JupyterHub's RBAC scopes, https://jupyterhub.readthedocs.io/en/stable/rbac/scopes.html).
SCOPES = ("admin:users", "admin:servers", "tokens", "read:users")
TOKEN_HINT = f"give c.Serve.hub_api_token (or JUPYTERHUB_API_TOKEN) a hub service token whose role has the scopes {', '.join(SCOPES)}"
OPTIONS_HINT = ("let the hub's spawner take user_options image: c.DockerSpawner.allowed_images = '*' (or a callable), "
                "or for KubeSpawner the snippet in docs/serve.md#kubespawner")


@dataclass(frozen=True)
class HubSettings:
    url: str  # the hub's public URL, e.g. http://127.0.0.1:8000/ (the API is under hub/api/)
    token: str
    user_prefix: str = "r2env-"
    start_timeout: float = 300.0


def spawner_options(image: str, source: str, launch_id: str) -> dict[str, str]:
    """The user_options of a launch: the image, as BinderHub sends it (DockerSpawner reads user_options["image"]
    against allowed_images; KubeSpawner through the documented pre_spawn_hook), plus where it came from."""
    return {"image": image, "repo_url": source, "r2env_launch": launch_id}


def user_name(prefix: str, launch_id: str) -> str:
    """One hub user per launch, as BinderHub does: the prefix names the daemon's users, the launch id the user."""
    return f"{prefix}{launch_id}".lower()


class Hub:
    def __init__(self, settings: HubSettings, session: requests.Session | None = None, sleep: Callable[[float], None] = time.sleep) -> None:
        self.settings = settings
        self.base = settings.url.rstrip("/") + "/"
        self.api = self.base + "hub/api/"
        self.session = session or requests.Session()
        self.sleep = sleep

    def _call(self, method: str, path: str, body: Any = None, timeout: float = 30, missing_ok: bool = False) -> Any:
        url = self.api + path
        try:
            response = self.session.request(method, url, json=body, timeout=timeout,
                                            headers={"Authorization": f"token {self.settings.token}"})
        except requests.RequestException as error:
            raise LaunchError(f"cannot reach the JupyterHub at {self.base} ({_reason(error)})",
                              "check c.Serve.hub_url and that the hub runs") from None
        if response.status_code in (401, 403):
            raise LaunchError(f"the JupyterHub at {self.base} refused the API token ({response.status_code} on {method} {path.split('/')[0]})", TOKEN_HINT)
        if response.status_code == 404 and missing_ok:
            return None
        if response.status_code >= 400:
            raise LaunchError(f"the JupyterHub at {self.base} answered {response.status_code} to {method} {path}: {_message(response)}",
                              "see the hub's log")
        if response.status_code == 204 or not response.content:
            return {}
        try:
            return response.json()
        except ValueError:
            raise LaunchError(f"{self.base} did not answer as a JupyterHub ({method} {path} gave no JSON)", "check c.Serve.hub_url") from None

    def check(self) -> str:
        """The hub's version, once the URL is a hub and the token may manage users and servers."""
        info = self._call("GET", "")
        if not isinstance(info, dict) or "version" not in info:
            raise LaunchError(f"{self.base} did not answer as a JupyterHub", "check c.Serve.hub_url")
        whoami = self._call("GET", "user")
        scopes = set(whoami.get("scopes") or []) if isinstance(whoami, dict) else set()
        if scopes and "admin:users" not in scopes and "admin-ui" not in scopes and not any(s.startswith("admin:users") for s in scopes):
            raise LaunchError(f"the JupyterHub API token may not manage users (its scopes: {', '.join(sorted(scopes))[:160]})", TOKEN_HINT)
        return str(info["version"])

    def create_user(self, name: str) -> None:
        self._call("POST", f"users/{_quote(name)}")

    def delete_user(self, name: str) -> None:
        """Stop the user's server and delete the user; a user already gone is fine."""
        self.stop_server(name)
        for _ in range(60):
            try:
                self._call("DELETE", f"users/{_quote(name)}", missing_ok=True)
                return
            except LaunchError as error:
                # "Can't delete user while a spawn/stop is pending": wait for the hub to settle
                if " 400 " not in f" {error.message} ":
                    raise
                self.sleep(1)
        raise LaunchError(f"the JupyterHub kept user {name} busy for a minute", "delete it in the hub's admin page")

    def start_server(self, name: str, options: dict[str, str]) -> None:
        """Start the user's server and wait until the hub says it is ready. A spawner that refuses the options (no
        image from user_options) is one line naming the fix."""
        try:
            self._call("POST", f"users/{_quote(name)}/server", options, timeout=self.settings.start_timeout)
        except LaunchError as error:
            if "image" in error.message.lower() or "user_options" in error.message.lower():
                raise LaunchError(f"the JupyterHub's spawner did not take the image to launch ({error.message.split(': ', 1)[-1]})", OPTIONS_HINT) from None
            raise
        deadline = time.monotonic() + self.settings.start_timeout
        while time.monotonic() < deadline:
            server = self.server(name)
            if server is None:
                raise LaunchError(f"the JupyterHub's spawner failed to start the server for {name}", "see the hub's log")
            if server.get("ready"):
                return
            self.sleep(0.5)
        raise LaunchError(f"the JupyterHub did not start the server within {self.settings.start_timeout:.0f} s", "see the hub's log")

    def server(self, name: str) -> dict[str, Any] | None:
        """The user's default server as the hub sees it; None when it has none (or the user is gone)."""
        user = self._call("GET", f"users/{_quote(name)}", missing_ok=True)
        if not user:
            return None
        server = (user.get("servers") or {}).get("")
        return dict(server) if server else None

    def stop_server(self, name: str) -> None:
        self._call("DELETE", f"users/{_quote(name)}/server", missing_ok=True)

    def user_token(self, name: str, expires_in: float) -> str:
        """A token of the user for its server (as BinderHub hands one out); it expires with the launch's age limit."""
        body: dict[str, Any] = {"note": "r2env launch"}
        if expires_in:
            body["expires_in"] = int(expires_in)
        return str(self._call("POST", f"users/{_quote(name)}/tokens", body)["token"])

    def server_url(self, name: str) -> str:
        return f"{self.base}user/{_quote(name)}/"

    def users(self, prefix: str) -> list[str]:
        found = self._call("GET", "users?limit=1000")
        items = found.get("items", []) if isinstance(found, dict) else found or []
        return [str(user["name"]) for user in items if str(user.get("name", "")).startswith(prefix)]


def _quote(name: str) -> str:
    return urllib.parse.quote(name, safe="")


def _message(response: requests.Response) -> str:
    try:
        text = str(response.json().get("message") or response.text)
    except ValueError:
        text = response.text
    return safe_line(" ".join(text.split()), 200) or response.reason


def _reason(error: requests.RequestException) -> str:
    text = str(error)
    for needle, words in (("Connection refused", "connection refused"), ("timed out", "timed out"), ("Name or service not known", "unknown host"),
                          ("CERTIFICATE_VERIFY_FAILED", "its TLS certificate is not trusted")):
        if needle in text:
            return words
    return type(error).__name__
