"""The locked conda packages, fetched on the host and handed to the build as a tiny image.

r2env fetches every package the lock names (file://, a loopback http server or an https mirror, after
--channel-map), checks its sha256 and md5 against the lock, and builds `FROM scratch` an image holding them
with the in-image installer. The conda build stage copies from that image: the build itself needs no access
to the channel, which is what makes file:// and loopback channels work inside a container, and air-gapped
builds work at all. The image is named by a digest of what it holds, so an unchanged lock reuses it."""

from __future__ import annotations

import hashlib
import ipaddress
import json
import socket
import ssl
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator, Sequence

from r2env.errors import BuildError
from r2env.events import BuildEvent, Kind, Phase
from r2env.parsers.conda_lock import CondaLockFile, CondaPackage

if TYPE_CHECKING:
    from r2env.engine import Engine

PACKAGES_DIR = "/r2env-conda"  # where the conda build stage finds the packages and the installer
INSTALLER = Path(__file__).with_name("installer.py")
_IMAGE = "r2env/conda-packages"


def map_url(url: str, channel_map: Sequence[tuple[str, str]]) -> str:
    """The first FROM that is a whole-path prefix of the URL is replaced by its TO."""
    for source, target in channel_map:
        if url == source or url.startswith(source + "/"):
            return target + url[len(source):]
    return url


def records(lock: CondaLockFile) -> list[dict[str, Any]]:
    return [
        {"name": p.name, "version": p.version, "build": p.build, "subdir": p.subdir, "fn": p.filename,
         "sha256": p.sha256, "md5": p.md5, "depends": list(p.depends)}
        for p in lock.packages
    ]


def records_json(lock: CondaLockFile) -> str:
    return json.dumps(records(lock), indent=1, sort_keys=True) + "\n"


def package_image(lock: CondaLockFile) -> str:
    """Named by what it holds: the packages (by hash) and the installer's code."""
    digest = hashlib.sha256(records_json(lock).encode() + INSTALLER.read_bytes()).hexdigest()
    return f"{_IMAGE}:{digest[:20]}"


_PUBLIC_HINT = "a repository this server builds may use public channels only; the operator can allow a channel with c.R2env.conda_channel or c.R2env.channel_map"


def check_public(url: str, lockfile: str, filename: str) -> None:
    """For repositories `r2env serve` builds for its clients: the daemon's host fetches their conda packages, outside
    the containers its firewall confines, so a lock must not make it read its own files or reach its loopback,
    link-local (cloud metadata) or private network (issue 17). Names are resolved here; each redirect is checked again."""
    parsed = urllib.parse.urlparse(url)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise BuildError(f"{lockfile}: {filename} would be read from {url}: this server fetches conda packages over http(s) only", _PUBLIC_HINT)
    try:
        infos = socket.getaddrinfo(parsed.hostname, parsed.port or (443 if parsed.scheme == "https" else 80), proto=socket.IPPROTO_TCP)
    except (OSError, UnicodeError) as error:
        raise BuildError(f"{lockfile}: cannot resolve {parsed.hostname} for {filename} ({error})", "make the channel reachable") from None
    for info in infos:
        address = ipaddress.ip_address(str(info[4][0]).split("%", 1)[0])
        mapped = getattr(address, "ipv4_mapped", None)
        if not (mapped or address).is_global:
            raise BuildError(f"{lockfile}: {filename} would be fetched from {parsed.hostname} ({address}), "
                             "an address of this machine or its private network", _PUBLIC_HINT)


class _CheckedRedirects(urllib.request.HTTPRedirectHandler):
    """Follows a redirect only to a public address, for the same reason as check_public."""

    def __init__(self, lockfile: str, filename: str) -> None:
        self.lockfile, self.filename = lockfile, filename

    def redirect_request(self, req: Any, fp: Any, code: int, msg: str, headers: Any, newurl: str) -> Any:
        check_public(newurl, self.lockfile, self.filename)
        return super().redirect_request(req, fp, code, msg, headers, newurl)


def _fetch(url: str, context: ssl.SSLContext, redirects: urllib.request.HTTPRedirectHandler) -> bytes:
    parsed = urllib.parse.urlparse(url)
    if parsed.scheme == "file":
        return Path(urllib.parse.unquote(parsed.path)).read_bytes()
    opener = urllib.request.build_opener(urllib.request.HTTPSHandler(context=context), redirects)
    with opener.open(url, timeout=120) as response:  # http(s) only, checked by the caller
        data: bytes = response.read()
        return data


