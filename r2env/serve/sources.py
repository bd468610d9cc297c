"""What a client names as a repository, made safe to build: validated URLs and refs, BinderHub specs, git mirrors.

The daemon runs git on text that strangers send. Three rules keep that text in its place:
- a URL is parsed, checked against the administrator's policy and rebuilt (canonical form), never passed on as given;
- nothing from a request reaches a git command line where git could read it as an option (`--` or
  `--end-of-options` before it, and validation refuses a leading '-' anyway);
- every git process runs in an environment (`git_environment`) that pins the allowed transports, never prompts and
  ignores configuration that could send git elsewhere.
"""

from __future__ import annotations

import fcntl
import hashlib
import ipaddress
import math
import os
import re
import shutil
import signal
import subprocess
import time
import unicodedata
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from urllib.parse import unquote, urlsplit

from r2env.errors import SourceError, UsageError
from r2env.source import Checkout

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
_FULL_COMMIT = re.compile(r"[0-9a-f]{40}|[0-9a-f]{64}")  # SHA-1 or SHA-256 object names
# GitHub owner and repository names, GitLab path segments: letters, digits, '.', '_', '-'.
_FORGE_NAME = re.compile(r"[A-Za-z0-9._-]+")
_SUPPORTED_PROVIDERS = "gh (GitHub), gl (GitLab), git (a URL-escaped git repository URL)"
_KEPT_GIT_VARIABLES = ("GIT_SSL_CAINFO", "GIT_SSL_CAPATH", "GIT_PROXY_SSL_CAINFO", "GIT_SSH", "GIT_SSH_COMMAND", "GIT_SSH_VARIANT")
# Unicode control, format (zero-width, bidi overrides), separator, private-use, surrogate and unassigned characters.
_INVISIBLE = ("Cc", "Cf", "Zs", "Zl", "Zp", "Co", "Cs", "Cn")
_EXAMPLE = "give a git URL such as https://github.com/owner/repo"
_ALLOW_LOCAL = "give an https:// URL; an administrator can allow local repositories with c.Serve.allow_local_repos"
_EXISTING_REF = "give a branch, tag or commit that exists in the repository"


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
    problem = _ref_problem(name)
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
            raise UsageError(f"GitHub spec {_shown(raw_spec)!r} is not owner/repo/ref", "end it with a branch, tag or commit: /HEAD")
        owner, name = _forge_name(parts[0], "owner"), _forge_name(parts[1], "repository").removesuffix(".git")
        if not name:
            raise UsageError(f"GitHub spec {_shown(raw_spec)!r} names no repository", "give owner/repo/ref")
        return f"https://github.com/{owner}/{name}", _spec_ref(parts[2], raw_spec)
    if provider == "gl":
        # <namespace/project, URL-escaped>/<ref>: GitLab projects nest in groups, so the namespace escapes its '/'.
        quoted, _, rest = raw_spec.partition("/")
        segments = [_forge_name(segment, "GitLab path") for segment in _unquote(quoted).split("/")]
        if len(segments) < 2:
            raise UsageError(f"GitLab spec {_shown(raw_spec)!r} is not namespace/project/ref", "escape the namespace's '/': group%2Fproject/main")
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
    raise UsageError(f"BinderHub provider {_shown(provider)!r} is not supported by this server", "supported: " + _SUPPORTED_PROVIDERS)


