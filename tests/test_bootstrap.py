"""Bootstrapping a Debian base image: mirror discovery, rootfs clean-up, deterministic archives.

No network, no Docker, no debootstrap: the runner is faked, except that GNU tar runs for real.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import subprocess
import tarfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from r2env.bootstrap import (
    DEFAULT_MIRROR,
    SUITES,
    BootstrapError,
    bootstrap_image_archive,
    bootstrap_rootfs,
    host_apt_mirror,
    parse_apt_mirror,
    run_command,
    suite_for_python,
    write_image_archive,
    write_layer_tar,
)

EPOCH = 1704067200  # 2024-01-01T00:00:00Z
EPOCH_DAY = EPOCH // 86400
MIRROR = "http://mirror.example/debian"


# --- mirror discovery --------------------------------------------------------------------------

HOST_DEB822 = """\
Types: deb
# http://snapshot.debian.org/archive/debian/20250520T000000Z
URIs: http://deb.debian.org/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
# http://snapshot.debian.org/archive/debian-security/20250520T000000Z
URIs: http://deb.debian.org/debian-security
Suites: bookworm-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
"""

NODESOURCE_DEB822 = """\
Types: deb
URIs: https://deb.nodesource.com/node_20.x
Suites: nodistro
Components: main
Architectures: amd64
Signed-By: /usr/share/keyrings/nodesource.gpg
"""

ONE_LINE_CASES = {
    "plain entry": ("deb http://deb.debian.org/debian bookworm main\n", DEFAULT_MIRROR),
    "trailing slash and more components": (
        "deb http://ftp.de.debian.org/debian/ trixie main contrib non-free non-free-firmware\n",
        "http://ftp.de.debian.org/debian",
    ),
    "options in brackets": (
        "deb [arch=amd64 signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] "
        "http://mirror.example/debian bookworm main\n",
        MIRROR,
    ),
    "options with spaces inside brackets": (
        "deb [ arch=amd64 ] http://mirror.example/debian bookworm main\n",
        MIRROR,
    ),
    "security and updates lines around the main one": (
        "deb http://security.debian.org/debian-security bookworm-security main\n"
        "deb http://mirror.example/debian bookworm-updates main\n"
        "deb http://mirror.example/debian bookworm main\n",
        MIRROR,
    ),
    "security only": (
        "deb http://security.debian.org/debian-security bookworm-security main\n"
        "deb http://security.debian.org/ buster/updates main\n",
        None,
    ),
    "commented-out lines and trailing comments": (
        "# deb http://old.example/debian bookworm main\n"
        "#deb http://older.example/debian bookworm main\n"
        "\n"
        "deb http://mirror.example/debian bookworm main # the one we use\n",
        MIRROR,
    ),
    "only commented out": ("# deb http://deb.debian.org/debian bookworm main\n", None),
    "non-Debian repositories": (
        "deb https://packages.cloud.google.com/apt cloud-sdk-bookworm main\n"
        "deb https://deb.nodesource.com/node_20.x nodistro main\n"
        "deb [arch=amd64] https://download.docker.com/linux/debian bookworm stable\n",
        None,
    ),
    "third-party repository with a Debian suite before the archive": (
        "deb https://packages.sury.org/php/ bookworm main\n"
        "deb http://mirror.example/debian bookworm main\n",
        MIRROR,
    ),
    "source entries only": ("deb-src http://deb.debian.org/debian bookworm main\n", None),
    "installer cdrom line": (
        "deb cdrom:[Debian GNU/Linux 12.5.0 _Bookworm_ - Official amd64 DVD Binary-1]/"
        " bookworm main\n"
        "deb http://mirror.example/debian bookworm main\n",
        MIRROR,
    ),
    "no main component": ("deb http://mirror.example/debian bookworm contrib\n", None),
    "local file mirror": ("deb file:/srv/mirror/debian bookworm main\n", "file:/srv/mirror/debian"),
    "empty": ("", None),
}

DEB822_CASES = {
    "host file with comments inside stanzas": (HOST_DEB822, DEFAULT_MIRROR),
    "security block first": (
        "Types: deb\nURIs: http://deb.debian.org/debian-security\nSuites: trixie-security\n"
        "Components: main\n\n"
        "Types: deb deb-src\nURIs: http://mirror.example/debian/\nSuites: trixie trixie-updates\n"
        "Components: main contrib\n",
        MIRROR,
    ),
    "security only": (
        "Types: deb\nURIs: http://deb.debian.org/debian-security\nSuites: bookworm-security\n"
        "Components: main\n",
        None,
    ),
    "disabled block skipped": (
        "Types: deb\nURIs: http://old.example/debian\nSuites: bookworm\nComponents: main\n"
        "Enabled: no\n\n"
        "Types: deb\nURIs: http://mirror.example/debian\nSuites: bookworm\nComponents: main\n",
        MIRROR,
    ),
    "whole file disabled": (
        "Enabled: no\nTypes: deb\nURIs: http://deb.debian.org/debian\nSuites: bookworm\n"
        "Components: main\n",
        None,
    ),
    "non-Debian repository": (NODESOURCE_DEB822, None),
    "source type only": (
        "Types: deb-src\nURIs: http://deb.debian.org/debian\nSuites: bookworm\nComponents: main\n",
        None,
    ),
    "several URIs take the first": (
        "Types: deb\nURIs: http://mirror.example/debian http://deb.debian.org/debian\n"
        "Suites: bookworm\nComponents: main\n",
        MIRROR,
    ),
    "field names in any case and continuation lines": (
        "types: deb\nuris:\n http://mirror.example/debian\nSUITES: bookworm\n"
        "components: main\n contrib\n",
        MIRROR,
    ),
    "blocks separated by several blank lines": (
        NODESOURCE_DEB822 + "\n\n\n" + "Types: deb\nURIs: http://mirror.example/debian\n"
        "Suites: sid\nComponents: main\n",
        MIRROR,
    ),
    "one-line text is not deb822": ("deb http://deb.debian.org/debian bookworm main\n", None),
}


@pytest.mark.parametrize(("text", "expected"), ONE_LINE_CASES.values(), ids=ONE_LINE_CASES.keys())
def test_parse_apt_mirror_finds_the_main_archive_in_one_line_format(
    text: str, expected: str | None
) -> None:
    assert parse_apt_mirror(text, deb822=False) == expected


@pytest.mark.parametrize(("text", "expected"), DEB822_CASES.values(), ids=DEB822_CASES.keys())
def test_parse_apt_mirror_finds_the_main_archive_in_deb822_format(
    text: str, expected: str | None
) -> None:
    assert parse_apt_mirror(text, deb822=True) == expected


def _apt_root(tmp_path: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = tmp_path / "etc" / "apt" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return tmp_path


def test_host_apt_mirror_reads_sources_files_and_ignores_disabled_suffixes(tmp_path: Path) -> None:
    root = _apt_root(
        tmp_path,
        {
            "sources.list.d/debian.sources": HOST_DEB822,
            "sources.list.d/00-other.list.disabled-by-farm": (
                "deb http://wrong.example/debian bookworm main\n"
            ),
            "sources.list.d/nodesource.sources.disabled-by-farm": NODESOURCE_DEB822,
            "sources.list.d/google-cloud-sdk.list": (
                "deb https://packages.cloud.google.com/apt cloud-sdk-bookworm main\n"
            ),
        },
    )
    assert host_apt_mirror(root) == DEFAULT_MIRROR


def test_host_apt_mirror_prefers_sources_list_over_the_parts_directory(tmp_path: Path) -> None:
    root = _apt_root(
        tmp_path,
        {
            "sources.list": f"deb {MIRROR} bookworm main\n",
            "sources.list.d/debian.sources": HOST_DEB822,
        },
    )
    assert host_apt_mirror(root) == MIRROR


def test_host_apt_mirror_looks_past_third_party_files_for_the_archive(tmp_path: Path) -> None:
    root = _apt_root(
        tmp_path,
        {
            "sources.list.d/00-php.list": "deb https://packages.sury.org/php/ bookworm main\n",
            "sources.list.d/debian.sources": HOST_DEB822,
        },
    )
    assert host_apt_mirror(root) == DEFAULT_MIRROR


def test_host_apt_mirror_is_none_without_apt_configuration(tmp_path: Path) -> None:
    assert host_apt_mirror(tmp_path) is None


# --- suites ------------------------------------------------------------------------------------

PYTHON_SUITE_CASES = {
    "3.11": "bookworm",
    "3.11.7": "bookworm",
    " 3.13.1 ": "trixie",
    "3.13": "trixie",
    "3.12": None,
    "3.1": None,
    "3.110": None,
    "3": None,
    "python-3.11": None,
    "": None,
}


@pytest.mark.parametrize(("version", "suite"), PYTHON_SUITE_CASES.items())
def test_suite_for_python_maps_versions_to_the_suite_shipping_them(
    version: str, suite: str | None
) -> None:
    assert suite_for_python(version) == suite


def test_every_supported_suite_is_found_by_its_python_version() -> None:
    for suite, python in SUITES.items():
        assert suite_for_python(python) == suite


# --- a fake runner and a fake debootstrap ------------------------------------------------------


@dataclass
class FakeRunner:
    """Records argv; plays debootstrap by filling the target directory; runs tar for real."""

    returncode: int = 0
    output: str = ""
    populate: Callable[[Path], None] | None = None
    missing: bool = False
    calls: list[list[str]] = field(default_factory=list)

    def __call__(self, argv: Sequence[str]) -> subprocess.CompletedProcess[str]:
        self.calls.append(list(argv))
        if self.missing:
            raise FileNotFoundError(2, "No such file or directory", argv[0])
        if argv[0] == "tar":
            return run_command(argv)
        if argv[0] == "debootstrap" and self.populate is not None:
            self.populate(Path(argv[3]))
        return subprocess.CompletedProcess(list(argv), self.returncode, stdout=self.output)


NOISY = [
    "var/cache/ldconfig/aux-cache",
    "var/log/bootstrap.log",
    "var/log/alternatives.log",
    "var/log/dpkg.log",
    "var/cache/apt/pkgcache.bin",
    "var/cache/apt/srcpkgcache.bin",
    "var/cache/apt/archives/bash_5.2.15-2+b7_amd64.deb",
    "var/lib/apt/lists/deb.debian.org_debian_dists_bookworm_main_binary-amd64_Packages",
    "var/lib/apt/lists/deb.debian.org_debian_dists_bookworm_InRelease",
]
KEPT = ["usr/bin/bash", "var/lib/dpkg/status", "var/log/apt/eipp.log.xz", "etc/debian_version"]


def fake_debootstrap(rootfs: Path) -> None:
    for name in NOISY + KEPT:
        path = rootfs / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"contents of {name}\n")
    (rootfs / "var/cache/apt/archives/partial").mkdir(parents=True)
    (rootfs / "var/lib/apt/lists/partial").mkdir(parents=True)
    (rootfs / "etc/hostname").write_text("buildhost\n")
    (rootfs / "etc/resolv.conf").write_text("nameserver 10.255.255.53\n")
    (rootfs / "etc/apt/sources.list").parent.mkdir(parents=True, exist_ok=True)
    (rootfs / "etc/apt/sources.list").write_text("deb http://debootstrap.invalid/ bookworm main\n")
    (rootfs / "etc/shadow").write_text("root:*:20783:0:99999:7:::\ndaemon:*:19000:0:99999:7:::\n")
    (rootfs / "etc/shadow").chmod(0o640)


# --- bootstrap_rootfs --------------------------------------------------------------------------


def test_bootstrap_rootfs_runs_debootstrap_minbase(tmp_path: Path) -> None:
    runner = FakeRunner(populate=fake_debootstrap)
    rootfs = tmp_path / "rootfs"
    bootstrap_rootfs("bookworm", MIRROR, rootfs, runner)
    assert runner.calls == [["debootstrap", "--variant=minbase", "bookworm", str(rootfs), MIRROR]]


def test_bootstrap_rootfs_removes_the_files_that_differ_between_runs(tmp_path: Path) -> None:
    rootfs = tmp_path / "rootfs"
    bootstrap_rootfs("bookworm", MIRROR, rootfs, FakeRunner(populate=fake_debootstrap))
    for name in NOISY:
        assert not (rootfs / name).exists(), name
    for name in KEPT:
        assert (rootfs / name).read_text() == f"contents of {name}\n"
    assert (rootfs / "var/cache/apt/archives/partial").is_dir()
    assert (rootfs / "var/lib/apt/lists/partial").is_dir()


def test_bootstrap_rootfs_points_apt_at_the_mirror(tmp_path: Path) -> None:
    rootfs = tmp_path / "rootfs"
    bootstrap_rootfs("trixie", MIRROR, rootfs, FakeRunner(populate=fake_debootstrap))
    assert (rootfs / "etc/apt/sources.list").read_text() == f"deb {MIRROR} trixie main\n"


def test_bootstrap_rootfs_writes_sources_list_when_debootstrap_did_not(tmp_path: Path) -> None:
    rootfs = tmp_path / "rootfs"
    bootstrap_rootfs("bookworm", MIRROR, rootfs, FakeRunner(populate=lambda path: path.mkdir()))
    assert (rootfs / "etc/apt/sources.list").read_text() == f"deb {MIRROR} bookworm main\n"
    assert rootfs.stat().st_mode & 0o777 == 0o755


def test_bootstrap_rootfs_empties_files_copied_from_the_host(tmp_path: Path) -> None:
    rootfs = tmp_path / "rootfs"
    bootstrap_rootfs("bookworm", MIRROR, rootfs, FakeRunner(populate=fake_debootstrap))
    assert (rootfs / "etc/hostname").read_text() == ""
    assert (rootfs / "etc/resolv.conf").read_text() == ""


def test_bootstrap_rootfs_replaces_symlinks_without_writing_through_them(tmp_path: Path) -> None:
    host_file = tmp_path / "host-resolv.conf"
    host_file.write_text("nameserver 10.0.0.1\n")

    def populate(rootfs: Path) -> None:
        (rootfs / "etc").mkdir(parents=True)
        (rootfs / "etc/resolv.conf").symlink_to(host_file)

    rootfs = tmp_path / "rootfs"
    bootstrap_rootfs("bookworm", MIRROR, rootfs, FakeRunner(populate=populate))
    assert host_file.read_text() == "nameserver 10.0.0.1\n"
    assert not (rootfs / "etc/resolv.conf").is_symlink()


def test_bootstrap_rootfs_clamps_shadow_dates_to_the_epoch_day(tmp_path: Path) -> None:
    rootfs = tmp_path / "rootfs"
    runner = FakeRunner(populate=fake_debootstrap)
    bootstrap_rootfs("bookworm", MIRROR, rootfs, runner, source_date_epoch=EPOCH)
    shadow = rootfs / "etc/shadow"
    assert shadow.read_text() == (f"root:*:{EPOCH_DAY}:0:99999:7:::\ndaemon:*:19000:0:99999:7:::\n")
    assert shadow.stat().st_mode & 0o777 == 0o640


def test_bootstrap_rootfs_leaves_shadow_alone_without_an_epoch(tmp_path: Path) -> None:
    rootfs = tmp_path / "rootfs"
    bootstrap_rootfs("bookworm", MIRROR, rootfs, FakeRunner(populate=fake_debootstrap))
    assert (rootfs / "etc/shadow").read_text().startswith("root:*:20783:")


def test_bootstrap_rootfs_failure_reports_the_last_output_lines(tmp_path: Path) -> None:
    output = (
        "I: Retrieving InRelease \n"
        "I: Retrieving Release \n"
        "I: Checking Release signature\n"
        "W: something earlier\n"
        "\n"
        "E: Failed getting release file http://mirror.example/debian/dists/bookworm/Release\n"
    )

    def populate(rootfs: Path) -> None:
        (rootfs / "debootstrap").mkdir(parents=True)
        (rootfs / "debootstrap/debootstrap.log").write_text(output)

    runner = FakeRunner(returncode=1, output=output, populate=populate)
    rootfs = tmp_path / "rootfs"
    with pytest.raises(BootstrapError) as caught:
        bootstrap_rootfs("bookworm", MIRROR, rootfs, runner)
    message = str(caught.value)
    assert "\n" not in message
    assert "debootstrap bookworm" in message and "exit status 1" in message
    assert "E: Failed getting release file" in message
    assert "W: something earlier" in message
    assert "Retrieving InRelease" not in message
    assert MIRROR in caught.value.hint and "--mirror" in caught.value.hint
    assert str(rootfs / "debootstrap/debootstrap.log") in caught.value.hint


def test_bootstrap_rootfs_says_when_debootstrap_is_missing(tmp_path: Path) -> None:
    with pytest.raises(
        BootstrapError, match="debootstrap is not installed: apt-get install debootstrap"
    ):
        bootstrap_rootfs("bookworm", MIRROR, tmp_path / "rootfs", FakeRunner(missing=True))


def test_bootstrap_rootfs_refuses_a_non_empty_target(tmp_path: Path) -> None:
    rootfs = tmp_path / "rootfs"
    rootfs.mkdir()
    (rootfs / "leftover").write_text("x")
    runner = FakeRunner(populate=fake_debootstrap)
    with pytest.raises(BootstrapError, match="not an empty directory"):
        bootstrap_rootfs("bookworm", MIRROR, rootfs, runner)
    assert runner.calls == []


@pytest.mark.parametrize(
    "mirror", ["", "http://mirror.example/debian bookworm main\ndeb http://evil"]
)
def test_bootstrap_rootfs_rejects_mirrors_that_would_break_sources_list(
    tmp_path: Path, mirror: str
) -> None:
    runner = FakeRunner(populate=fake_debootstrap)
    with pytest.raises(BootstrapError, match="invalid mirror"):
        bootstrap_rootfs("bookworm", mirror, tmp_path / "rootfs", runner)
    assert runner.calls == []


# --- write_layer_tar (real GNU tar) ------------------------------------------------------------


def _gnu_tar_available() -> bool:
    if shutil.which("tar") is None:
        return False
    return "GNU tar" in run_command(["tar", "--version"]).stdout


needs_gnu_tar = pytest.mark.skipif(not _gnu_tar_available(), reason="needs GNU tar")


def _tiny_tree(root: Path) -> Path:
    (root / "etc").mkdir(parents=True)
    (root / "etc/os-release").write_text("ID=debian\n")
    (root / "usr/bin").mkdir(parents=True)
    (root / "usr/bin/tool").write_text("#!/bin/sh\n")
    (root / "usr/bin/tool").chmod(0o755)
    (root / "usr/bin/alias").symlink_to("tool")
    (root / "b-last").write_text("b\n")
    (root / "a-first").write_text("a\n")
    os.utime(root / "etc/os-release", (EPOCH - 1000, EPOCH - 1000))  # older than the epoch: kept
    return root


@needs_gnu_tar
def test_write_layer_tar_is_deterministic(tmp_path: Path) -> None:
    tree = _tiny_tree(tmp_path / "tree")
    first = write_layer_tar(tree, tmp_path / "one.tar", EPOCH)
    # Touch everything (new mtimes and atimes): the clamp must hide it.
    for path in tree.rglob("*"):
        if not path.is_symlink() and path.name != "os-release":
            os.utime(path)
    second = write_layer_tar(tree, tmp_path / "two.tar", EPOCH)
    assert first == second
    assert (tmp_path / "one.tar").read_bytes() == (tmp_path / "two.tar").read_bytes()
    assert first == hashlib.sha256((tmp_path / "one.tar").read_bytes()).hexdigest()


@needs_gnu_tar
def test_write_layer_tar_sorts_names_and_clamps_mtimes(tmp_path: Path) -> None:
    tree = _tiny_tree(tmp_path / "tree")
    write_layer_tar(tree, tmp_path / "layer.tar", EPOCH)
    with tarfile.open(tmp_path / "layer.tar") as layer:
        members = layer.getmembers()
    names = [member.name for member in members]
    assert names[0] == "."
    assert names.index("./a-first") < names.index("./b-last") < names.index("./etc")
    mtimes = {member.name: member.mtime for member in members}
    assert mtimes["./etc/os-release"] == EPOCH - 1000
    assert all(mtime <= EPOCH for mtime in mtimes.values())
    assert mtimes["./a-first"] == EPOCH
    assert layer_member(members, "./usr/bin/alias").issym()


def layer_member(members: list[tarfile.TarInfo], name: str) -> tarfile.TarInfo:
    return next(member for member in members if member.name == name)


def test_write_layer_tar_passes_the_reproducibility_options_to_tar(tmp_path: Path) -> None:
    out = tmp_path / "layer.tar"

    def fake_tar(argv: Sequence[str]) -> subprocess.CompletedProcess[str]:
        out.write_bytes(b"tar bytes")
        return subprocess.CompletedProcess(list(argv), 0, stdout="")

    calls: list[list[str]] = []

    def runner(argv: Sequence[str]) -> subprocess.CompletedProcess[str]:
        calls.append(list(argv))
        return fake_tar(argv)

    digest = write_layer_tar(tmp_path / "rootfs", out, EPOCH, runner)
    assert digest == hashlib.sha256(b"tar bytes").hexdigest()
    assert calls == [
        [
            "tar",
            "--sort=name",
            "--numeric-owner",
            f"--mtime=@{EPOCH}",
            "--clamp-mtime",
            "--pax-option=exthdr.name=%d/PaxHeaders/%f,delete=atime,delete=ctime",
            "-C",
            str(tmp_path / "rootfs"),
            "-cf",
            str(out),
            ".",
        ]
    ]
    assert "--owner=0" not in calls[0]


def test_write_layer_tar_failure_removes_the_partial_tar(tmp_path: Path) -> None:
    out = tmp_path / "layer.tar"

    def runner(argv: Sequence[str]) -> subprocess.CompletedProcess[str]:
        out.write_bytes(b"half")
        return subprocess.CompletedProcess(
            list(argv), 2, stdout="tar: ./x: Cannot open: Permission denied\n"
        )

    with pytest.raises(BootstrapError, match="Cannot open: Permission denied") as caught:
        write_layer_tar(tmp_path, out, EPOCH, runner)
    assert "GNU tar" in caught.value.hint
    assert not out.exists()


# --- write_image_archive -----------------------------------------------------------------------


def _tiny_layer(path: Path) -> str:
    with tarfile.open(path, "w", format=tarfile.GNU_FORMAT) as layer:
        data = b"ID=debian\n"
        info = tarfile.TarInfo("./etc/os-release")
        info.size, info.mtime = len(data), EPOCH
        layer.addfile(info, io.BytesIO(data))
    return hashlib.sha256(path.read_bytes()).hexdigest()


LABELS = {
    "org.r2env.base.suite": "bookworm",
    "org.r2env.base.mirror": MIRROR,
    "org.r2env.base.bootstrapped": "true",
}
CREATED = "2024-01-01T00:00:00Z"


def _read_archive(path: Path) -> dict[str, bytes]:
    contents: dict[str, bytes] = {}
    with tarfile.open(path) as archive:
        for member in archive.getmembers():
            if member.isfile():
                extracted = archive.extractfile(member)
                assert extracted is not None
                contents[member.name] = extracted.read()
            assert member.uid == member.gid == 0
    return contents


def test_write_image_archive_is_byte_identical_for_equal_inputs(tmp_path: Path) -> None:
    layer = tmp_path / "layer.tar"
    digest = _tiny_layer(layer)
    first = write_image_archive(
        layer, digest, tmp_path / "one.tar", "r2env/debian:bookworm", LABELS, CREATED
    )
    second = write_image_archive(
        layer, digest, tmp_path / "two.tar", "r2env/debian:bookworm", dict(LABELS), CREATED
    )
    assert first == second
    assert (tmp_path / "one.tar").read_bytes() == (tmp_path / "two.tar").read_bytes()


def test_write_image_archive_writes_a_docker_load_manifest_and_config(tmp_path: Path) -> None:
    layer = tmp_path / "layer.tar"
    digest = _tiny_layer(layer)
    image_id = write_image_archive(
        layer,
        f"sha256:{digest}",
        tmp_path / "image.tar",
        "r2env/debian:bookworm",
        LABELS,
        CREATED,
        created_by="debootstrap --variant=minbase bookworm",
        architecture="amd64",
    )
    contents = _read_archive(tmp_path / "image.tar")
    manifest = json.loads(contents["manifest.json"])
    assert manifest == [
        {
            "Config": f"{image_id.removeprefix('sha256:')}.json",
            "RepoTags": ["r2env/debian:bookworm"],
            "Layers": [f"{digest}/layer.tar"],
        }
    ]
    config_bytes = contents[manifest[0]["Config"]]
    assert image_id == "sha256:" + hashlib.sha256(config_bytes).hexdigest()
    assert contents[f"{digest}/layer.tar"] == layer.read_bytes()
    config: dict[str, Any] = json.loads(config_bytes)
    assert config["architecture"] == "amd64"
    assert config["os"] == "linux"
    assert config["created"] == CREATED
    assert config["config"]["Labels"] == LABELS
    assert config["config"]["Cmd"] == ["bash"]
    assert config["config"]["Env"] == [
        "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
    ]
    assert config["rootfs"] == {"type": "layers", "diff_ids": [f"sha256:{digest}"]}
    assert config["history"] == [
        {"created": CREATED, "created_by": "debootstrap --variant=minbase bookworm"}
    ]


def test_write_image_archive_id_changes_with_the_labels(tmp_path: Path) -> None:
    layer = tmp_path / "layer.tar"
    digest = _tiny_layer(layer)
    base = write_image_archive(layer, digest, tmp_path / "a.tar", "x:y", LABELS, CREATED)
    other = write_image_archive(
        layer,
        digest,
        tmp_path / "b.tar",
        "x:y",
        {**LABELS, "org.r2env.base.suite": "trixie"},
        CREATED,
    )
    assert base != other


def test_write_image_archive_adds_the_default_tag(tmp_path: Path) -> None:
    layer = tmp_path / "layer.tar"
    digest = _tiny_layer(layer)
    write_image_archive(
        layer, digest, tmp_path / "image.tar", "localhost:5000/debian", LABELS, CREATED
    )
    manifest = json.loads(_read_archive(tmp_path / "image.tar")["manifest.json"])
    assert manifest[0]["RepoTags"] == ["localhost:5000/debian:latest"]


@pytest.mark.parametrize(("machine", "architecture"), [("x86_64", "amd64"), ("aarch64", "arm64")])
def test_write_image_archive_takes_the_architecture_from_the_host(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, machine: str, architecture: str
) -> None:
    monkeypatch.setattr("platform.machine", lambda: machine)
    layer = tmp_path / "layer.tar"
    digest = _tiny_layer(layer)
    write_image_archive(layer, digest, tmp_path / "image.tar", "x:y", LABELS, CREATED)
    contents = _read_archive(tmp_path / "image.tar")
    config_name = json.loads(contents["manifest.json"])[0]["Config"]
    assert json.loads(contents[config_name])["architecture"] == architecture


def test_write_image_archive_rejects_bad_digests_and_zoneless_dates(tmp_path: Path) -> None:
    layer = tmp_path / "layer.tar"
    digest = _tiny_layer(layer)
    with pytest.raises(ValueError, match="sha256"):
        write_image_archive(layer, "abc", tmp_path / "image.tar", "x:y", LABELS, CREATED)
    with pytest.raises(ValueError, match="time zone"):
        write_image_archive(
            layer, digest, tmp_path / "image.tar", "x:y", LABELS, "2024-01-01T00:00:00"
        )
    assert not (tmp_path / "image.tar").exists()


# --- bootstrap_image_archive -------------------------------------------------------------------


@needs_gnu_tar
def test_bootstrap_image_archive_chains_the_steps_and_cleans_up(tmp_path: Path) -> None:
    runner = FakeRunner(populate=fake_debootstrap)
    archive, image_id = bootstrap_image_archive(
        "bookworm", MIRROR, tmp_path / "work", "r2env/debian:bookworm", runner
    )
    assert [call[0] for call in runner.calls] == ["debootstrap", "tar"]
    assert archive == tmp_path / "work" / "image.tar"
    assert sorted(path.name for path in (tmp_path / "work").iterdir()) == ["image.tar"]
    contents = _read_archive(archive)
    manifest = json.loads(contents["manifest.json"])
    config = json.loads(contents[manifest[0]["Config"]])
    assert image_id == "sha256:" + hashlib.sha256(contents[manifest[0]["Config"]]).hexdigest()
    assert config["created"] == "2024-01-01T00:00:00Z"
    assert config["config"]["Labels"] == LABELS
    with tarfile.open(fileobj=io.BytesIO(contents[manifest[0]["Layers"][0]])) as layer:
        names = layer.getnames()
        shadow = layer.extractfile("./etc/shadow")
        assert shadow is not None
        assert shadow.read().decode().startswith(f"root:*:{EPOCH_DAY}:")
    assert "./var/log/dpkg.log" not in names
    assert "./usr/bin/bash" in names


@needs_gnu_tar
def test_bootstrap_image_archive_gives_the_same_id_twice(tmp_path: Path) -> None:
    first = bootstrap_image_archive(
        "bookworm", MIRROR, tmp_path / "one", "x:y", FakeRunner(populate=fake_debootstrap)
    )
    second = bootstrap_image_archive(
        "bookworm", MIRROR, tmp_path / "two", "x:y", FakeRunner(populate=fake_debootstrap)
    )
    assert first[1] == second[1]
    assert first[0].read_bytes() == second[0].read_bytes()


def test_bootstrap_image_archive_replaces_a_stale_rootfs(tmp_path: Path) -> None:
    stale = tmp_path / "work" / "rootfs"
    stale.mkdir(parents=True)
    (stale / "half-written").write_text("x")
    runner = FakeRunner(returncode=1, output="E: boom\n")
    with pytest.raises(BootstrapError, match="E: boom"):
        bootstrap_image_archive("bookworm", MIRROR, tmp_path / "work", "x:y", runner)
    assert runner.calls[0][0] == "debootstrap"
    assert not (stale / "half-written").exists()
