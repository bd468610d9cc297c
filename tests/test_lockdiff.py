"""What changed between two locks: the changes, their verbs, and the table the CLI prints."""

from __future__ import annotations

import hashlib

from r2env.lock.lockfile import Lock, LockedBase, LockedPackage
from r2env.lock.diff import Change, diff_locks, format_diff

OLD_BASE = "sha256:" + "1" * 64
NEW_BASE = "sha256:" + "2" * 64


def pin(name: str, version: str) -> LockedPackage:
    return LockedPackage(name, version, ("sha256:" + hashlib.sha256(f"{name}{version}".encode()).hexdigest(),))


def lock(server: dict[str, str], packages: dict[str, str], apt: dict[str, str], base_id: str = OLD_BASE) -> Lock:
    return Lock(
        "0.1.0", {}, LockedBase("debian:bookworm", base_id, "bookworm"), "3.11",
        server=tuple(pin(n, v) for n, v in server.items()),
        packages=tuple(pin(n, v) for n, v in packages.items()),
        apt=apt,
    )


BEFORE = lock(
    {"jupyterlab": "4.6.6", "tornado": "6.4.1"},
    {"requests": "2.32.3", "numpy": "2.1.0", "six": "1.16.0"},
    {"graphviz": "2.42.2-7", "libxml2": "2.9.14+dfsg-1.3~deb12u5", "jq": "1.6-2.1"},
)
AFTER = lock(
    {"jupyterlab": "4.6.6", "tornado": "6.5"},  # upgraded
    {"requests": "2.32.3", "numpy": "1.26.4", "pandas": "2.2.3"},  # numpy downgraded, pandas added, six removed
    {"graphviz": "2.42.2-7", "libxml2": "2.9.14+dfsg-1.3~deb12u6", "libjq1": "1.6-2.1"},  # libxml2 changed, jq out, libjq1 in
)


def test_identical_locks_have_no_changes() -> None:
    assert diff_locks(BEFORE, BEFORE) == []
    assert format_diff([]) == "no changes"


def test_every_kind_of_change_is_found_with_its_verb() -> None:
    changes = diff_locks(BEFORE, AFTER)
    assert [(c.verb, c.kind, c.name, c.old, c.new) for c in changes] == [
        ("removed", "apt", "jq", "1.6-2.1", ""),
        ("added", "apt", "libjq1", "", "1.6-2.1"),
        ("changed", "apt", "libxml2", "2.9.14+dfsg-1.3~deb12u5", "2.9.14+dfsg-1.3~deb12u6"),
        ("downgraded", "python", "numpy", "2.1.0", "1.26.4"),
        ("added", "python", "pandas", "", "2.2.3"),
        ("removed", "python", "six", "1.16.0", ""),
        ("upgraded", "python", "tornado", "6.4.1", "6.5"),
    ]


def test_a_package_moving_between_server_and_repository_is_no_change() -> None:
    moved = lock({"jupyterlab": "4.6.6", "tornado": "6.4.1", "six": "1.16.0"}, {"requests": "2.32.3", "numpy": "2.1.0"}, dict(BEFORE.apt))
    assert diff_locks(BEFORE, moved) == []


def test_a_new_base_comes_first() -> None:
    rebased = lock({"jupyterlab": "4.6.6", "tornado": "6.5"}, {"requests": "2.32.3", "numpy": "2.1.0", "six": "1.16.0"}, dict(BEFORE.apt),
                   base_id=NEW_BASE)
    changes = diff_locks(BEFORE, rebased)
    assert changes[0] == Change("base", "debian:bookworm", OLD_BASE[:19], NEW_BASE[:19])
    assert changes[0].verb == "changed"
    assert [c.name for c in changes[1:]] == ["tornado"]


def test_the_table_has_a_header_one_row_per_change_and_a_summary() -> None:
    text = format_diff(diff_locks(BEFORE, AFTER))
    lines = text.splitlines()
    assert lines[0].split() == ["kind", "package", "old", "new"]
    assert lines[-1] == "2 added, 2 removed, 1 upgraded, 1 downgraded, 1 changed"
    assert len(lines) == 1 + 7 + 1
    assert lines[1].split() == ["removed", "apt", "jq", "1.6-2.1", "-"]
    assert lines[4].split() == ["downgraded", "python", "numpy", "2.1.0", "1.26.4"]
    assert lines[5].split() == ["added", "python", "pandas", "-", "2.2.3"]
    assert all(line == line.rstrip() for line in lines)


def test_table_columns_line_up() -> None:
    lines = format_diff(diff_locks(BEFORE, AFTER)).splitlines()[:-1]
    package_column = lines[0].index("package")
    old_column = lines[0].index("old")
    for line in lines[1:]:
        assert line[package_column - 2:package_column] == "  " and line[package_column] != " "
        assert line[old_column - 2:old_column] == "  " and line[old_column] != " "


def test_base_change_is_in_the_table_first() -> None:
    rebased = lock(
        {"jupyterlab": "4.6.6", "tornado": "6.4.1"}, {"requests": "2.32.3", "numpy": "2.1.0", "six": "1.16.0"}, dict(BEFORE.apt),
        base_id=NEW_BASE,
    )
    lines = format_diff(diff_locks(BEFORE, rebased)).splitlines()
    assert lines[1].split() == ["changed", "base", "debian:bookworm", OLD_BASE[:19], NEW_BASE[:19]]
    assert lines[-1] == "1 changed"


def test_pep440_versions_compare_as_versions_not_text() -> None:
    assert Change("python", "x", "1.9", "1.10").verb == "upgraded"
    assert Change("python", "x", "2.0.0rc1", "2.0.0").verb == "upgraded"
    assert Change("python", "x", "2.0.post1", "2.0").verb == "downgraded"
    assert Change("apt", "x", "1:2.39.5-0+deb12u1", "1:2.39.5-0+deb12u2").verb == "changed"


def test_a_debian_security_update_is_never_called_a_downgrade() -> None:
    """Debian versions are not PEP 440, though some happen to parse as one ("+deb12u9" reads as a local version,
    compared as text): libc6 2.36-9+deb12u9 -> 2.36-9+deb12u10 is the security update of bookworm's point release."""
    for old, new in [("2.36-9+deb12u9", "2.36-9+deb12u10"), ("7.88.1-10+deb12u9", "7.88.1-10+deb12u12")]:
        assert Change("apt", "libc6", old, new).verb in ("changed", "upgraded"), (old, new)