def git_environment(policy: SourcePolicy, base: Mapping[str, str]) -> dict[str, str]:
    """The environment for every git process the daemon runs, from `base` (the daemon's own environment)."""
    environment = {
        key: value
        for key, value in base.items()
        # Everything git reads from GIT_* (GIT_DIR, GIT_CONFIG_PARAMETERS, GIT_ALLOW_PROTOCOL, GIT_ASKPASS, …) is
        # decided here, except how to reach the network: CA bundles and the administrator's ssh command.
        # GIT_SSL_NO_VERIFY is dropped on purpose: use GIT_SSL_CAINFO for a private CA.
        if not key.startswith("GIT_") or key in _KEPT_GIT_VARIABLES
    }
    for key in ("SSH_ASKPASS", "SSH_ASKPASS_REQUIRE"):  # a graphical password prompt would hang a build
        environment.pop(key, None)
    protocols = sorted({scheme.lower() for scheme in policy.schemes} | ({"file"} if policy.allow_local else set()))
    environment.update(
        {
            # Never wait for a password: a private or missing repository fails at once (git(1), GIT_TERMINAL_PROMPT).
            "GIT_TERMINAL_PROMPT": "0",
            # Overrides protocol.allow: submodules, redirects and remote helpers (ext::, fd::) cannot use another
            # transport than the policy's (git-config(1), protocol.allow; CVE-2015-7545).
            "GIT_ALLOW_PROTOCOL": ":".join(protocols),
            # The operator's system and personal git configuration is not the daemon's: it can hold credential
            # helpers (clients would borrow the operator's access), url.*.insteadOf rewrites, filter drivers such
            # as git-lfs (a repository's .lfsconfig could then send requests anywhere) and core.fsmonitor commands.
            # Proxies and CAs still come from the environment (https_proxy, SSL_CERT_FILE, GIT_SSL_CAINFO).
            "GIT_CONFIG_NOSYSTEM": "1",
            "GIT_CONFIG_GLOBAL": os.devnull,
            # Attributes outside the repository (~/.config/git/attributes, /etc/gitattributes) could change line
            # endings at checkout: the same commit must give the same files.
            "GIT_ATTR_NOSYSTEM": "1",
            "GIT_CONFIG_COUNT": "1",
            "GIT_CONFIG_KEY_0": "core.attributesFile",
            "GIT_CONFIG_VALUE_0": os.devnull,
        }
    )
    if "ssh" in protocols and "GIT_SSH_COMMAND" not in environment and "GIT_SSH" not in environment:
        environment["GIT_SSH_COMMAND"] = "ssh -o BatchMode=yes"  # ssh asks on the terminal, not through git
    return environment


