"""What a client's own Dockerfile may ask of the daemon's engine (issue 17).

BuildKit fetches `ADD <url>` and pulls images (FROM, COPY --from, RUN --mount from=) from the engine host's network
namespace, not from the build container's: `ADD http://127.0.0.1:PORT/secret` read a service only the daemon's host
can reach and put it in the build log, and no firewall around build containers can stop that. A `# syntax=`
directive runs a frontend image of the repository's choosing, which can issue all of that itself, and RUN's
--network and --security flags would step out of the build container's network. The daemon refuses these before
anything is built. RUN steps on the default network are contained by r2env/serve/firewall.py.

The Dockerfile is read with the Go parser BuildKit itself uses (the `dockerfile` package), so line continuations,
the escape directive and JSON forms are read as the engine will read them."""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path
from typing import NoReturn

import dockerfile

from r2env.errors import SpecError

# BuildKit's parser directives: comment lines at the very top (https://docs.docker.com/reference/dockerfile/#parser-directives).
_SYNTAX = re.compile(r"#\s*syntax\s*=", re.IGNORECASE)
# `git@host:path` (scp-like) is a git source for ADD in newer frontends, as are URLs.
_REMOTE_SOURCE = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://|[\w.-]+@[\w.-]+:")
_VARIABLE = re.compile(r"\$\{(\w+)\}|\$(\w+)")
_ALLOWED_RUN_FLAGS = ("--mount",)
_MAX_SHOWN = 80


class RefusedDockerfile(SpecError):
    """The repository's Dockerfile asks for something this server does not allow (the daemon answers 403)."""

    http_status = 403


def check_dockerfile(path: Path, name: str) -> None:
    """Refuse (RefusedDockerfile, one line naming `name` and its line) a client's Dockerfile that would make the
    engine reach the network outside its build containers. `name` is the path as the client knows it."""
    try:
        text = path.read_bytes().decode("utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise SpecError(f"{name}: cannot be read as UTF-8 text ({error})", "save the Dockerfile as UTF-8 text") from None
    check_dockerfile_text(text, name)


def check_dockerfile_text(text: str, name: str) -> None:
    for line in text.lstrip("\ufeff").splitlines():
        stripped = line.strip()
        if stripped and not stripped.startswith("#"):
            break  # directives end at the first instruction
        if _SYNTAX.match(stripped):
            _refuse(name, 0, "a '# syntax=' directive (a frontend image chosen by the repository) is not allowed by this server",
                    "remove the directive: the engine's own Dockerfile frontend builds it")
    try:
        commands = dockerfile.parse_string(text)
    except dockerfile.GoParseError as error:
        raise SpecError(f"{name}: cannot be parsed ({_short(str(error))})", "fix the Dockerfile's syntax") from None
    arguments: dict[str, str] = {}  # ARG defaults before the first FROM: they may name base images
    stages: set[str] = set()
    seen_from = False
    for command in commands:
        instruction, flags, values = command.cmd.upper(), command.flags, command.value
        if instruction == "ONBUILD" and command.sub_cmd:
            instruction = command.sub_cmd.upper()  # a trigger runs in whatever build uses this image as a base
        line = command.start_line
        if instruction == "ARG" and not seen_from:
            for value in values:
                key, equals, default = value.partition("=")
                if equals:
                    arguments[key] = default.strip("\"'")
        elif instruction == "FROM":
            seen_from = True
            image = values[0] if values else ""
            if image.lower() not in stages and image.lower() != "scratch":
                _check_image(_expand(image, arguments), name, line, "FROM")
            if len(values) >= 3 and values[1].upper() == "AS":
                stages.add(values[2].lower())
        if instruction == "ADD":
            for source in values[:-1]:
                if _REMOTE_SOURCE.match(source) or "$" in source:
                    _refuse(name, line, f"ADD {_short(source)}: downloading with ADD is not allowed by this server "
                            "(the engine would fetch it from the server's own network)",
                            "download in a RUN step (curl, pip), or COPY a file of the repository")
        if instruction in ("ADD", "COPY"):
            for flag in flags:
                if flag.startswith("--from="):
                    _check_stage_or_image(flag.removeprefix("--from="), stages, name, line, f"{instruction} --from")
        if instruction == "RUN":
            for flag in flags:
                option = flag.split("=", 1)[0]
                if option not in _ALLOWED_RUN_FLAGS:
                    _refuse(name, line, f"RUN {_short(flag)} is not allowed by this server", "remove the flag")
                parts = dict(part.split("=", 1) if "=" in part else (part, "") for part in flag.split("=", 1)[-1].split(","))
                if "from" in parts:
                    _check_stage_or_image(parts["from"], stages, name, line, "RUN --mount from")
                # r2env's own cache mounts are shared by every build on the engine: a repository's Dockerfile that
                # mounted one could plant wheels or apt packages for the next repository built (issue 17).
                cache_id = parts.get("id") or parts.get("target") or parts.get("dst") or parts.get("destination") or ""
                if parts.get("type") == "cache" and cache_id.lower().startswith("r2env-"):
                    _refuse(name, line, f"RUN --mount id={_short(cache_id)}: r2env's own build caches are not available to a repository's Dockerfile on this server",
                            "use a cache id of your own, e.g. --mount=type=cache,target=/root/.cache")


def _check_stage_or_image(reference: str, stages: set[str], name: str, line: int, where: str) -> None:
    if reference.lower() in stages or reference.isdigit():
        return
    _check_image(reference, name, line, where)


def _check_image(reference: str, name: str, line: int, where: str) -> None:
    """An image the engine would pull: not through a variable we cannot see, and not from a registry on this host,
    a link-local (cloud metadata) or private address: the engine's pull would reach it from the server's network."""
    if "$" in reference:
        _refuse(name, line, f"{where} {_short(reference)}: an image named through a variable is not allowed by this server",
                "name the image itself, or give the ARG a default before the first FROM")
    first, slash, _ = reference.partition("/")
    if not slash or not ("." in first or ":" in first or first.lower() == "localhost"):
        return  # Docker Hub: the first component names no registry (distribution/reference)
    host = first.rsplit(":", 1)[0] if not first.startswith("[") else first[1:].split("]", 1)[0]
    host = host.lower()
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        internal = host == "localhost" or host.endswith(".localhost")
    else:
        internal = not address.is_global
    if internal:
        _refuse(name, line, f"{where} {_short(reference)}: images from a registry on this server's host or network are not allowed",
                "use an image from a public registry, or ask the administrator to load it into the engine")


def _expand(image: str, arguments: dict[str, str]) -> str:
    return _VARIABLE.sub(lambda match: arguments.get(match.group(1) or match.group(2), match.group(0)), image)


def _short(text: str) -> str:
    cleaned = "".join(c if c.isprintable() else "?" for c in text)
    return cleaned if len(cleaned) <= _MAX_SHOWN else cleaned[: _MAX_SHOWN - 1] + "…"


def _refuse(name: str, line: int, message: str, hint: str) -> NoReturn:
    raise RefusedDockerfile(f"{name}" + (f", line {line}" if line else "") + f": {message}", hint)
