"""What a client names as a repository, made safe to build: validated URLs and refs, and BinderHub specs.

The daemon runs git on text that strangers send. Three rules keep that text in its place:
- a URL is parsed, checked against the administrator's policy and rebuilt (canonical form), never passed on as given;
- nothing from a request reaches a git command line where git could read it as an option (`--` or
  `--end-of-options` before it, and validation refuses a leading '-' anyway);
- every git process runs in an environment (`r2env.serve.mirrors.git_environment`) that pins the allowed transports, never prompts and
  ignores configuration that could send git elsewhere.
"""

from __future__ import annotations

import ipaddress
import re
import unicodedata
from dataclasses import dataclass
from pathlib import PurePosixPath
from urllib.parse import unquote, urlsplit

from r2env.errors import UsageError

# Transports git implements itself. Any other scheme makes git run a remote helper (git-remote-<scheme>), so a
# policy may name only these; file is governed by allow_local instead. See git-config(1), protocol.allow.
_NETWORK_SCHEMES = ("https", "http", "ssh", "git")
_DEFAULT_PORTS = {"https": 443, "http": 80, "ssh": 22, "git": 9418}
_MAX_URL = 2048
_MAX_REF = 255
# DNS letter-digit-hyphen labels (RFC 1123); IDNA labels arrive here already as xn--… punycode.
_LABEL = re.compile(r"(?!-)[a-z0-9-]{1,63}(?<!-)")
# `<transport>::<address>` makes git run git-remote-<transport> (ext:: runs a shell command); see gitremote-helpers(7).
_HELPER = re.compile(r"[A-Za-z0-9+.-]+::")
_SSH_USER = re.compile(r"(?!-)[A-Za-z0-9._-]+")
FULL_COMMIT = re.compile(r"[0-9a-f]{40}|[0-9a-f]{64}")  # SHA-1 or SHA-256 object names
# GitHub owner and repository names, GitLab path segments: letters, digits, '.', '_', '-'.
_FORGE_NAME = re.compile(r"[A-Za-z0-9._-]+")
_SUPPORTED_PROVIDERS = "gh (GitHub), gl (GitLab), git (a URL-escaped git repository URL)"
# Unicode control, format (zero-width, bidi overrides), separator, private-use, surrogate and unassigned characters.
_INVISIBLE = ("Cc", "Cf", "Zs", "Zl", "Zp", "Co", "Cs", "Cn")
_EXAMPLE = "give a git URL such as https://github.com/owner/repo"
_ALLOW_LOCAL = "give an https:// URL; an administrator can allow local repositories with c.Serve.allow_local_repos"


class RefusedSource(UsageError):
    """The repository is well-formed but this server's policy does not allow it (the daemon answers 403)."""

    http_status = 403


@dataclass(frozen=True)
class SourcePolicy:
    """Which repositories clients may name. Hosts are exact names, "*.example.org" (its subdomains only) or "*"."""

    schemes: tuple[str, ...] = ("https",)
    hosts: tuple[str, ...] = ("github.com", "gitlab.com", "bitbucket.org", "codeberg.org")
    allow_local: bool = False  # file:// URLs and absolute paths of local repositories

    def __post_init__(self) -> None:
        # A mistake in the configuration should stop the daemon at start, not surface as refusals later.
        for scheme in self.schemes:
            if scheme.lower() not in _NETWORK_SCHEMES:
                raise UsageError(
                    f"c.Serve.allowed_schemes: {scheme!r} is not a scheme r2env serve can allow",
                    "choose from https, http, ssh, git (local repositories: c.Serve.allow_local_repos)",
                )
        for pattern in self.hosts:
            if pattern != "*" and _normal_host(pattern.removeprefix("*.")) is None:
                raise UsageError(
                    f"c.Serve.allowed_hosts: {pattern!r} is not a host name",
                    'give names such as "github.com", "*.example.org" (its subdomains) or "*" (any host)',
                )

    def allows_host(self, host: str) -> bool:
        """Whether a normalised host name (see _normal_host) matches one of the patterns."""
        for pattern in self.hosts:
            if pattern == "*":
                return True
            wildcard = pattern.startswith("*.")
            name = _normal_host(pattern.removeprefix("*."))
            if name and (host.endswith("." + name) if wildcard else host == name):
                return True
        return False