class Mirrors:
    """One bare mirror per repository URL under `root` (named by a hash of the URL), safe to use from several
    threads and processes: a file lock per URL (fcntl.flock) serialises clone, fetch and export of one repository."""

    def __init__(
        self, root: Path, policy: SourcePolicy, *, timeout: float = 300.0, environ: Mapping[str, str] | None = None
    ) -> None:
        self._root = root
        self._policy = policy
        self._timeout = timeout  # for each git command
        base = os.environ if environ is None else environ
        self._environment = git_environment(policy, base)
        # Exporting clones from our own mirror, a local path: git counts that as the file transport, which the
        # policy rightly refuses for clients. This environment allows nothing else, and export never fetches.
        self._local_environment = {**self._environment, "GIT_ALLOW_PROTOCOL": "file"}
        self._updated: dict[str, float] = {}  # URL -> when its last successful clone or fetch started (monotonic)

    def resolve(self, url: str, ref: str) -> str:
        """Clone or update the mirror, then the full commit of `ref` ("" or "HEAD": the remote's default branch).
        SourceError with one line on any failure."""
        url, ref = validate_repo(url, self._policy), validate_ref(ref)
        if _FULL_COMMIT.fullmatch(ref.lower()):
            ref = ref.lower()  # git prints and fetches object names in lower case
        mirror = self._mirror(url)
        if _FULL_COMMIT.fullmatch(ref) and mirror.is_dir():
            known = self._commit(mirror, ref, url)  # a commit never changes: no need to ask the remote
            if known:
                return known
        asked = time.monotonic()
        with self._locked(url):
            # Twenty requests for one repository arriving together need one fetch, not twenty in a row: a fetch
            # that started after this call did sees everything this call could.
            if self._updated.get(url, -math.inf) <= asked:
                started = time.monotonic()
                if mirror.is_dir():
                    self._fetch(mirror, url)
                else:
                    self._clone(url, mirror)
                self._updated[url] = started  # one key per URL, written under that URL's lock
            commit = self._commit(mirror, ref or "HEAD", url)
            if not commit and _FULL_COMMIT.fullmatch(ref):
                # A commit on no branch or tag (a pull request's, say): most servers hand it out when asked by name.
                fetched = self._run(["-C", str(mirror), "fetch", "--quiet", "origin", ref], self._environment, url, "fetch")
                commit = self._commit(mirror, ref, url) if fetched.returncode == 0 else ""
        if not commit:
            if not ref:
                raise SourceError(f"{url}: the repository has no default branch (HEAD)", _EXISTING_REF)
            raise SourceError(f"{url}: unknown ref {ref!r}", _EXISTING_REF)
        return commit

    def export(self, url: str, commit: str, destination: Path) -> Checkout:
        """A working tree of `commit` (a full commit id from resolve) at `destination`, which must not exist, with a
        self-contained .git (tools such as setuptools-scm read it) whose origin is `url`."""
        url = validate_repo(url, self._policy)
        commit = commit.lower()
        if not _FULL_COMMIT.fullmatch(commit):
            raise UsageError(f"{_shown(commit)!r} is not a full commit id", "export the commit that resolve returned")
        if destination.exists() or destination.is_symlink():
            raise SourceError(f"{destination}: already exists", "export into a new directory")
        mirror = self._mirror(url)
        with self._locked(url):  # not while a fetch (and its gc) rewrites the packs we link to
            if not mirror.is_dir():
                raise SourceError(f"{url}: no mirror yet", "resolve the ref before exporting it")
            # --local hard-links the mirror's objects (cheap, copies across file systems) where --shared would
            # write .git/objects/info/alternates naming a host path: the build context copies .git into the image,
            # where that path does not exist and git would find no objects at all.
            clone = ["clone", "--local", "--no-checkout", "--quiet", "--", str(mirror), str(destination)]
            self._git(clone, url, "clone", "check the space on the server's disk", self._local_environment)
        try:
            checkout = ["-C", str(destination), "checkout", "--quiet", "--detach", commit, "--"]
            self._git(checkout, url, "checkout", "resolve the ref again, then export", self._local_environment)
            origin = ["-C", str(destination), "remote", "set-url", "origin", "--", url]
            self._git(origin, url, "remote", "check the destination directory", self._local_environment)
        except BaseException:
            shutil.rmtree(destination, ignore_errors=True)  # ours: git clone made it
            raise
        return Checkout(path=destination, url=url, commit=commit, ref="")

    # --- helpers -----------------------------------------------------------------------------------------

    def _mirror(self, url: str) -> Path:
        return self._root / (hashlib.sha256(url.encode()).hexdigest()[:32] + ".git")

    @contextmanager
    def _locked(self, url: str) -> Iterator[None]:
        """An exclusive lock on one URL's mirror. flock conflicts between separate open() calls even within one
        process, so it serialises threads as well as the daemon's worker processes; the kernel drops it when its
        holder dies, so a killed worker never leaves it taken."""
        self._root.mkdir(parents=True, exist_ok=True)
        with open(self._mirror(url).with_suffix(".lock"), "w") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def _clone(self, url: str, mirror: Path) -> None:
        """Clone beside the mirror, configure, then rename: a mirror directory is always complete."""
        for leftover in self._root.glob(mirror.name + ".tmp-*"):  # from a process killed mid-clone
            shutil.rmtree(leftover, ignore_errors=True)
        scratch = mirror.with_name(f"{mirror.name}.tmp-{uuid.uuid4().hex[:8]}")
        try:
            # --bare rather than --mirror: --mirror fetches every ref, GitHub's refs/pull/* (two per pull request,
            # the merge refs rewritten whenever the base moves) and Gerrit's refs/changes/* included. Branches and
            # tags are what clients name; commits elsewhere are fetched by id when asked for (resolve).
            clone = ["clone", "--bare", "--quiet", "--", url, str(scratch)]
            self._git(clone, url, "clone", "check the URL and that the repository is public")
            config = (
                ("remote.origin.fetch", "+refs/heads/*:refs/heads/*"),
                ("remote.origin.fetch", "+refs/tags/*:refs/tags/*"),
                # Automatic gc in the foreground, under our lock: a detached one would still run after we return.
                ("gc.autoDetach", "false"),
            )
            for key, value in config:
                self._git(["-C", str(scratch), "config", "--add", key, value], url, "config", "check the mirror directory")
            scratch.rename(mirror)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)

    def _clear_stale_locks(self, mirror: Path) -> None:
        """Remove git's own lock files that outlived any git we could have started: a git killed with its daemon
        leaves packed-refs.lock or refs/…/x.lock behind, and every later fetch would fail on them."""
        candidates = [mirror / name for name in ("packed-refs.lock", "HEAD.lock", "config.lock", "shallow.lock")]
        candidates += (mirror / "refs").rglob("*.lock")
        horizon = time.time() - max(self._timeout, 60.0) - 60.0
        for path in candidates:
            try:
                if path.lstat().st_mtime < horizon:
                    path.unlink()
            except FileNotFoundError:
                pass

    def _fetch(self, mirror: Path, url: str) -> None:
        self._clear_stale_locks(mirror)
        hint = "check that the repository still exists, then try again"
        self._git(["-C", str(mirror), "fetch", "--quiet", "--prune", "origin"], url, "fetch", hint)
        # fetch never moves a bare repository's HEAD, so a renamed default branch (master -> main) would go
        # unnoticed, or leave HEAD dangling once the old branch is pruned: ask the remote which branch HEAD is.
        listed = self._git(["-C", str(mirror), "ls-remote", "--symref", "origin", "HEAD"], url, "ls-remote", hint)
        for line in listed.stdout.splitlines():
            target = line.removeprefix("ref: ").split("\t", 1)[0] if line.startswith("ref: ") else ""
            if target.startswith("refs/heads/") and not _ref_problem(target):
                self._git(["-C", str(mirror), "symbolic-ref", "HEAD", target], url, "symbolic-ref", hint)
                return

    def _commit(self, mirror: Path, name: str, url: str) -> str:
        argv = ["-C", str(mirror), "rev-parse", "--verify", "--quiet", "--end-of-options", f"{name}^{{commit}}"]
        result = self._run(argv, self._environment, url, "rev-parse")
        return result.stdout.strip() if result.returncode == 0 else ""

    def _git(
        self, argv: Sequence[str], url: str, what: str, hint: str, environment: Mapping[str, str] | None = None
    ) -> "subprocess.CompletedProcess[str]":
        """git that must succeed: SourceError with git's reason otherwise."""
        result = self._run(argv, self._environment if environment is None else environment, url, what)
        if result.returncode != 0:
            raise SourceError(f"{url}: git {what} failed: {_reason(result.stderr)}", hint)
        return result

    def _run(self, argv: Sequence[str], environment: Mapping[str, str], url: str, what: str) -> "subprocess.CompletedProcess[str]":
        """git in a session of its own: no terminal to prompt on, and a timeout ends git with its helpers."""
        try:
            process = subprocess.Popen(
                ["git", *argv],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                env=dict(environment),
                encoding="utf-8",
                errors="replace",
                start_new_session=True,
            )
        except OSError as error:
            raise SourceError(f"cannot run git: {error.strerror}", "install git on the server") from None
        try:
            stdout, stderr = process.communicate(timeout=self._timeout)
        except subprocess.TimeoutExpired:
            _stop(process)
            message = f"{url}: git {what} did not finish within {self._timeout:g} s"
            raise SourceError(message, "the repository may be very large or its server slow; try again later") from None
        return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)


