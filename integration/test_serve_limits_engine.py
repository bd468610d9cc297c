"""The daemon's limits on the real engine: a notebook server's memory, CPU and pids limits reach its cgroup, the
classic builder stops a build step past c.Serve.build_memory, BuildKit through the docker CLI does not (Docker
Engine 20.10 ignores `docker build --memory`; the engine logs say so instead of pretending), but a limit on the
engine's BuildKit cgroup, as the daemon sets it, does. Images are named
r2env-it/h17-* and removed at the end; base debian:bookworm must exist (integration/support.py makes it elsewhere)."""

from __future__ import annotations

import shutil
from pathlib import Path

import docker
import pytest

from r2env.engine import BuildRequest, DockerEngine, find_buildkit_cli
from r2env.errors import BuildError
from r2env.events import Kind
from r2env.launch.container import ContainerRequest
from r2env.serve.build_cgroup import CGROUP_ROOT, PARENT, BuildkitLimits

BASE = "debian:bookworm"
# `tail` keeps a line in memory until its end: 400 MiB of zeros without a newline need 400 MiB of memory.
ALLOCATE = "FROM debian:bookworm\nRUN head -c 400m /dev/zero | tail > /dev/null && echo ALLOCATED-OK\n"


@pytest.fixture
def base(engine: docker.DockerClient) -> str:
    try:
        engine.images.get(BASE)
    except docker.errors.ImageNotFound:
        pytest.skip(f"{BASE} is not in the engine (r2env base bootstrap makes it)")
    return BASE


def test_a_servers_memory_cpu_and_pids_limits_reach_its_cgroup(base: str) -> None:
    engine = DockerEngine.connect(prefer_classic=True)
    request = ContainerRequest(base, command=("sleep", "30"), memory="256m", cpus=0.5, pids_limit=64,
                               labels=(("org.r2env.test", "h17-limits"),))
    container_id = engine.start_container(request)
    try:
        attrs = engine._client.api.inspect_container(container_id)["HostConfig"]
        assert (attrs["Memory"], attrs["NanoCpus"], attrs["PidsLimit"]) == (256 << 20, 500_000_000, 64)
    finally:
        engine.stop_container(container_id, grace_seconds=0)


def test_the_classic_builder_kills_a_build_step_past_its_memory_limit(base: str, tmp_path: Path, engine: docker.DockerClient) -> None:
    (tmp_path / "Dockerfile").write_text(ALLOCATE)
    classic = DockerEngine.connect(prefer_classic=True)
    request = BuildRequest(tmp_path, tmp_path / "Dockerfile", "r2env-it/h17-memory:classic", {}, {}, {}, no_cache=True, memory="64m")
    with pytest.raises(BuildError, match="returned a non-zero code: 137"):
        list(classic.build(request))
    unlimited = BuildRequest(tmp_path, tmp_path / "Dockerfile", "r2env-it/h17-memory:classic", {}, {}, {}, no_cache=True)
    try:
        events = list(classic.build(unlimited))  # whole: the image is tagged at the end of the stream
        assert any("ALLOCATED-OK" in event.message for event in events)
    finally:
        engine.images.remove("r2env-it/h17-memory:classic", force=True)


def test_buildkit_through_the_docker_cli_cannot_limit_a_build_step_and_says_so(base: str, tmp_path: Path, engine: docker.DockerClient) -> None:
    if find_buildkit_cli() is None or shutil.which("docker") is None:
        pytest.skip("no docker CLI that drives BuildKit")
    (tmp_path / "Dockerfile").write_text(ALLOCATE)
    buildkit = DockerEngine.connect()
    request = BuildRequest(tmp_path, tmp_path / "Dockerfile", "r2env-it/h17-memory:buildkit", {}, {}, {}, no_cache=True, memory="64m")
    try:
        events = list(buildkit.build(request))
    finally:
        engine.images.remove("r2env-it/h17-memory:buildkit", force=True)
    assert (events[0].kind, events[0].message) == (Kind.INFO, "memory limit 64m not applied: BuildKit through the docker CLI cannot limit build steps")
    # The step ran with 400 MiB: the documented limitation, not a silent one.
    assert any("ALLOCATED-OK" in event.message for event in events)