def validate_repo(text: str, policy: SourcePolicy) -> str:
    """The canonical URL to build (lower-case scheme and host, no default port, no trailing slash), or UsageError
    (malformed: 400) / RefusedSource (not allowed: 403). Messages never repeat credentials or control characters."""
    url = text.strip()
    if not url:
        raise UsageError("repository URL is empty", _EXAMPLE)
    if len(url) > _MAX_URL:
        raise UsageError(f"repository URL is longer than {_MAX_URL} characters", "give the repository's clone URL")
    if url.startswith("-"):
        raise UsageError("repository URL must not start with '-'", _EXAMPLE)
    helper = _HELPER.match(url)
    if helper:
        raise RefusedSource(f"git remote helper transports ({helper.group()}) are not allowed by this server", _EXAMPLE)
    if any(_is_invisible(character) for character in url):
        raise UsageError("repository URL contains whitespace or a control character", "give the URL on its own")
    if "\\" in url:
        # urllib and curl disagree on what a backslash means (https://evil.org\@github.com): refuse rather than guess.
        raise UsageError("repository URL must not contain a backslash", "give the URL with '/' separators")
    if "?" in url or "#" in url:
        raise UsageError("repository URL must not have a query (?…) or fragment (#…)", "give the repository's clone URL")
    if "://" in url:
        return _validate_url(url, policy)
    if url.startswith("/"):
        return _local_path(url, policy)
    before_slash = url.split("/", 1)[0]
    if before_slash.partition(":")[0].lower() in (*_NETWORK_SCHEMES, "file"):
        raise UsageError("repository URL is malformed", "write scheme://host/path, e.g. https://github.com/owner/repo")
    if ":" in before_slash:
        # git reads `[user@]host:path` as SSH (scp syntax); see git-clone(1), GIT URLS.
        host, _, path = url.partition(":")
        suggestion = f"https://{host.rsplit('@', 1)[-1]}/{path.lstrip('/')}"
        raise UsageError(
            "scp-style SSH addresses (user@host:path) are not accepted",
            f"give an https:// URL (e.g. {suggestion}), or ssh://… where this server allows ssh",
        )
    if "." in before_slash.strip("."):
        raise UsageError("repository URL has no scheme", f"did you mean https://{url}?")
    raise UsageError("relative paths are not accepted as repositories", _EXAMPLE)


def validate_ref(ref: str) -> str:
    """"" (the default branch), or a branch, tag or (full or abbreviated) commit name by git check-ref-format's
    rules with --allow-onelevel (git-check-ref-format(1)), never starting with '-'. UsageError otherwise."""
    name = ref.strip()
    if not name:
        return ""
    problem = ref_problem(name)
    if problem:
        shown = name if name.isprintable() and len(name) <= 80 else "…"
        raise UsageError(f"ref {shown!r} is not a valid branch, tag or commit name: {problem}", "give e.g. main, v1.0 or a commit id")
    return name


