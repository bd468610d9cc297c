"""r2env.lock as text: dump/parse round-trip, a stable diff-friendly layout, and errors that name the file and entry."""

from __future__ import annotations

import difflib
import hashlib
import re

import pytest

from r2env.errors import LockError
from r2env.lock.lockfile import (
    FORMAT_VERSION,
    LOCK_FILE,
    Lock,
    LockedBase,
    LockedPackage,
    dump_lock,
    file_digest,
    parse_lock,
    stale_inputs,
)


def sha(seed: str) -> str:
    return "sha256:" + hashlib.sha256(seed.encode()).hexdigest()


def package(name: str, version: str, hashes: int = 2) -> LockedPackage:
    return LockedPackage(name, version, tuple(sha(f"{name}-{version}-{i}") for i in range(hashes)))


def sample_lock(**changes: object) -> Lock:
    values: dict[str, object] = dict(
        r2env_version="0.1.0",
        inputs={
            "requirements.txt": file_digest("requests==2.32.3\n"),
            "apt.txt": file_digest("graphviz\n"),
            "option:server-requirement": file_digest("jupyterlab==4.6.6"),
            "option:base": file_digest("|bookworm"),
        },
        base=LockedBase("debian:bookworm", sha("base"), "bookworm", "http://deb.debian.org/debian"),
        python="3.11",
        server=(package("jupyterlab", "4.6.6"), package("traitlets", "5.16.1", 1)),
        packages=(package("requests", "2.32.3"), package("charset-normalizer", "3.5.3", 5)),
        apt={"graphviz": "2.42.2-7+deb12u1", "ca-certificates": "20230311+deb12u1", "libxml2": "2.9.14+dfsg-1.3~deb12u6"},
        source="r2env",
    )
    values.update(changes)
    return Lock(**values)  # type: ignore[arg-type]


# --- round trip ------------------------------------------------------------------------------------------------


def test_dump_then_parse_gives_the_same_lock() -> None:
    lock = sample_lock()
    assert parse_lock(dump_lock(lock), LOCK_FILE) == lock


def test_dumping_a_parsed_lock_gives_the_same_bytes() -> None:
    text = dump_lock(sample_lock())
    assert dump_lock(parse_lock(text, LOCK_FILE)) == text


@pytest.mark.parametrize(
    "changes",
    [
        pytest.param({"python": "3.10"}, id="python 3.10 is not the float 3.1"),
        pytest.param({"packages": (package("pyyaml", "6.0"), package("numpy", "1.10"))}, id="versions that look like floats"),
        pytest.param({"apt": {"libc6": "2.36-9+deb12u10", "libgcc-s1": "12.2.0-14", "login": "1:4.13+dfsg1-1+b1", "yes": "1.0"}}, id="Debian epochs and YAML words"),
        pytest.param({"base": LockedBase("example.org/base:1", sha("x"), "trixie")}, id="a base without a mirror"),
        pytest.param({"packages": (), "source": "Pipfile.lock", "inputs": {"Pipfile.lock": file_digest("{}")}},
                     id="no repository packages, source from an ecosystem lock"),
        pytest.param({"r2env_version": "1.0"}, id="an r2env version that looks like a float"),
        pytest.param({"packages": (LockedPackage("pywin32", "306", (sha("pywin32"),), marker="sys_platform == 'win32'"),
                                   LockedPackage("tomli", "2.0.1", (sha("tomli"),), marker='python_version < "3.11"'))},
                     id="pins with markers, quoted both ways"),
    ],
)
def test_round_trip_keeps_awkward_values_as_they_are(changes: dict[str, object]) -> None:
    lock = sample_lock(**changes)
    assert parse_lock(dump_lock(lock), LOCK_FILE) == lock


def test_inputs_digest_does_not_depend_on_the_order_of_inputs() -> None:
    lock = sample_lock()
    reordered = sample_lock(inputs=dict(reversed(list(lock.inputs.items()))))
    assert lock.inputs_digest == reordered.inputs_digest
    assert re.fullmatch(r"sha256:[0-9a-f]{64}", lock.inputs_digest)


def test_file_digest_is_the_sha256_of_the_utf8_text() -> None:
    assert file_digest("é\n") == "sha256:" + hashlib.sha256("é\n".encode("utf-8")).hexdigest()


# --- layout ----------------------------------------------------------------------------------------------------


