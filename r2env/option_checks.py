"""Every option value checked against its grammar where the configuration is read, before any work: a bad
value is one UsageError naming the flag or config-file line that set it, never a late engine error or a line
injected into a Dockerfile. Pure: values in, a UsageError out."""

from __future__ import annotations

import ipaddress
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from packaging.requirements import InvalidRequirement, Requirement

from r2env.errors import UsageError
from r2env.redact import shorten

# useradd's portable name rule (Debian's adduser NAME_REGEX, `man 8 useradd`): a lower-case letter, then lower-case
# letters, digits, `-` and `_`; at most 32 characters (utmp's UT_NAMESIZE). The name is a path (/home/NAME),
# a shell word and a Dockerfile USER value: nothing else is safe in all three.
_USER_NAME = re.compile(r"[a-z][-a-z0-9_]{0,31}")
# Accounts a Debian base already has (base-passwd): useradd would fail late, inside the build.
_DEBIAN_ACCOUNTS = frozenset({"root", "daemon", "bin", "sys", "sync", "games", "man", "lp", "mail", "news", "uucp", "proxy",
                              "www-data", "backup", "list", "irc", "gnats", "nobody", "_apt", "users", "staff"})
# uids: 0 is root; the kernel's uid_t is 32 bits with (uid_t)-1 reserved, and tools that store uids in a signed int
# (tar headers, some libcs) break above 2^31 - 2. 65534 is `nobody`, which every Debian base already has.
MAX_UID = 2**31 - 2
_NOBODY = 65534
# Docker's --memory: a number with an optional b, k, m or g unit (docker-py's parse_bytes); Docker refuses less
# than 6 MiB ("Minimum memory limit allowed is 6MB").
_MEMORY = re.compile(r"(?P<number>[0-9]+(?:\.[0-9]+)?)(?P<unit>[bkmg]?)b?", re.IGNORECASE)
_UNITS = {"": 1, "b": 1, "k": 1024, "m": 1024**2, "g": 1024**3}
MIN_MEMORY = 6 * 1024**2
# An image reference as `docker pull` takes it: [HOST[:PORT]/]path[:tag][@sha256:digest]
# (https://github.com/distribution/reference/blob/main/reference.go, simplified as in r2env/registry.py).
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_IMAGE = re.compile(
    rf"(?:(?:[a-zA-Z0-9-]+(?:\.[a-zA-Z0-9-]+)*|\[[0-9a-fA-F:]+\])(?::[0-9]+)?/)?{_COMPONENT}(?:/{_COMPONENT})*"
    r"(?::[\w][\w.-]{0,127})?(?:@sha256:[0-9a-f]{64})?"
)
# A host name (RFC 1123): dot-separated labels of letters, digits and inner hyphens.
_HOST_NAME = re.compile(r"(?=.{1,253}\Z)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?")
# C0/C1 controls, DEL and Unicode line separators: no option value is multi-line except those in MULTI_LINE.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
# --appendix is Dockerfile instructions, one a line (repo2docker's); --env and --build-arg values may be multi-line
# (a key passed from the environment) and travel as data, never as Dockerfile text (r2env/options.py checks their keys).
MULTI_LINE = frozenset({"appendix", "env", "build_arg"})


@dataclass(frozen=True)
class Values:
    """Every trait's value, and where each came from: a flag (`--cpus`) or the config file
    (`r2env_config.py: c.R2env.cpus`). A bad value's error names the place the user wrote it."""

    values: Mapping[str, Any]
    origins: Mapping[str, str]

    def __getitem__(self, name: str) -> Any:
        return self.values[name]

    def origin(self, name: str) -> str:
        return self.origins.get(name) or f"--{name.replace('_', '-')}"

    def refuse(self, name: str, problem: str, hint: str) -> UsageError:
        """The error for a bad value of `name`: where it was set, an excerpt of it, what is wrong, what to give."""
        return UsageError(f"{self.origin(name)} = {shorten(repr(self.values[name]), 120)}: {problem}", hint)


def check_single_line(values: Values) -> None:
    """No option but MULTI_LINE ones may carry a newline or control character: each ends up in a Dockerfile,
    a command line or a log line, where it would start a line of its own."""
    for name, value in values.values.items():
        items = value if isinstance(value, (list, tuple)) else [value]
        if name in MULTI_LINE or not all(isinstance(item, str) for item in items):
            continue
        if any(_CONTROL.search(item) for item in items):
            raise values.refuse(name, "contains a newline or control character", "give the value on one line")