def binderhub_spec(provider: str, raw_spec: str) -> tuple[str, str]:
    """(repository URL, ref) from BinderHub's /build/<provider>/<spec>. `raw_spec` must still be percent-encoded
    (aiohttp: the request's raw path, not match_info) because `git/` specs escape their '/' as %2F.
    The URL still has to pass validate_repo (the caller does that); the ref is validated here."""
    if provider == "gh":
        # <owner>/<repo>/<ref>; the ref may contain '/'. BinderHub drops a trailing .git from the repository name.
        parts = raw_spec.split("/", 2)
        if len(parts) != 3:
            raise UsageError(f"GitHub spec {shown(raw_spec)!r} is not owner/repo/ref", "end it with a branch, tag or commit: /HEAD")
        owner, name = _forge_name(parts[0], "owner"), _forge_name(parts[1], "repository").removesuffix(".git")
        if not name:
            raise UsageError(f"GitHub spec {shown(raw_spec)!r} names no repository", "give owner/repo/ref")
        return f"https://github.com/{owner}/{name}", _spec_ref(parts[2], raw_spec)
    if provider == "gl":
        # <namespace/project, URL-escaped>/<ref>: GitLab projects nest in groups, so the namespace escapes its '/'.
        quoted, _, rest = raw_spec.partition("/")
        segments = [_forge_name(segment, "GitLab path") for segment in _unquote(quoted).split("/")]
        if len(segments) < 2:
            raise UsageError(f"GitLab spec {shown(raw_spec)!r} is not namespace/project/ref", "escape the namespace's '/': group%2Fproject/main")
        path = "/".join(segments).removesuffix(".git")
        return f"https://gitlab.com/{path}", _spec_ref(rest, raw_spec)
    if provider == "git":
        # <URL-escaped repository URL>/<ref, possibly escaped>
        quoted, _, rest = raw_spec.partition("/")
        url = _unquote(quoted)
        scp = re.fullmatch(r"([\w.-]+@[\w.-]+):(.+)", url)
        if scp:
            # BinderHub reads user@host:path as ssh://user@host/path; whether ssh is allowed is validate_repo's call.
            url = f"ssh://{scp.group(1)}/{scp.group(2)}"
        return url, _spec_ref(rest, raw_spec)
    raise UsageError(f"BinderHub provider {shown(provider)!r} is not supported by this server", "supported: " + _SUPPORTED_PROVIDERS)


def _is_invisible(character: str) -> bool:
    """Whitespace, control, format (zero-width, bidi) and separator characters: nothing a URL or ref may contain."""
    return character.isspace() or unicodedata.category(character) in _INVISIBLE


def _normal_host(host: str) -> str | None:
    """The ASCII, lower-case form of a DNS name (IDNA, one trailing dot dropped) or IP literal; None if malformed."""
    name = host.lower().removesuffix(".")
    if ":" in name:
        try:
            return f"[{ipaddress.IPv6Address(name.strip('[]')).compressed}]"
        except ValueError:
            return None
    if not name.isascii():
        try:
            # Python's codec is IDNA 2003: it maps look-alikes such as full-width letters to ASCII, so what we
            # compare is what git connects to.
            name = name.encode("idna").decode("ascii").lower()
        except UnicodeError:
            return None
    labels = name.split(".")
    return name if len(name) <= 253 and all(_LABEL.fullmatch(label) for label in labels) else None


