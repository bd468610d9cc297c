"""The daemon's memory limit for BuildKit build steps, on a cgroup tree made of plain files (r2env/serve/build_cgroup.py).
integration/test_serve_limits_engine.py checks the same on the real engine's cgroup."""

from __future__ import annotations

import errno
import json
import os
from dataclasses import replace
from pathlib import Path

import pytest

from r2env.serve import daemon
from r2env.serve.build_cgroup import PARENT, BuildkitLimits, CgroupUnavailable
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
    limit = BuildkitLimits(memory=8 << 30, root=tmp_path, record=tmp_path / "record.json")
    assert limit.install() == str(folder)
    assert (folder / "memory.limit_in_bytes").read_text() == str(8 << 30)
    assert (folder / "memory.memsw.limit_in_bytes").read_text() == str(8 << 30)
    limit.remove()
    assert (folder / "memory.limit_in_bytes").read_text() == UNLIMITED
    assert (folder / "memory.memsw.limit_in_bytes").read_text() == UNLIMITED


def test_v1_without_swap_accounting_limits_memory_only(tmp_path: Path) -> None:
    folder = v1(tmp_path, swap=False)
    BuildkitLimits(memory=1 << 30, root=tmp_path, record=tmp_path / "record.json").install()
    assert (folder / "memory.limit_in_bytes").read_text() == str(1 << 30)
    assert not (folder / "memory.memsw.limit_in_bytes").exists()


def test_the_buildkit_cgroup_is_made_when_no_build_has_made_it_yet(tmp_path: Path) -> None:
    (tmp_path / "memory").mkdir()
    limit = BuildkitLimits(memory=1 << 30, root=tmp_path, record=tmp_path / "record.json")
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
    limit = BuildkitLimits(memory=2 << 30, root=tmp_path, record=tmp_path / "record.json")
    limit.install()
    assert ((folder / "memory.max").read_text(), (folder / "memory.swap.max").read_text()) == (str(2 << 30), "0")
    limit.remove()
    assert ((folder / "memory.max").read_text(), (folder / "memory.swap.max").read_text()) == ("max", "max")


def test_a_limit_changed_by_someone_else_is_left_alone(tmp_path: Path) -> None:
    folder = v1(tmp_path, swap=False)
    limit = BuildkitLimits(memory=8 << 30, root=tmp_path, record=tmp_path / "record.json")
    limit.install()
    (folder / "memory.limit_in_bytes").write_text(str(4 << 30))  # another daemon's, or the administrator's
    limit.remove()
    assert (folder / "memory.limit_in_bytes").read_text() == str(4 << 30)


def test_the_kernels_page_rounding_still_counts_as_ours(tmp_path: Path) -> None:
    folder = v1(tmp_path, swap=False)
    limit = BuildkitLimits(memory=PAGE * 10 + 5, root=tmp_path, record=tmp_path / "record.json")
    limit.install()
    (folder / "memory.limit_in_bytes").write_text(str(PAGE * 10))  # what v1 reads back
    limit.remove()
    assert (folder / "memory.limit_in_bytes").read_text() == UNLIMITED


def test_no_memory_cgroup_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(CgroupUnavailable, match=f"^no cgroup hierarchy under {tmp_path}$"):
        BuildkitLimits(memory=1 << 30, root=tmp_path, record=tmp_path / "record.json").install()


def test_a_cgroup_it_cannot_write_changes_nothing(tmp_path: Path) -> None:
    folder = v1(tmp_path)
    (folder / "memory.memsw.limit_in_bytes").unlink()
    (folder / "memory.memsw.limit_in_bytes").mkdir()  # writing it fails (EISDIR), after memory.limit_in_bytes was set
    with pytest.raises(CgroupUnavailable, match=f"^cannot set {folder}/memory.memsw.limit_in_bytes: Is a directory$"):
        BuildkitLimits(memory=1 << 30, root=tmp_path, record=tmp_path / "record.json").install()
    assert (folder / "memory.limit_in_bytes").read_text() == UNLIMITED  # put back


def test_a_memory_limit_below_what_the_kernel_cannot_reclaim_says_how_much_is_held(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = v1(tmp_path)
    (folder / "memory.usage_in_bytes").write_text("67596288\n")
    write_text = Path.write_text

    def busy_limit(path: Path, value: str) -> int:
        if path.name == "memory.limit_in_bytes" and value != UNLIMITED:
            raise OSError(errno.EBUSY, os.strerror(errno.EBUSY))  # what cgroup v1 says when it cannot reclaim down to the limit
        return write_text(path, value)

    monkeypatch.setattr(Path, "write_text", busy_limit)
    with pytest.raises(CgroupUnavailable, match=rf"^cannot set {folder}/memory.limit_in_bytes to 67,108,864 bytes: the kernel could not "
                       r"reclaim the 67,596,288 bytes earlier build steps left charged there \(kernel caches\); raise c.Serve.build_memory"):
        BuildkitLimits(memory=64 << 20, root=tmp_path, record=tmp_path / "record.json").install()
    assert (folder / "memory.limit_in_bytes").read_text() == UNLIMITED + "\n"
    assert not (tmp_path / "record.json").exists()


def test_a_cgroup_it_may_not_write_says_to_run_as_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = v1(tmp_path)

    def denied(path: Path, value: str) -> int:
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES))

    monkeypatch.setattr(Path, "write_text", denied)
    with pytest.raises(CgroupUnavailable, match=f"^cannot set {folder}/memory.limit_in_bytes: Permission denied: run the daemon as root"):
        BuildkitLimits(memory=1 << 30, root=tmp_path, record=tmp_path / "record.json").install()


