"""Build a Debian base image from a Debian mirror alone, for sites where no image can be pulled.

The chain is: ``debootstrap --variant=minbase`` into a directory, remove what makes two runs
differ, tar the directory deterministically, and wrap the tar in a ``docker load`` archive whose
config has a fixed creation date, so the same mirror state gives the same image ID.

Reproducibility follows debuerreotype, the tool behind Docker's official Debian images
(https://github.com/debuerreotype/debuerreotype, scripts ``debuerreotype-init`` and
``debuerreotype-fixup``) and https://wiki.debian.org/ReproducibleInstalls.

Every external program runs through an injected :class:`Runner`, so tests can fake it.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import platform
import re
import shutil
import subprocess
import tarfile
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from types import MappingProxyType
from typing import Protocol
from urllib.parse import urlsplit

__all__ = [
    "DEFAULT_MIRROR",
    "DEFAULT_SOURCE_DATE_EPOCH",
    "SUITES",
    "BootstrapError",
    "Runner",
    "bootstrap_image_archive",
    "bootstrap_rootfs",
    "host_apt_mirror",
    "parse_apt_mirror",
    "run_command",
    "suite_for_python",
    "write_image_archive",
    "write_layer_tar",
]

DEFAULT_MIRROR = "http://deb.debian.org/debian"

# 2024-01-01T00:00:00Z: a fixed date for the image config and the upper bound of file mtimes.
DEFAULT_SOURCE_DATE_EPOCH = 1704067200

#: Suites r2env bootstraps, and the ``python3`` version Debian ships in each.
SUITES: Mapping[str, str] = MappingProxyType({"bookworm": "3.11", "trixie": "3.13"})

# Suite names the Debian archive itself serves (codenames and aliases). A source entry must name
# one of these bare (no ``-security``/``-updates`` suffix) to count as the main archive.
_DEBIAN_ARCHIVE_SUITES = frozenset(
    {
        "stretch",
        "buster",
        "bullseye",
        "bookworm",
        "trixie",
        "forky",
        "duke",
        "sid",
        "oldoldstable",
        "oldstable",
        "stable",
        "testing",
        "unstable",
    }
)

# URI schemes debootstrap can fetch from (apt's cdrom:, mirror+…, tor+… are apt-only).
_DEBOOTSTRAP_SCHEMES = frozenset({"http", "https", "ftp", "file"})

# apt's StringToBool false spellings, for the deb822 ``Enabled`` field (sources.list(5)).
_FALSE_WORDS = frozenset({"no", "false", "off", "0", "without", "disable"})

_IMAGE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

# Files that differ between two debootstrap runs of the same mirror state (measured here; the
# first four are also what debuerreotype-fixup removes), plus apt's caches: the downloaded .debs
# and the package indexes, which debuerreotype keeps out of its tarballs too (.tar-exclude).
# The indexes are ~50 MB and stale once the mirror moves on; images run ``apt-get update``.
_NOISY_FILES = (
    "var/cache/ldconfig/aux-cache",
    "var/log/bootstrap.log",
    "var/log/alternatives.log",
    "var/log/dpkg.log",
    "var/cache/apt/*.bin",
    "var/cache/apt/archives/*.deb",
    "var/lib/apt/lists/*",
)

# debootstrap copies these from the build host (setup_etc in debootstrap's functions): they leak
# the host's name and DNS servers into the image and differ between hosts. Container engines
# bind-mount their own over them in every container, so empty files lose nothing.
_HOST_COPIED_FILES = ("etc/hostname", "etc/resolv.conf")

# Docker's names for the host machine types we know (image-spec config.md "architecture").
_ARCHITECTURES: Mapping[str, str] = MappingProxyType(
    {
        "x86_64": "amd64",
        "amd64": "amd64",
        "aarch64": "arm64",
        "arm64": "arm64",
        "i386": "386",
        "i686": "386",
        "ppc64le": "ppc64le",
        "s390x": "s390x",
        "riscv64": "riscv64",
    }
)

_TAIL_LINES = 3


class BootstrapError(Exception):
    """Bootstrapping a base image failed; ``hint`` says what the user can do about it."""

    def __init__(self, message: str, hint: str) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint


class Runner(Protocol):
    """Runs a program and returns its completed process.

    Contract: a non-zero exit status is *returned*, not raised (callers read ``returncode`` and
    the output); a missing program raises :class:`FileNotFoundError`. Output is text in
    ``stdout`` (with stderr merged in, or in ``stderr``: callers read both).
    """

    def __call__(self, argv: Sequence[str]) -> subprocess.CompletedProcess[str]: ...


def run_command(argv: Sequence[str]) -> subprocess.CompletedProcess[str]:
    """The default :class:`Runner`: a subprocess with stderr merged into stdout, no stdin."""
    return subprocess.run(
        list(argv),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        errors="replace",
        check=False,
    )


# --- finding the host's Debian mirror ---------------------------------------------------------


@dataclass(frozen=True)
class _SourceEntry:
    types: tuple[str, ...]
    uris: tuple[str, ...]
    suites: tuple[str, ...]
    components: tuple[str, ...]


def _one_line_entries(text: str) -> Iterator[_SourceEntry]:
    """Entries of the one-line format: ``deb [options] URI SUITE [COMPONENT…]``."""
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].strip()
        parts = line.split(None, 1)
        if len(parts) != 2:
            continue
        kind, rest = parts
        rest = rest.strip()
        if rest.startswith("["):
            end = rest.find("]")
            if end < 0:
                continue
            rest = rest[end + 1 :]
        fields = rest.split()
        if len(fields) < 2:
            continue
        yield _SourceEntry((kind,), (fields[0],), (fields[1],), tuple(fields[2:]))


def _deb822_stanzas(text: str) -> Iterator[dict[str, str]]:
    """Stanzas of a deb822 file: ``Field: value`` lines, indented continuations, blank lines."""
    fields: dict[str, str] = {}
    current: str | None = None
    for raw in text.splitlines():
        if raw.startswith("#"):
            continue  # comments may sit inside a stanza without ending it
        if not raw.strip():
            if fields:
                yield fields
            fields, current = {}, None
            continue
        if raw[0] in " \t":
            if current is not None:
                fields[current] += " " + raw.strip()
            continue
        name, sep, value = raw.partition(":")
        if not sep:
            continue
        current = name.strip().lower()
        fields[current] = value.strip()
    if fields:
        yield fields


def _deb822_entries(text: str) -> Iterator[_SourceEntry]:
    for stanza in _deb822_stanzas(text):
        if stanza.get("enabled", "yes").strip().lower() in _FALSE_WORDS:
            continue
        yield _SourceEntry(
            tuple(stanza.get("types", "").split()),
            tuple(stanza.get("uris", "").split()),
            tuple(stanza.get("suites", "").split()),
            tuple(stanza.get("components", "").split()),
        )


def _mirror_candidates(text: str, deb822: bool) -> list[str]:
    """URIs of binary entries serving a bare Debian suite with ``main``, in file order."""
    entries = _deb822_entries(text) if deb822 else _one_line_entries(text)
    found: list[str] = []
    for entry in entries:
        if "deb" not in entry.types or "main" not in entry.components:
            continue
        if not any(suite in _DEBIAN_ARCHIVE_SUITES for suite in entry.suites):
            continue
        for uri in entry.uris:
            if urlsplit(uri).scheme.lower() not in _DEBOOTSTRAP_SCHEMES:
                continue
            # "http://m/debian/" and "http://m/debian" are the same mirror; keep "file:/" whole.
            normalised = uri.rstrip("/") if urlsplit(uri).path.strip("/") else uri
            if normalised not in found:
                found.append(normalised)
    return found


def _choose_mirror(candidates: Iterable[str]) -> str | None:
    """The first candidate laid out like the Debian archive (path ends ``/debian``), else the first.

    Third-party repositories (packages.sury.org/php, …) also publish suite ``bookworm`` with a
    ``main`` component; the archive and its mirrors conventionally live under ``/debian``.
    """
    ordered = list(candidates)
    for uri in ordered:
        if urlsplit(uri).path.rstrip("/").rsplit("/", 1)[-1] == "debian":
            return uri
    return ordered[0] if ordered else None


def parse_apt_mirror(sources_text: str, deb822: bool) -> str | None:
    """The Debian main archive URI an apt sources file uses, or None.

    ``deb822`` selects the ``.sources`` format (sources.list(5), "DEB822-STYLE FORMAT"); otherwise
    the one-line ``deb URI SUITE COMPONENTS`` format. Security, updates and backports suites,
    source-only entries, disabled stanzas and non-Debian repositories are not the main archive.
    """
    return _choose_mirror(_mirror_candidates(sources_text, deb822))


def host_apt_mirror(root: Path = Path("/")) -> str | None:
    """The Debian mirror the host's apt uses, read from ``root/etc/apt``, or None.

    Reads ``sources.list`` then ``sources.list.d/*.list`` and ``*.sources`` in name order, like
    apt; files with other suffixes (``.disabled``, ``.save``…) are ignored, as apt ignores them.
    """
    apt_dir = root / "etc" / "apt"
    files: list[tuple[Path, bool]] = [(apt_dir / "sources.list", False)]
    parts_dir = apt_dir / "sources.list.d"
    if parts_dir.is_dir():
        for path in sorted(parts_dir.iterdir()):
            if path.suffix in (".list", ".sources"):
                files.append((path, path.suffix == ".sources"))
    candidates: list[str] = []
    for path, deb822 in files:
        try:
            text = path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            continue  # missing or unreadable: apt would not use it either
        candidates.extend(_mirror_candidates(text, deb822))
    return _choose_mirror(candidates)


def suite_for_python(version: str) -> str | None:
    """The supported suite whose ``python3`` is ``version`` (``"3.11"``, ``"3.11.7"``), or None."""
    match = re.match(r"(\d+)\.(\d+)(?!\d)", version.strip())
    if match is None:
        return None
    wanted = f"{int(match.group(1))}.{int(match.group(2))}"
    for suite, python in SUITES.items():
        if python == wanted:
            return suite
    return None


# --- the rootfs ---------------------------------------------------------------------------------


def _output_tail(result: subprocess.CompletedProcess[str]) -> str:
    output = (result.stdout or "") + "\n" + (result.stderr or "")
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    return " | ".join(lines[-_TAIL_LINES:]) if lines else "no output"


def _check_word(value: str, what: str, example: str) -> None:
    # Both end up in argv and in sources.list: whitespace would split or inject entries.
    if not value or any(char.isspace() for char in value):
        raise BootstrapError(
            f"invalid {what} {value!r}", hint=f"give a {what} without spaces, like {example!r}"
        )


def _mounts_under(path: Path) -> list[str]:
    """Mount points at or under ``path`` (Linux ``/proc/self/mounts``; none elsewhere)."""
    try:
        lines = Path("/proc/self/mounts").read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return []
    prefix = str(path)
    found: list[str] = []
    for line in lines:
        fields = line.split()
        if len(fields) < 2:
            continue
        # The kernel escapes space, tab, newline and backslash as octal (\040 …).
        point = re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), fields[1])
        if point == prefix or point.startswith(prefix + "/"):
            found.append(point)
    return found


def _remove_tree(path: Path) -> None:
    """Remove a rootfs directory, refusing if something is still mounted inside it.

    An interrupted debootstrap can leave /proc or bind-mounted device nodes behind; deleting
    through a mount would reach the host's files.
    """
    if not path.exists() and not path.is_symlink():
        return
    mounted = _mounts_under(path.absolute())
    if mounted:
        raise BootstrapError(
            f"{mounted[0]} is still mounted inside {path}",
            hint=f"unmount it (umount -R {mounted[0]}) and run again",
        )
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink()


def _replace_file(path: Path, text: str) -> None:
    # Unlink first: the host-copied file may be a symlink to an absolute path, which from outside
    # the chroot would resolve to the *host's* file.
    path.parent.mkdir(parents=True, exist_ok=True)
    path.unlink(missing_ok=True)
    path.write_text(text, encoding="utf-8")
    path.chmod(0o644)


def _clamp_shadow_dates(rootfs: Path, source_date_epoch: int) -> None:
    """Clamp the last-password-change day in /etc/shadow to the epoch's day.

    passwd's postinst stamps today's date there, so bootstraps on different days differ
    (https://bugs.debian.org/857803; debuerreotype-init does the same clamp).
    """
    epoch_day = source_date_epoch // 86400
    for name in ("etc/shadow", "etc/shadow-"):
        path = rootfs / name
        if not path.is_file() or path.is_symlink():
            continue
        original = path.read_text(encoding="utf-8", errors="surrogateescape")
        lines = []
        for line in original.split("\n"):
            fields = line.split(":")
            if len(fields) > 2 and fields[2].isdigit() and int(fields[2]) > epoch_day:
                fields[2] = str(epoch_day)
            lines.append(":".join(fields))
        clamped = "\n".join(lines)
        if clamped != original:
            path.write_text(clamped, encoding="utf-8", errors="surrogateescape")  # keeps mode


def bootstrap_rootfs(
    suite: str,
    mirror: str,
    rootfs: Path,
    runner: Runner,
    *,
    source_date_epoch: int | None = None,
) -> None:
    """Debootstrap a minimal ``suite`` from ``mirror`` into ``rootfs`` and make it reproducible.

    Removes the files that differ between runs, empties the files debootstrap copies from the
    host, points ``/etc/apt/sources.list`` at ``mirror`` and, given ``source_date_epoch``, clamps
    the dates in ``/etc/shadow``. ``rootfs`` must be absent or empty. Needs root (debootstrap
    does). Raises :class:`BootstrapError`.
    """
    _check_word(suite, "suite", "bookworm")
    _check_word(mirror, "mirror", DEFAULT_MIRROR)
    rootfs = rootfs.absolute()
    if rootfs.exists() and (not rootfs.is_dir() or any(rootfs.iterdir())):
        raise BootstrapError(
            f"cannot bootstrap into {rootfs}: it exists and is not an empty directory",
            hint="remove it or choose another directory",
        )
    argv = ["debootstrap", "--variant=minbase", suite, str(rootfs), mirror]
    try:
        result = runner(argv)
    except FileNotFoundError:
        raise BootstrapError(
            "debootstrap is not installed: apt-get install debootstrap",
            hint="install it (apt-get install debootstrap) and run again as root",
        ) from None
    if result.returncode != 0:
        log = rootfs / "debootstrap" / "debootstrap.log"
        hint = (
            f"check that {mirror} is reachable and serves {suite}, or pass --mirror; "
            "debootstrap must run as root"
        )
        if log.is_file():
            hint += f"; full log in {log}"
        raise BootstrapError(
            f"debootstrap {suite} from {mirror} failed with exit status {result.returncode}: "
            f"{_output_tail(result)}",
            hint=hint,
        )

    for pattern in _NOISY_FILES:
        for path in rootfs.glob(pattern):
            if path.is_symlink() or path.is_file():
                path.unlink()
    for name in _HOST_COPIED_FILES:
        _replace_file(rootfs / name, "")
    # debootstrap writes the same line today, but only when it created sources.list itself; be
    # explicit so apt-get works inside the image whatever debootstrap version ran.
    _replace_file(rootfs / "etc" / "apt" / "sources.list", f"deb {mirror} {suite} main\n")
    if source_date_epoch is not None:
        _clamp_shadow_dates(rootfs, source_date_epoch)
    # The tar's "." entry records the root directory's mode; mkdir's umask must not leak into it.
    rootfs.chmod(0o755)


# --- the layer and the image archive -----------------------------------------------------------


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_layer_tar(
    rootfs: Path, out: Path, source_date_epoch: int, runner: Runner = run_command
) -> str:
    """Tar ``rootfs`` deterministically into ``out`` with GNU tar; return the tar's sha256 hex.

    Names sorted, numeric owners (real uids kept: Debian has files owned by _apt & co.), mtimes
    clamped to the epoch, no atime/ctime (https://reproducible-builds.org/docs/archives/).
    """
    if source_date_epoch < 0:
        raise ValueError(f"source_date_epoch must not be negative, got {source_date_epoch}")
    argv = [
        "tar",
        "--sort=name",
        "--numeric-owner",
        f"--mtime=@{source_date_epoch}",
        "--clamp-mtime",
        "--pax-option=exthdr.name=%d/PaxHeaders/%f,delete=atime,delete=ctime",
        "-C",
        str(rootfs),
        "-cf",
        str(out),
        ".",
    ]
    hint = "r2env needs GNU tar 1.28 or newer (for --sort=name and --clamp-mtime)"
    try:
        result = runner(argv)
    except FileNotFoundError:
        raise BootstrapError("tar is not installed", hint=hint) from None
    if result.returncode != 0:
        out.unlink(missing_ok=True)
        raise BootstrapError(
            f"tar of {rootfs} failed with exit status {result.returncode}: {_output_tail(result)}",
            hint=hint,
        )
    return _sha256_file(out)


def _host_architecture() -> str:
    machine = platform.machine().lower()
    try:
        return _ARCHITECTURES[machine]
    except KeyError:
        raise BootstrapError(
            f"unknown machine type {machine!r} for the image config",
            hint="pass the architecture explicitly",
        ) from None


def _normalise_tag(tag: str) -> str:
    if not tag or any(char.isspace() for char in tag):
        raise ValueError(f"invalid image tag {tag!r}")
    # docker load wants name:tag; without a tag after the last '/', use Docker's default.
    return tag if ":" in tag.rsplit("/", 1)[-1] else f"{tag}:latest"


def _canonical_json(value: object) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":")).encode("utf-8")


def write_image_archive(
    layer_tar: Path,
    layer_digest: str,
    out: Path,
    tag: str,
    labels: Mapping[str, str],
    created: str,
    *,
    created_by: str = "r2env bootstrap",
    architecture: str | None = None,
) -> str:
    """Write a one-layer ``docker load`` archive to ``out``; return its image ID ``sha256:…``.

    ``layer_digest`` is the sha256 of ``layer_tar`` (hex, optionally ``sha256:``-prefixed);
    ``created`` an RFC 3339 time with zone (``2024-01-01T00:00:00Z``). The image ID is the
    sha256 of the config bytes written, so equal inputs give byte-identical archives and IDs
    (layout: Docker's image spec v1.2 "Combined Image JSON + Filesystem Changeset Format").
    """
    digest = layer_digest.removeprefix("sha256:")
    if not re.fullmatch(r"[0-9a-f]{64}", digest):
        raise ValueError(f"layer_digest must be a sha256 hex digest, got {layer_digest!r}")
    moment = datetime.fromisoformat(created.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        raise ValueError(f"created needs a time zone, like 2024-01-01T00:00:00Z; got {created!r}")
    mtime = max(0, int(moment.timestamp()))

    config = {
        "architecture": architecture or _host_architecture(),
        "os": "linux",
        "created": created,
        "config": {"Env": [f"PATH={_IMAGE_PATH}"], "Cmd": ["bash"], "Labels": dict(labels)},
        "rootfs": {"type": "layers", "diff_ids": [f"sha256:{digest}"]},
        "history": [{"created": created, "created_by": created_by}],
    }
    config_bytes = _canonical_json(config)
    image_hex = hashlib.sha256(config_bytes).hexdigest()
    layer_name = f"{digest}/layer.tar"
    manifest = [
        {"Config": f"{image_hex}.json", "RepoTags": [_normalise_tag(tag)], "Layers": [layer_name]}
    ]

    def entry(name: str, size: int = 0, *, directory: bool = False) -> tarfile.TarInfo:
        info = tarfile.TarInfo(name)
        info.size, info.mtime = size, mtime
        info.uid = info.gid = 0
        info.uname = info.gname = ""
        info.type = tarfile.DIRTYPE if directory else tarfile.REGTYPE
        info.mode = 0o755 if directory else 0o644
        return info

    partial = out.with_name(out.name + ".partial")
    try:
        # USTAR: no pax headers with times or PIDs in them; all names here are under 100 bytes.
        with tarfile.open(partial, "w", format=tarfile.USTAR_FORMAT) as archive:
            manifest_bytes = _canonical_json(manifest)
            archive.addfile(entry("manifest.json", len(manifest_bytes)), io.BytesIO(manifest_bytes))
            archive.addfile(entry(f"{image_hex}.json", len(config_bytes)), io.BytesIO(config_bytes))
            archive.addfile(entry(f"{digest}/", directory=True))
            with layer_tar.open("rb") as layer:
                size = os.fstat(layer.fileno()).st_size
                archive.addfile(entry(layer_name, size), layer)
        os.replace(partial, out)
    finally:
        partial.unlink(missing_ok=True)
    return f"sha256:{image_hex}"


def _rfc3339(epoch: int) -> str:
    return datetime.fromtimestamp(epoch, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def bootstrap_image_archive(
    suite: str,
    mirror: str,
    workdir: Path,
    tag: str,
    runner: Runner,
    source_date_epoch: int = DEFAULT_SOURCE_DATE_EPOCH,
) -> tuple[Path, str]:
    """Bootstrap ``suite`` from ``mirror`` into a ``docker load`` archive in ``workdir``.

    Returns the archive path (``workdir/image.tar``) and the image ID it loads as. The ~200 MB
    rootfs and the layer tar are removed once used. Same mirror state and epoch → same image ID.
    """
    workdir = workdir.absolute()
    workdir.mkdir(parents=True, exist_ok=True)
    rootfs = workdir / "rootfs"
    layer = workdir / "layer.tar"
    archive = workdir / "image.tar"
    _remove_tree(rootfs)  # left over from an interrupted or failed run
    bootstrap_rootfs(suite, mirror, rootfs, runner, source_date_epoch=source_date_epoch)
    try:
        digest = write_layer_tar(rootfs, layer, source_date_epoch, runner)
    finally:
        _remove_tree(rootfs)
    labels = {
        "org.r2env.base.suite": suite,
        "org.r2env.base.mirror": mirror,
        "org.r2env.base.bootstrapped": "true",
    }
    try:
        image_id = write_image_archive(
            layer,
            digest,
            archive,
            tag,
            labels,
            _rfc3339(source_date_epoch),
            created_by=f"debootstrap --variant=minbase {suite} {mirror}",
        )
    finally:
        layer.unlink(missing_ok=True)
    return archive, image_id