def _validate_url(url: str, policy: SourcePolicy) -> str:
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise UsageError("repository URL is malformed (bad host or port)", _EXAMPLE) from None
    scheme = parts.scheme.lower()
    if scheme == "file":
        if not policy.allow_local:
            raise RefusedSource("file:// URLs are not allowed by this server", _ALLOW_LOCAL)
        if parts.netloc not in ("", "localhost"):
            raise UsageError("file:// URLs cannot name a host", "write file:///absolute/path")
        return _local_path(unquote(parts.path), policy)
    if scheme not in {allowed.lower() for allowed in policy.schemes}:
        allowed = ", ".join(policy.schemes) or "none"
        hint = f"allowed: {allowed}; an administrator can add schemes with c.Serve.allowed_schemes"
        raise RefusedSource(f"repository URL scheme {scheme!r} is not allowed by this server", hint)
    user = ""
    if "@" in parts.netloc:
        # Credentials would end up in the daemon's database and logs. ssh alone needs a user name (git@host), and
        # a name is no secret; https://github.com@evil.org/ is refused here too.
        userinfo = parts.netloc.rsplit("@", 1)[0]
        if scheme != "ssh" or not _SSH_USER.fullmatch(userinfo):
            hint = "give the URL without 'user:password@'; this server clones repositories anonymously"
            raise RefusedSource("repository URL must not contain a user name or password", hint)
        user = userinfo + "@"
    host = _normal_host(parts.hostname or "")
    if not host:
        raise UsageError("repository URL has no valid host name", _EXAMPLE)
    if not policy.allows_host(host):
        hint = f"allowed: {', '.join(policy.hosts) or 'none'}; an administrator can add hosts with c.Serve.allowed_hosts"
        raise RefusedSource(f"repository host {host!r} is not allowed by this server", hint)
    if port == 0:
        raise UsageError("repository URL has port 0", "give the URL without a port, or the right one")
    path = parts.path.rstrip("/")
    if not path:
        raise UsageError("repository URL names no repository (the path is empty)", f"e.g. {scheme}://{host}/owner/repo")
    if not path.isascii():
        raise UsageError("repository URL path must be ASCII", "percent-encode other characters")
    netloc = user + host + (f":{port}" if port is not None and port != _DEFAULT_PORTS[scheme] else "")
    return f"{scheme}://{netloc}{path}"


def _local_path(path: str, policy: SourcePolicy) -> str:
    if not policy.allow_local:
        raise RefusedSource("local paths are not allowed by this server", _ALLOW_LOCAL)
    if not path.startswith("/"):
        raise UsageError("a local repository must be an absolute path", "give /absolute/path or file:///absolute/path")
    if any(_is_invisible(character) and character != " " for character in path):  # a space may arrive as %20
        raise UsageError("the local path contains a control character", "give the path on its own")
    local = PurePosixPath(path)
    if str(local) == "/":
        raise UsageError("the root directory is not a repository", "give the repository's absolute path")
    return local.as_uri()


def ref_problem(name: str) -> str:
    """Why git check-ref-format --allow-onelevel would refuse `name` (or why we do: a leading '-'); "" if valid."""
    if len(name) > _MAX_REF:
        return f"longer than {_MAX_REF} characters"
    if name.startswith("-"):
        return "it starts with '-'"
    for character in name:
        if character in " ~^:?*[\\" or ord(character) < 0x20 or ord(character) == 0x7F:
            return f"it contains {character!r}"
        if _is_invisible(character):
            return "it contains an invisible or control character"
    if name == "@":
        return "it is '@'"
    for sequence in ("..", "@{", "//"):
        if sequence in name:
            return f"it contains {sequence!r}"
    if name.startswith("/") or name.endswith("/"):
        return "it starts or ends with '/'"
    if name.endswith("."):
        return "it ends with '.'"
    for component in name.split("/"):
        if component.startswith("."):
            return "a part of it starts with '.'"
        if component.endswith(".lock"):
            return "a part of it ends with '.lock'"
    return ""


def _unquote(text: str) -> str:
    try:
        return unquote(text, errors="strict")
    except UnicodeDecodeError:
        raise UsageError("the spec's percent-escapes are not UTF-8", "escape the spec with encodeURIComponent") from None


def _forge_name(quoted: str, what: str) -> str:
    name = _unquote(quoted)
    if not _FORGE_NAME.fullmatch(name) or name in (".", ".."):
        raise UsageError(f"{what} name {shown(name)!r} is not valid", "use letters, digits, '.', '_' and '-'")
    return name


def _spec_ref(quoted: str, raw_spec: str) -> str:
    ref = _unquote(quoted)
    if not ref:
        raise UsageError(f"spec {shown(raw_spec)!r} names no ref", "end it with a branch, tag or commit: /HEAD")
    return validate_ref(ref)


def shown(text: str) -> str:
    """Client text as it may appear in a one-line message: printable and short."""
    cleaned = "".join(c if c.isprintable() else "?" for c in text)
    return cleaned if len(cleaned) <= 120 else cleaned[:117] + "…"