def fetch_package(package: CondaPackage, url: str, context: ssl.SSLContext, lockfile: str, public_only: bool = False) -> bytes:
    if urllib.parse.urlparse(url).scheme not in ("file", "http", "https"):
        raise BuildError(f"{lockfile}: {package.filename} has an unsupported URL {url}", "use https://, http:// or file:// channels")
    if public_only:
        check_public(url, lockfile, package.filename)
    redirects = _CheckedRedirects(lockfile, package.filename) if public_only else urllib.request.HTTPRedirectHandler()
    try:
        data = _fetch(url, context, redirects)
    except (OSError, urllib.error.URLError) as error:
        reason = getattr(error, "reason", None) or error.strerror or error
        raise BuildError(
            f"{lockfile}: cannot fetch {package.filename} from {url} ({reason})",
            "make the channel reachable, or point --channel-map at a mirror that has the locked packages",
        ) from None
    actual = hashlib.sha256(data).hexdigest()
    if actual != package.sha256:
        raise BuildError(
            f"{package.filename} from {url} does not match its locked sha256 {package.sha256} (the download is {actual})",
            f"the channel changed a published package or the download was tampered with; check the mirror, or re-lock ({lockfile})",
        )
    if package.md5 and hashlib.md5(data).hexdigest() != package.md5:  # noqa: S324 - conda's own checksum, checked as published
        raise BuildError(f"{package.filename} from {url} does not match its locked md5 {package.md5}", f"check the mirror, or re-lock ({lockfile})")
    return data


def _under(url: str, channels: Sequence[str]) -> bool:
    return any(url == channel.rstrip("/") or url.startswith(channel.rstrip("/") + "/") for channel in channels)


def stage_packages(lock: CondaLockFile, channel_map: Sequence[tuple[str, str]], directory: Path, context: ssl.SSLContext,
                   trusted_channels: Sequence[str] | None = None) -> None:
    """Write the package image's build context: a Dockerfile, the installer, records.json and pkgs/.

    `trusted_channels` (the daemon's): only packages under these, or mapped by the operator's channel map, may come
    from anywhere; the others must come from a public address (check_public). None: trust every URL (the CLI's)."""
    pkgs = directory / "pkgs"
    pkgs.mkdir(parents=True)
    for package in lock.packages:
        url = map_url(package.url, channel_map)
        public_only = trusted_channels is not None and url == package.url and not _under(url, trusted_channels)
        (pkgs / package.filename).write_bytes(fetch_package(package, url, context, lock.path, public_only))
    (directory / "records.json").write_text(records_json(lock), encoding="utf-8")
    (directory / "conda_installer.py").write_bytes(INSTALLER.read_bytes())
    (directory / "Dockerfile").write_text(f"FROM scratch\nCOPY . {PACKAGES_DIR}/\n", encoding="utf-8")


def ssl_context(ca_bundle: str) -> ssl.SSLContext:
    context = ssl.create_default_context()
    if ca_bundle:
        context.load_verify_locations(cadata=ca_bundle)
    return context


def ensure_package_image(
    engine: "Engine", lock: CondaLockFile, channel_map: Sequence[tuple[str, str]], ca_bundle: str, refetch: bool = False,
    trusted_channels: Sequence[str] | None = None,
) -> Iterator[BuildEvent]:
    """Build the package image unless it exists (its name says what it holds); `refetch` (--no-cache) fetches anew."""
    image = package_image(lock)
    if engine.image_id(image) and not refetch:
        yield BuildEvent(Phase.BUILD, Kind.INFO, f"conda packages: {image} is present ({len(lock.packages)} packages)")
        return
    yield BuildEvent(Phase.BUILD, Kind.INFO, f"conda packages: fetching {len(lock.packages)} locked packages and checking their hashes")
    build_staged(engine, image, lambda directory: stage_packages(lock, channel_map, directory, ssl_context(ca_bundle), trusted_channels), refetch)
    yield BuildEvent(Phase.BUILD, Kind.INFO, f"conda packages: built {image}")


def build_staged(engine: "Engine", image: str, stage: Callable[[Path], None], refetch: bool) -> None:
    """Build `image` from a scratch folder that `stage` fills (its Dockerfile included): the package images of
    conda and pixi environments."""
    from r2env.engine import BuildRequest

    with tempfile.TemporaryDirectory(prefix="r2env-pkgs-") as scratch:
        directory = Path(scratch)
        stage(directory)
        request = BuildRequest(context=directory, dockerfile=directory / "Dockerfile", tag=image, labels={}, build_args={}, secrets={}, no_cache=refetch)
        for _ in engine.build(request):  # its progress is not the user's: the image is tagged at the stream's end
            pass