def test_text_starts_with_a_header_that_says_how_to_regenerate_it() -> None:
    text = dump_lock(sample_lock())
    header = [line for line in text.splitlines() if line.startswith("#")]
    assert text.startswith("# r2env.lock")
    assert any("r2env lock" in line for line in header)
    assert any("do not edit" in line for line in header)


def test_top_level_keys_are_in_logical_order() -> None:
    text = dump_lock(sample_lock())
    top = [line.split(":")[0] for line in text.splitlines() if re.match(r"^[a-z0-9-]+:", line)]
    assert top == ["version", "r2env", "inputs", "base", "python", "apt", "python-packages"]


def test_each_package_is_its_own_mapping_with_name_version_hashes_in_that_order() -> None:
    lock = sample_lock()
    text = dump_lock(lock)
    block = text[text.index("python-packages:"):]
    assert block.splitlines()[:2] == ["python-packages:", "  source: r2env"]
    for locked in (*lock.server, *lock.packages):
        entry = [f"  - name: {locked.name}", f"    version: {locked.version}", "    hashes:"]
        entry += [f"    - {digest}" for digest in locked.hashes]
        assert "\n".join(entry) in block


def test_apt_and_inputs_are_sorted_one_per_line() -> None:
    text = dump_lock(sample_lock())
    apt = text[text.index("\napt:\n") + 6: text.index("python-packages:")].splitlines()
    assert apt == ["  ca-certificates: 20230311+deb12u1", "  graphviz: 2.42.2-7+deb12u1", "  libxml2: 2.9.14+dfsg-1.3~deb12u6"]
    files = re.findall(r"^    (\S+): sha256:", text, re.MULTILINE)
    assert files == sorted(files) and len(files) == 4


def test_one_upgraded_package_changes_only_its_own_lines() -> None:
    before = sample_lock()
    after = sample_lock(packages=(package("requests", "2.32.4"), before.packages[1]))
    changed = [line for line in difflib.unified_diff(dump_lock(before).splitlines(), dump_lock(after).splitlines(), lineterm="", n=0)
               if line.startswith(("+", "-")) and not line.startswith(("+++", "---"))]
    # the version line and its two hashes, removed and added
    assert len(changed) == 6
    assert "-    version: 2.32.3" in changed and "+    version: 2.32.4" in changed


def test_long_hash_lists_are_not_folded() -> None:
    lock = sample_lock(packages=(package("charset-normalizer", "3.5.3", 170),))
    text = dump_lock(lock)
    assert max(len(line) for line in text.splitlines()) < 200
    assert parse_lock(text, LOCK_FILE) == lock


# --- errors ----------------------------------------------------------------------------------------------------


def broken(old: str, new: str, count: int = 1) -> str:
    text = dump_lock(sample_lock())
    assert old in text
    return text.replace(old, new, count)


@pytest.mark.parametrize(
    ("text", "fragments"),
    [
        pytest.param("version: 1\nbase: [unclosed\n", ("binder/r2env.lock line 3", "invalid YAML"), id="invalid YAML, with its line"),
        pytest.param("version: 1\ninputs:\n  files: {a: b}\n\tbad: tab\n", ("binder/r2env.lock line", "invalid YAML"), id="a tab"),
        pytest.param("version: 1\napt:\n<<<<<<< HEAD\n  a: '1'\n=======\n  a: '2'\n>>>>>>> theirs\n",
                     ("binder/r2env.lock line 4", "invalid YAML"), id="a git merge conflict"),
        pytest.param("version: 1\nversion: 1\n", ("binder/r2env.lock line 2", "invalid YAML"), id="a duplicate key"),
        pytest.param("- just\n- a list\n", ("binder/r2env.lock", "not an r2env lock"), id="not a mapping"),
        pytest.param("", ("binder/r2env.lock", "not an r2env lock"), id="empty"),
    ],
)
def test_unreadable_text_is_a_lock_error_naming_the_file(text: str, fragments: tuple[str, ...]) -> None:
    with pytest.raises(LockError) as raised:
        parse_lock(text, "binder/r2env.lock")
    for fragment in fragments:
        assert fragment in str(raised.value)
    assert "r2env lock" in raised.value.hint


def test_missing_base_is_named() -> None:
    text = dump_lock(sample_lock())
    text = re.sub(r"\nbase:\n(  .*\n)+", "\n", text)
    with pytest.raises(LockError, match=r"^r2env.lock: base: is missing"):
        parse_lock(text, "r2env.lock")