def check_user(values: Values) -> None:
    name, uid = values["user_name"], values["user_id"]
    if not _USER_NAME.fullmatch(name):
        raise values.refuse("user_name", "is not a user name", "give a lower-case letter, then up to 31 lower-case letters, digits, - or _, e.g. jovyan")
    if name in _DEBIAN_ACCOUNTS:
        raise values.refuse("user_name", "is an account every Debian base already has", "choose another name, e.g. jovyan")
    if not 1 <= uid <= MAX_UID or uid == _NOBODY:
        raise values.refuse("user_id", "is not a uid the notebook user can have",
                            f"give a non-root uid from 1 to {MAX_UID} other than {_NOBODY} (nobody), such as 1000")


def check_image_reference(values: Values, name: str) -> None:
    if values[name] and not _IMAGE.fullmatch(values[name]):
        raise values.refuse(name, "is not an image reference", "give [REGISTRY/]NAME[:TAG][@sha256:DIGEST] in lower case, e.g. debian:bookworm")


def check_requirement(values: Values, name: str) -> None:
    try:
        Requirement(values[name])
    except InvalidRequirement as error:
        problem = str(error).splitlines()[0]
        raise values.refuse(name, f"is not a PEP 508 requirement ({problem})", "give e.g. jupyterlab>=4 or jupyterlab==4.2.5") from None


# A URL with {placeholders}: it reaches R code and a shell line, so quotes, spaces and shell characters are refused.
_URL_TEMPLATE = re.compile(r"(?:https?://[A-Za-z0-9.{}-]+(?::[0-9]{1,5})?|file://)(?:/[A-Za-z0-9._~%+:@=,{}-]*)*")


def check_url_template(values: Values, name: str) -> str:
    value: str = values[name]
    if not _URL_TEMPLATE.fullmatch(value):
        raise values.refuse(name, "is not an http(s) or file URL", "give e.g. https://packagemanager.posit.co/cran/{date}")
    return value


def check_rstudio(values: Values) -> str:
    value: str = values["rstudio"]
    if value not in ("", "posit") and not _URL_TEMPLATE.fullmatch(value):
        raise values.refuse("rstudio", "is neither posit nor an http(s) or file URL", "give posit, or the URL of an RStudio Server .deb")
    return value


def memory_bytes(text: str) -> int | None:
    """Bytes of a Docker memory size (`4g`, `512m`, `1.5g`), or None when `text` is not one."""
    match = _MEMORY.fullmatch(text)
    size = float(match["number"]) * _UNITS[match["unit"].lower()] if match else math.inf
    return int(size) if math.isfinite(size) else None


def check_launch(values: Values) -> None:
    if values["memory"]:
        size = memory_bytes(values["memory"])
        if size is None:
            raise values.refuse("memory", "is not a size", "give a number with b, k, m or g, e.g. --memory 4g or 512m")
        if size < MIN_MEMORY:
            raise values.refuse("memory", "is below Docker's minimum of 6 MiB", "give at least 6m, e.g. --memory 4g")
    if values["cpus"] < 0:
        raise values.refuse("cpus", "is not a CPU count", "give a number above 0, e.g. 2 or 0.5 (0 = no limit)")
    if not values["launch_timeout"] > 0:
        raise values.refuse("launch_timeout", "is not a number of seconds above 0", "give e.g. 60")
    if not 0 <= values["port"] <= 65535:
        raise values.refuse("port", "is not a port", "give 1-65535, or leave it out for a free one")
    check_address(values, "ip")


def check_address(values: Values, name: str, host_names: bool = False) -> None:
    """An IP address (`0.0.0.0`, `::1`), or with `host_names` also a host name such as `localhost`."""
    text = values[name]
    try:
        ipaddress.ip_address(text)
        return
    except ValueError:
        if host_names and _HOST_NAME.fullmatch(text):
            return
    kind = "an IP address or host name" if host_names else "an IP address"
    raise values.refuse(name, f"is not {kind}", "give e.g. 127.0.0.1, or 0.0.0.0 for every interface")


def expand_path(values: Values, name: str) -> Path:
    """The option's path with `~` expanded: `~nosuchuser/x` is the user's error, not a traceback."""
    try:
        return Path(values[name]).expanduser()
    except RuntimeError:  # pathlib's "Could not determine home directory."
        raise values.refuse(name, "names the home of a user this machine does not have", "give an absolute path, or ~/...") from None


def check_directory(values: Values, name: str) -> Path:
    """A directory r2env may create: refused when it, or a parent, exists and is not a directory (/dev/null)."""
    path = expand_path(values, name)
    for candidate in (path, *path.parents):
        try:
            exists, is_dir = candidate.exists(), candidate.is_dir()
        except OSError as error:  # a name longer than NAME_MAX
            raise values.refuse(name, f"cannot be used ({error.strerror or error})", "give a shorter path") from None
        if exists and not is_dir:
            where = "is not a directory" if candidate == path else f"is inside {candidate}, which is not a directory"
            raise values.refuse(name, where, "give the path of a directory (it is created if missing)")
        if exists:
            break
    return path


def is_finite(value: object) -> bool:
    return not isinstance(value, float) or math.isfinite(value)
