"""The daemon's memory limit for BuildKit build steps, on a cgroup tree made of plain files (r2env/serve/build_cgroup.py).
integration/test_serve_limits_engine.py checks the same on the real engine's cgroup."""

from __future__ import annotations

import json
import os
from dataclasses import replace
from pathlib import Path

import pytest

from r2env.serve import daemon
from r2env.serve.build_cgroup import PARENT, BuildkitMemoryLimit, CgroupUnavailable
from r2env.serve.config import ServeSettings
from r2env.serve.sources import SourcePolicy

UNLIMITED = "9223372036854771712"
PAGE = os.sysconf("SC_PAGE_SIZE")


def v1(root: Path, swap: bool = True) -> Path:
    folder = root / "memory" / PARENT
    folder.mkdir(parents=True)
    (folder / "memory.limit_in_bytes").write_text(UNLIMITED + "\n")
    if swap:
        (folder / "memory.memsw.limit_in_bytes").write_text(UNLIMITED + "\n")
    return folder


def test_v1_limits_memory_and_swap_and_puts_them_back(tmp_path: Path) -> None:
    folder = v1(tmp_path)
    limit = BuildkitMemoryLimit(8 << 30, root=tmp_path, record=tmp_path / "record.json")
    assert limit.install() == str(folder)
    assert (folder / "memory.limit_in_bytes").read_text() == str(8 << 30)
    assert (folder / "memory.memsw.limit_in_bytes").read_text() == str(8 << 30)
    limit.remove()
    assert (folder / "memory.limit_in_bytes").read_text() == UNLIMITED
    assert (folder / "memory.memsw.limit_in_bytes").read_text() == UNLIMITED


def test_v1_without_swap_accounting_limits_memory_only(tmp_path: Path) -> None:
    folder = v1(tmp_path, swap=False)
    BuildkitMemoryLimit(1 << 30, root=tmp_path, record=tmp_path / "record.json").install()
    assert (folder / "memory.limit_in_bytes").read_text() == str(1 << 30)
    assert not (folder / "memory.memsw.limit_in_bytes").exists()


def test_the_buildkit_cgroup_is_made_when_no_build_has_made_it_yet(tmp_path: Path) -> None:
    (tmp_path / "memory").mkdir()
    limit = BuildkitMemoryLimit(1 << 30, root=tmp_path, record=tmp_path / "record.json")
    assert [path for path, _ in limit.files()] == [tmp_path / "memory" / PARENT / "memory.limit_in_bytes"]
    # (the kernel makes a new cgroup's files; on plain files only the folder appears)
    limit.install()
    assert (tmp_path / "memory" / PARENT).is_dir()


def test_v2_sets_memory_max_and_no_swap(tmp_path: Path) -> None:
    (tmp_path / "cgroup.controllers").write_text("cpu memory pids\n")
    folder = tmp_path / PARENT
    folder.mkdir(parents=True)
    (folder / "memory.max").write_text("max\n")
    (folder / "memory.swap.max").write_text("max\n")
    limit = BuildkitMemoryLimit(2 << 30, root=tmp_path, record=tmp_path / "record.json")
    limit.install()
    assert ((folder / "memory.max").read_text(), (folder / "memory.swap.max").read_text()) == (str(2 << 30), "0")
    limit.remove()
    assert ((folder / "memory.max").read_text(), (folder / "memory.swap.max").read_text()) == ("max", "max")


def test_a_limit_changed_by_someone_else_is_left_alone(tmp_path: Path) -> None:
    folder = v1(tmp_path, swap=False)
    limit = BuildkitMemoryLimit(8 << 30, root=tmp_path, record=tmp_path / "record.json")
    limit.install()
    (folder / "memory.limit_in_bytes").write_text(str(4 << 30))  # another daemon's, or the administrator's
    limit.remove()
    assert (folder / "memory.limit_in_bytes").read_text() == str(4 << 30)


def test_the_kernels_page_rounding_still_counts_as_ours(tmp_path: Path) -> None:
    folder = v1(tmp_path, swap=False)
    limit = BuildkitMemoryLimit(PAGE * 10 + 5, root=tmp_path, record=tmp_path / "record.json")
    limit.install()
    (folder / "memory.limit_in_bytes").write_text(str(PAGE * 10))  # what v1 reads back
    limit.remove()
    assert (folder / "memory.limit_in_bytes").read_text() == UNLIMITED


def test_no_memory_cgroup_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(CgroupUnavailable, match=f"^no memory cgroup under {tmp_path}$"):
        BuildkitMemoryLimit(1 << 30, root=tmp_path, record=tmp_path / "record.json").install()