def test_base_without_an_id_names_base_id() -> None:
    text = re.sub(r"\n  id: sha256:[0-9a-f]+", "", dump_lock(sample_lock()), count=1)
    with pytest.raises(LockError, match=r"base\.id: is missing"):
        parse_lock(text, "r2env.lock")


@pytest.mark.parametrize(
    ("edit", "fragments"),
    [
        pytest.param(lambda t: re.sub(r"(  - name: requests\n    version: 2.32.3\n)    hashes:\n(    - .*\n)+", r"\1", t),
                     ("python-packages.repository[0].hashes: is missing",), id="no hashes key"),
        pytest.param(lambda t: re.sub(r"(  - name: requests\n    version: 2.32.3\n    hashes:)\n(    - .*\n)+", r"\1 []\n", t),
                     ("python-packages.repository[0].hashes: is empty",), id="empty hashes"),
        pytest.param(lambda t: t.replace("- " + package("traitlets", "5.16.1", 1).hashes[0], "- md5:0123456789abcdef"),
                     ("python-packages.server[1].hashes[0]: 'md5:0123456789abcdef' is not a sha256:HEX hash",), id="an md5 hash"),
        pytest.param(lambda t: t.replace("- " + package("traitlets", "5.16.1", 1).hashes[0], "- sha256:abc"),
                     ("python-packages.server[1].hashes[0]: 'sha256:abc' is not a sha256:HEX hash",), id="a truncated hash"),
        pytest.param(lambda t: t.replace("    version: 2.32.3\n", ""),
                     ("python-packages.repository[0].version: is missing",), id="no version"),
        pytest.param(lambda t: t.replace("  - name: requests\n", "  - nme: requests\n"),
                     ("python-packages.repository[0].name: is missing",), id="no name"),
        pytest.param(lambda t: re.sub(r"^  server:\n(?:  - .*\n|    .*\n)*", "  server: jupyterlab\n", t, flags=re.M),
                     ("python-packages.server: expected a list, got a string",), id="server is not a list"),
        pytest.param(lambda t: t.replace("  server:\n", "  sever:\n  server:\n", 1),
                     ("python-packages: unknown key 'sever' (known: source, server, repository)",), id="a misspelt key"),
        pytest.param(lambda t: t + "mirror: [1, 2]\n",
                     ("unknown key 'mirror' (known: version, r2env, inputs, base, python, apt, python-packages, conda, r)",),
                     id="an unknown top-level key"),
    ],
)
def test_a_bad_package_entry_is_named(edit: object, fragments: tuple[str, ...]) -> None:
    text = edit(dump_lock(sample_lock()))  # type: ignore[operator]
    with pytest.raises(LockError) as raised:
        parse_lock(text, "r2env.lock")
    assert str(raised.value).startswith("r2env.lock: ")
    for fragment in fragments:
        assert fragment in raised.value.message


def test_wrong_format_version_is_named() -> None:
    text = dump_lock(sample_lock()).replace(f"\nversion: {FORMAT_VERSION}\n", "\nversion: 2\n")
    with pytest.raises(LockError, match=r"r2env.lock: lock format 2 is not 1"):
        parse_lock(text, "r2env.lock")


def test_a_hand_edited_input_digest_is_detected() -> None:
    lock = sample_lock()
    text = dump_lock(lock).replace(lock.inputs["requirements.txt"], file_digest("requests==2.0\n"))
    with pytest.raises(LockError) as raised:
        parse_lock(text, "r2env.lock")
    assert "inputs.digest does not match" in raised.value.message
    assert "hand-edited" in raised.value.hint and "r2env lock" in raised.value.hint


def test_lock_errors_exit_with_code_8() -> None:
    assert LockError("x").exit_code == 8


# --- staleness -------------------------------------------------------------------------------------------------


def test_stale_inputs_lists_changed_added_and_removed_inputs() -> None:
    lock = sample_lock()
    current = dict(lock.inputs)
    assert stale_inputs(lock, current) == []
    current["requirements.txt"] = file_digest("requests==2.32.4\n")
    current["runtime.txt"] = file_digest("python-3.13\n")
    del current["apt.txt"]
    assert stale_inputs(lock, current) == ["apt.txt", "requirements.txt", "runtime.txt"]