class _Engine:
    def __init__(self, builder: str = "buildkit", host: str = "unix:///var/run/docker.sock", driver: str = "cgroupfs") -> None:
        self.builder, self.host, self.driver = builder, host, driver

    def cgroup_driver(self) -> str:
        return self.driver


SERVE = ServeSettings(host="127.0.0.1", port=0, state_dir=Path("/nonexistent"), token="", max_builds=2, build_timeout=60.0,
                      resolve_timeout=10.0, max_launches=3, cull_idle_timeout=0.0, sources=SourcePolicy(), build_memory="4g",
                      build_cpus=2.0, build_pids=4096)


@pytest.fixture
def logged(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    lines: list[str] = []
    monkeypatch.setattr(daemon, "_log", lines.append)
    return lines


def v1_cpu_pids(root: Path) -> tuple[Path, Path]:
    cpu, pids = root / "cpu" / PARENT, root / "pids" / PARENT
    cpu.mkdir(parents=True)
    pids.mkdir(parents=True)
    (cpu / "cpu.cfs_period_us").write_text("100000\n")
    (cpu / "cpu.cfs_quota_us").write_text("-1\n")
    (pids / "pids.max").write_text("max\n")
    return cpu, pids


def test_the_daemon_limits_buildkit_to_its_build_limits_times_max_builds(logged: list[str], tmp_path: Path) -> None:
    folder = v1(tmp_path)
    cpu, pids = v1_cpu_pids(tmp_path)
    limits = daemon._buildkit_limits(_Engine(), SERVE, tmp_path, tmp_path / "record.json")  # type: ignore[arg-type]
    assert limits is not None
    assert (folder / "memory.limit_in_bytes").read_text() == str(8 << 30)
    assert (cpu / "cpu.cfs_quota_us").read_text() == "400000"  # 2 CPUs a build x 2 builds
    assert (pids / "pids.max").read_text() == "8192"
    assert logged == [f"build limits: all BuildKit build steps together limited to memory {8 << 30:,} bytes, 4 CPUs, 8192 processes "
                      f"(c.Serve.build_* x c.Serve.max_builds 2) in {folder}, {cpu}, {pids}"]
    limits.remove()
    assert ((cpu / "cpu.cfs_quota_us").read_text(), (pids / "pids.max").read_text()) == ("-1", "max")


def test_v2_limits_cpu_and_pids_too(tmp_path: Path) -> None:
    (tmp_path / "cgroup.controllers").write_text("cpu memory pids\n")
    folder = tmp_path / PARENT
    folder.mkdir(parents=True)
    for name, value in (("memory.max", "max"), ("memory.swap.max", "max"), ("cpu.max", "max 100000"), ("pids.max", "max")):
        (folder / name).write_text(value + "\n")
    limits = BuildkitLimits(memory=1 << 30, cpus=1.5, pids=100, root=tmp_path, record=tmp_path / "record.json")
    limits.install()
    assert [(folder / n).read_text() for n in ("memory.max", "cpu.max", "pids.max")] == [str(1 << 30), "150000 100000", "100"]
    limits.remove()
    assert [(folder / n).read_text() for n in ("memory.max", "cpu.max", "pids.max")] == ["max", "max 100000", "max"]


SERVE_OFF = replace(SERVE, build_memory="", build_cpus=0.0, build_pids=0)


@pytest.mark.parametrize(("engine", "serve", "said"), [
    (_Engine(builder="classic"), replace(SERVE, build_cpus=0.0, build_pids=0), None),  # each classic step is limited by the builder itself
    (_Engine(builder="classic"), SERVE, "build limits: c.Serve.build_cpus and build_pids are not applied by the classic builder"),
    (_Engine(), SERVE_OFF, None),  # no limit asked for
    (_Engine(host="tcp://10.0.0.2:2376"), SERVE, "is not on this machine or does not use the cgroupfs driver"),
    (_Engine(driver="systemd"), SERVE, "is not on this machine or does not use the cgroupfs driver"),
    (_Engine(), SERVE, "(no cgroup hierarchy under"),
])
def test_where_it_cannot_limit_the_daemon_says_so_once(logged: list[str], tmp_path: Path, engine: _Engine, serve: ServeSettings,
                                                       said: str | None) -> None:
    assert daemon._buildkit_limits(engine, serve, tmp_path, tmp_path / "record.json") is None  # type: ignore[arg-type]
    if said is None:
        assert logged == []
    else:
        assert len(logged) == 1 and logged[0].startswith("build limits: ") and said in logged[0]