def test_a_cgroup_it_cannot_write_changes_nothing(tmp_path: Path) -> None:
    folder = v1(tmp_path)
    (folder / "memory.memsw.limit_in_bytes").unlink()
    (folder / "memory.memsw.limit_in_bytes").mkdir()  # writing it fails (EISDIR), after memory.limit_in_bytes was set
    with pytest.raises(CgroupUnavailable, match=f"^cannot set {folder}: Is a directory$"):
        BuildkitMemoryLimit(1 << 30, root=tmp_path, record=tmp_path / "record.json").install()
    assert (folder / "memory.limit_in_bytes").read_text() == UNLIMITED  # put back


class _Engine:
    def __init__(self, builder: str = "buildkit", host: str = "unix:///var/run/docker.sock", driver: str = "cgroupfs") -> None:
        self.builder, self.host, self.driver = builder, host, driver

    def cgroup_driver(self) -> str:
        return self.driver


SERVE = ServeSettings(host="127.0.0.1", port=0, state_dir=Path("/nonexistent"), token="", max_builds=2, build_timeout=60.0,
                      resolve_timeout=10.0, max_launches=3, cull_idle_timeout=0.0, sources=SourcePolicy(), build_memory="4g")


@pytest.fixture
def logged(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    lines: list[str] = []
    monkeypatch.setattr(daemon, "_log", lines.append)
    return lines


def test_the_daemon_limits_buildkit_to_build_memory_times_max_builds(logged: list[str], tmp_path: Path) -> None:
    folder = v1(tmp_path)
    limit = daemon._buildkit_memory_limit(_Engine(), SERVE, tmp_path, tmp_path / "record.json")  # type: ignore[arg-type]
    assert limit is not None
    assert (folder / "memory.limit_in_bytes").read_text() == str(8 << 30)
    assert logged == [f"build memory: all BuildKit build steps together limited to {8 << 30:,} bytes "
                      f"(c.Serve.build_memory 4g x c.Serve.max_builds 2) in {folder}"]
    limit.remove()


@pytest.mark.parametrize(("engine", "serve", "said"), [
    (_Engine(builder="classic"), SERVE, None),  # each classic step is limited by the builder itself
    (_Engine(), replace(SERVE, build_memory=""), None),  # no limit asked for
    (_Engine(host="tcp://10.0.0.2:2376"), SERVE, "is not on this machine or does not use the cgroupfs driver"),
    (_Engine(driver="systemd"), SERVE, "is not on this machine or does not use the cgroupfs driver"),
    (_Engine(), SERVE, "(no memory cgroup under"),
])
def test_where_it_cannot_limit_the_daemon_says_so_once(logged: list[str], tmp_path: Path, engine: _Engine, serve: ServeSettings,
                                                       said: str | None) -> None:
    assert daemon._buildkit_memory_limit(engine, serve, tmp_path, tmp_path / "record.json") is None  # type: ignore[arg-type]
    if said is None:
        assert logged == []
    else:
        assert len(logged) == 1 and logged[0].startswith("build memory: BuildKit steps are not limited") and said in logged[0]


def test_a_killed_daemons_limit_is_put_back_by_the_next_one(tmp_path: Path) -> None:
    folder = v1(tmp_path)
    record = tmp_path / "record.json"
    killed = BuildkitMemoryLimit(1 << 30, root=tmp_path, record=record)
    killed.install()
    data = json.loads(record.read_text())
    assert data["pid"] == os.getpid() and len(data["written"]) == 2
    record.write_text(json.dumps({**data, "pid": 2**22 + 12345}))  # as if it died without remove() (no such pid)
    next_one = BuildkitMemoryLimit(8 << 30, root=tmp_path, record=record)
    next_one.install()
    assert (folder / "memory.limit_in_bytes").read_text() == str(8 << 30)
    next_one.remove()
    assert (folder / "memory.limit_in_bytes").read_text() == UNLIMITED  # not the killed daemon's 1 GiB
    assert (folder / "memory.memsw.limit_in_bytes").read_text() == UNLIMITED
    assert not record.exists()


def test_a_running_daemons_record_is_kept(tmp_path: Path) -> None:
    v1(tmp_path, swap=False)
    record = tmp_path / "record.json"
    record.write_text(json.dumps({"pid": os.getppid(), "written": []}))  # another daemon, alive
    kept = record.read_text()
    second = BuildkitMemoryLimit(2 << 30, root=tmp_path, record=record)
    second.install()
    second.remove()
    assert record.read_text() == kept  # still the first one's: its values are the ones to put back
