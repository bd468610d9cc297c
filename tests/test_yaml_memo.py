"""r2env/yaml_memo.py and r2env.lock read through it: the memo skips the YAML parser, never the checks."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from r2env import yaml_memo
from r2env.errors import LockError
from r2env.lock import lockfile
from r2env.lock.lockfile import LOCK_FILE, dump_lock, parse_lock
from r2env.yaml_memo import recall, remember
from tests.test_lock import sample_lock


def test_a_lock_loaded_once_is_read_from_the_memo_the_next_time(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    text = dump_lock(sample_lock())
    first = parse_lock(text, LOCK_FILE, tmp_path)
    assert len(list(tmp_path.glob("*.json"))) == 1

    def no_parser(text: str, path: str) -> None:
        raise AssertionError("parsed again")

    monkeypatch.setattr(lockfile, "_load_yaml", no_parser)
    assert parse_lock(text, LOCK_FILE, tmp_path) == first == sample_lock()


def test_an_edited_lock_is_parsed_again(tmp_path: Path) -> None:
    parse_lock(dump_lock(sample_lock()), LOCK_FILE, tmp_path)
    edited = dump_lock(sample_lock(python="3.12"))
    assert parse_lock(edited, LOCK_FILE, tmp_path).python == "3.12"
    assert len(list(tmp_path.glob("*.json"))) == 2


def test_the_checks_still_run_on_remembered_data(tmp_path: Path) -> None:
    text = dump_lock(sample_lock())
    parse_lock(text, LOCK_FILE, tmp_path)
    (entry,) = tmp_path.glob("*.json")
    data = json.loads(entry.read_text())
    data["python"] = "3.11; rm -rf /"  # a memo written by someone else is data like any other
    entry.write_text(json.dumps(data))
    with pytest.raises(LockError, match="python"):
        parse_lock(text, LOCK_FILE, tmp_path)


def test_a_lock_that_fails_its_checks_is_not_remembered(tmp_path: Path) -> None:
    with pytest.raises(LockError):
        parse_lock(dump_lock(sample_lock()).replace("python: '3.11'", "python: '3.11 x'"), LOCK_FILE, tmp_path)
    with pytest.raises(LockError):
        parse_lock("version: 1\nbase: [unclosed\n", LOCK_FILE, tmp_path)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("content", ["", "{\"half\": ", "\x00\xff"])
def test_an_unreadable_memo_entry_is_a_miss(tmp_path: Path, content: str) -> None:
    text = dump_lock(sample_lock())
    parse_lock(text, LOCK_FILE, tmp_path)
    (entry,) = tmp_path.glob("*.json")
    entry.write_text(content, encoding="latin-1")
    assert recall(tmp_path, text) == (False, None)
    assert parse_lock(text, LOCK_FILE, tmp_path) == sample_lock()  # and it is written again
    assert recall(tmp_path, text)[0]


@pytest.mark.parametrize("data", [{1: "an integer key"}, {"when": __import__("datetime").date(2026, 1, 1)}, {"x": float("nan")}, ("a", "tuple")])
def test_data_json_would_change_is_not_kept(tmp_path: Path, data: object) -> None:
    remember(tmp_path, "text", data)
    assert recall(tmp_path, "text") == (False, None)


def test_no_folder_or_an_unwritable_one_is_no_memo(tmp_path: Path) -> None:
    remember(None, "text", {"a": 1})
    assert recall(None, "text") == (False, None)
    blocker = tmp_path / "file"
    blocker.write_text("")
    remember(blocker / "memo", "text", {"a": 1})  # a file where the folder would be: nothing kept, nothing raised
    assert recall(blocker / "memo", "text") == (False, None)


def test_only_the_most_recently_used_entries_are_kept(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(yaml_memo, "KEEP", 3)
    for number in range(5):
        remember(tmp_path, f"text {number}", {"n": number})
        entry = yaml_memo._entry(tmp_path, f"text {number}")
        os.utime(entry, (1000 + number, 1000 + number))  # distinct ages, oldest first
    remember(tmp_path, "text 5", {"n": 5})
    assert sorted(json.loads(p.read_text())["n"] for p in tmp_path.glob("*.json")) == [3, 4, 5]
    assert recall(tmp_path, "text 3") == (True, {"n": 3})


def test_a_conda_lock_is_read_from_the_memo_the_next_time(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from r2env.parsers import conda_lock

    text = (Path(__file__).resolve().parent / "fixtures" / "conda" / "conda-lock.yml").read_text()
    first = conda_lock.parse_conda_lock(text, "conda-lock.yml", memo=tmp_path)
    assert first.packages and len(list(tmp_path.glob("*.json"))) == 1

    def no_parser(text: str, path: str) -> None:
        raise AssertionError("parsed again")

    monkeypatch.setattr(conda_lock, "_load_yaml", no_parser)
    assert conda_lock.parse_conda_lock(text, "conda-lock.yml", memo=tmp_path) == first
    with pytest.raises(LockError, match="not locked for osx-arm64"):  # the checks run on remembered data
        conda_lock.parse_conda_lock(text, "conda-lock.yml", "osx-arm64", memo=tmp_path)