def test_the_daemons_buildkit_limit_kills_a_step_past_it_and_is_put_back(base: str, tmp_path: Path, engine: docker.DockerClient) -> None:
    """r2env/serve/build_cgroup.py on the engine's own cgroup: what `r2env serve` installs when it starts."""
    if find_buildkit_cli() is None or shutil.which("docker") is None:
        pytest.skip("no docker CLI that drives BuildKit")
    buildkit = DockerEngine.connect()
    assert buildkit.cgroup_driver() == "cgroupfs"  # what .ci/run's dockerd uses: the limit must apply in CI
    # 64 MiB above what earlier steps left charged to the cgroup (kernel caches of their files, which cgroup v1
    # cannot reclaim to go below: ~65 MiB after a CI run), and a step that needs 256 MiB more than that.
    memory = _charged_to_buildkit() + (64 << 20)
    (tmp_path / "Dockerfile").write_text(ALLOCATE.replace("400m", f"{(memory >> 20) + 256}m"))
    request = BuildRequest(tmp_path, tmp_path / "Dockerfile", "r2env-it/h17-memory:cgroup", {}, {}, {}, no_cache=True)
    limit = BuildkitLimits(memory=memory, record=tmp_path / "record.json")
    where = Path(limit.install())
    limit_file = where / "memory.limit_in_bytes" if (where / "memory.limit_in_bytes").exists() else where / "memory.max"
    previous = [value for path, value, _ in limit._written]
    try:
        assert int(limit_file.read_text()) <= memory
        seen: list[str] = []
        with pytest.raises(BuildError, match="^build step failed: RUN head -c"):
            for event in buildkit.build(request):
                seen.append(event.message)
        assert "Killed" in seen, seen[-5:]  # the shell reports the kernel killing `tail`: not a failure of another kind
    finally:
        limit.remove()
    assert limit_file.read_text().strip() == previous[0]
    try:
        events = list(buildkit.build(request))  # the same step, with the engine's own limits back
        assert any("ALLOCATED-OK" in event.message for event in events)
    finally:
        engine.images.remove("r2env-it/h17-memory:cgroup", force=True)


def _charged_to_buildkit() -> int:
    for usage in (CGROUP_ROOT / "memory" / PARENT / "memory.usage_in_bytes", CGROUP_ROOT / PARENT / "memory.current"):
        if usage.exists():
            return int(usage.read_text())
    return 0  # no BuildKit step has run yet: nothing charged


def test_the_daemons_buildkit_pids_limit_stops_a_fork_bomb(base: str, tmp_path: Path, engine: docker.DockerClient) -> None:
    if find_buildkit_cli() is None or shutil.which("docker") is None:
        pytest.skip("no docker CLI that drives BuildKit")
    # 200 sleeping processes at once: past a limit of 50 for all BuildKit steps, fork fails.
    (tmp_path / "Dockerfile").write_text("FROM debian:bookworm\nRUN for i in $(seq 200); do sleep 5 & done; wait && echo FORKED-OK\n")
    buildkit = DockerEngine.connect()
    request = BuildRequest(tmp_path, tmp_path / "Dockerfile", "r2env-it/h17-pids:cgroup", {}, {}, {}, no_cache=True)
    limit = BuildkitLimits(pids=50, record=tmp_path / "record.json")
    limit.install()
    try:
        seen: list[str] = []
        with pytest.raises(BuildError, match="^build step failed: RUN for i in"):
            for event in buildkit.build(request):
                seen.append(event.message)
        assert any("fork" in message.lower() or "resource temporarily unavailable" in message.lower() for message in seen), seen[-5:]
    finally:
        limit.remove()
    try:
        events = list(buildkit.build(request))
        assert any("FORKED-OK" in event.message for event in events)
    finally:
        engine.images.remove("r2env-it/h17-pids:cgroup", force=True)