def _stop(process: "subprocess.Popen[str]") -> None:
    """SIGTERM first (git removes its lock files on it), SIGKILL for whatever of the group is left."""
    for signal_number, grace in ((signal.SIGTERM, 5.0), (signal.SIGKILL, None)):
        try:
            os.killpg(process.pid, signal_number)
        except ProcessLookupError:
            pass
        try:
            process.communicate(timeout=grace)
            return
        except subprocess.TimeoutExpired:
            continue


def _reason(stderr: str) -> str:
    """git's reason in one printable line: its last "fatal:" or "error:" line (advice follows those, as after a
    lock failure), else its last line."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    marked = [line.split(":", 1)[1].strip() for line in lines if line.startswith(("fatal:", "error:"))]
    reason = (marked or lines or ["no output"])[-1]
    return "".join(c if c.isprintable() else "?" for c in reason)


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


def _ref_problem(name: str) -> str:
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
        raise UsageError(f"{what} name {_shown(name)!r} is not valid", "use letters, digits, '.', '_' and '-'")
    return name


def _spec_ref(quoted: str, raw_spec: str) -> str:
    ref = _unquote(quoted)
    if not ref:
        raise UsageError(f"spec {_shown(raw_spec)!r} names no ref", "end it with a branch, tag or commit: /HEAD")
    return validate_ref(ref)


def _shown(text: str) -> str:
    """Client text as it may appear in a one-line message: printable and short."""
    cleaned = "".join(c if c.isprintable() else "?" for c in text)
    return cleaned if len(cleaned) <= 120 else cleaned[:117] + "…"
