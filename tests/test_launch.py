"""The launcher without an engine: GPU requests, volumes, env, the container request, and the run loop."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

import pytest

from r2env.launch.container import LAUNCH_LABEL, SOURCE_LABEL, ContainerInfo, ContainerRequest, Mount
from r2env.errors import LaunchError, UsageError
from r2env.events import BuildEvent, Kind
from r2env.launch.gpus import GpuRequest, parse_gpus
from r2env.launch.launcher import (
    FOREIGN_UID_HOME,
    Exited,
    LaunchOptions,
    Ready,
    container_request,
    parse_env,
    parse_volume,
    run,
    server_url,
)

R2ENV_IMAGE = {
    "Cmd": ["jupyter", "lab", "--ip=0.0.0.0", "--port=8888", "--no-browser"],
    "Env": ["NB_UID=1000", "REPO_DIR=/home/jovyan", "PATH=/srv/venv/bin:/usr/bin"],
    "User": "1000",
    "WorkingDir": "/home/jovyan",
}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("all", GpuRequest(count=-1, text="all")),
        ("2", GpuRequest(count=2, text="2")),
        ("device=0,1", GpuRequest(device_ids=("0", "1"), text="device=0,1")),
        ('"device=0,1"', GpuRequest(device_ids=("0", "1"), text='"device=0,1"')),
        ("device=GPU-3a2b", GpuRequest(device_ids=("GPU-3a2b",), text="device=GPU-3a2b")),
    ],
)
def test_gpu_requests_parse(text: str, expected: GpuRequest) -> None:
    assert parse_gpus(text) == expected


@pytest.mark.parametrize("text", ["", "0", "-1", "some", "device=", "device=0;rm", "count=2"])
def test_bad_gpu_requests_are_usage_errors(text: str) -> None:
    with pytest.raises(UsageError, match="is not a GPU request"):
        parse_gpus(text)


@pytest.mark.parametrize(
    ("text", "cdi"),
    [
        ("all", ("nvidia.com/gpu=all",)),
        ("2", ("nvidia.com/gpu=0", "nvidia.com/gpu=1")),
        ("device=1,3", ("nvidia.com/gpu=1", "nvidia.com/gpu=3")),
    ],
)
def test_podman_gets_cdi_device_names(text: str, cdi: tuple[str, ...]) -> None:
    assert parse_gpus(text).cdi_devices() == cdi


def test_volume_paths_resolve_on_both_sides(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    assert parse_volume("data:input:ro", tmp_path, "/home/jovyan") == Mount(str(tmp_path / "data"), "/home/jovyan/input", True)
    assert parse_volume(f"{tmp_path}/data:/mnt/data", Path("/"), "/home/jovyan") == Mount(str(tmp_path / "data"), "/mnt/data", False)


@pytest.mark.parametrize("text", ["data", "data:", ":x", "data:x:rx", "a:b:c:d"])
def test_malformed_volumes_are_usage_errors(tmp_path: Path, text: str) -> None:
    (tmp_path / "data").mkdir()
    with pytest.raises(UsageError, match="is not HOST:CONTAINER"):
        parse_volume(text, tmp_path, "/home/jovyan")


def test_a_missing_host_folder_is_refused_not_created(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="does not exist"):
        parse_volume("missing:/data", tmp_path, "/home/jovyan")
    assert not (tmp_path / "missing").exists()


def test_env_takes_values_or_passes_the_hosts() -> None:
    assert parse_env(("A=1", "B=x=y", "C="), {}) == (("A", "1"), ("B", "x=y"), ("C", ""))
    assert parse_env(("HOME",), {"HOME": "/root"}) == (("HOME", "/root"),)
    with pytest.raises(UsageError, match="is not set here"):
        parse_env(("NOPE",), {})
    with pytest.raises(UsageError, match="is not KEY=VALUE"):
        parse_env(("1A=2",), {})


def test_server_request_defaults_are_safe() -> None:
    request = container_request("img", R2ENV_IMAGE, LaunchOptions(), token="t0k", source="examples/requirements", uid=1000, gid=1000)
    assert request.publish == ("127.0.0.1", 0)
    assert dict(request.environment) == {"JUPYTER_TOKEN": "t0k"}
    assert dict(request.labels) == {LAUNCH_LABEL: "server", SOURCE_LABEL: "examples/requirements"}
    assert request.command is None and request.user == "" and request.gpus is None


def test_a_users_own_token_wins() -> None:
    request = container_request("img", R2ENV_IMAGE, LaunchOptions(env=("JUPYTER_TOKEN=mine",)), token="t0k")
    assert dict(request.environment)["JUPYTER_TOKEN"] == "mine"


def test_a_command_runs_instead_of_the_server_without_a_token() -> None:
    request = container_request("img", R2ENV_IMAGE, LaunchOptions(command=("python", "train.py")), token="t0k", uid=1000)
    assert request.command == ("python", "train.py")
    assert "JUPYTER_TOKEN" not in dict(request.environment)
    assert dict(request.labels)[LAUNCH_LABEL] == "command"


def test_limits_and_gpus_reach_the_request() -> None:
    options = LaunchOptions(memory="4g", cpus=1.5, gpus="device=0,1", ip="0.0.0.0", port=9999)
    request = container_request("img", R2ENV_IMAGE, options, token="t")
    assert (request.memory, request.cpus, request.publish) == ("4g", 1.5, ("0.0.0.0", 9999))
    assert request.gpus == GpuRequest(device_ids=("0", "1"), text="device=0,1")


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (LaunchOptions(port=70000), "is not a port"),
        (LaunchOptions(memory="lots"), "is not a size"),
        (LaunchOptions(cpus=-1), "is not a CPU count"),
        (LaunchOptions(gpus="many"), "is not a GPU request"),
        (LaunchOptions(editable=True), "--editable needs a local repository"),
    ],
)
def test_bad_launch_options_are_usage_errors(options: LaunchOptions, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        container_request("img", R2ENV_IMAGE, options, token="t")


def test_editable_mounts_the_repository_over_its_copy(tmp_path: Path) -> None:
    request = container_request("img", R2ENV_IMAGE, LaunchOptions(editable=True), token="t", editable_dir=tmp_path, uid=1000, gid=1000)
    assert request.mounts == (Mount(str(tmp_path), "/home/jovyan"),)
    assert request.user == ""  # the host user is the image's user already


def test_root_on_the_host_runs_the_server_as_root_so_mount_files_are_its_own(tmp_path: Path) -> None:
    request = container_request("img", R2ENV_IMAGE, LaunchOptions(editable=True), token="t", editable_dir=tmp_path, uid=0, gid=0)
    assert request.user == "0:0"
    assert request.command == (*R2ENV_IMAGE["Cmd"], "--allow-root")


def test_jupyter_is_told_the_address_on_the_host() -> None:
    request = container_request("img", R2ENV_IMAGE, LaunchOptions(port=9123, ip="0.0.0.0"), token="t")
    assert request.command == (*R2ENV_IMAGE["Cmd"], "--ServerApp.custom_display_url=http://127.0.0.1:9123/")
    other = container_request("img", {**R2ENV_IMAGE, "Cmd": ["voila"]}, LaunchOptions(port=9123), token="t")
    assert other.command is None  # only Jupyter's own servers know that option


def test_another_host_uid_runs_as_itself_with_a_writable_home(tmp_path: Path) -> None:
    options = LaunchOptions(volumes=(f"{tmp_path}:/data",))
    request = container_request("img", R2ENV_IMAGE, options, token="t", uid=1234, gid=100)
    assert request.user == "1234:100"
    assert request.command is None
    assert dict(request.environment)["HOME"] == FOREIGN_UID_HOME


def test_no_mounts_no_uid_change() -> None:
    assert container_request("img", R2ENV_IMAGE, LaunchOptions(), token="t", uid=0, gid=0).user == ""


def test_server_url_carries_the_token_and_a_browsable_host() -> None:
    info = ContainerInfo("c1", "img", "running", 0, 32768, "0.0.0.0", environment={"JUPYTER_TOKEN": "abc"})
    assert server_url(info) == "http://127.0.0.1:32768/?token=abc"


# --- the run loop against a fake engine -----------------------------------------------------------------


class FakeContainers:
    """Scripted container states: each `container()` call takes the next status."""

    host = "unix:///fake.sock"

    def __init__(self, statuses: list[str], logs: list[str] = [], exit_code: int = 0, gpu_refusal: str = "") -> None:
        self.statuses = statuses
        self.logs = logs
        self.exit_code = exit_code
        self.gpu_refusal = gpu_refusal
        self.started: list[ContainerRequest] = []
        self.stopped: list[str] = []

    def image_config(self, reference: str) -> dict[str, Any]:
        return R2ENV_IMAGE

    def gpu_support(self, image: str, gpus: GpuRequest) -> str:
        return self.gpu_refusal

    def start_container(self, request: ContainerRequest) -> str:
        self.started.append(request)
        return "c0ffee" * 10

    def container(self, container_id: str) -> ContainerInfo:
        status = self.statuses.pop(0) if len(self.statuses) > 1 else self.statuses[0]
        return ContainerInfo(container_id, "img", status, self.exit_code, 40000, "127.0.0.1", environment={"JUPYTER_TOKEN": "tok"})

    def follow_logs(self, container_id: str) -> Iterator[str]:
        yield from self.logs

    def logs_tail(self, container_id: str, lines: int = 20) -> str:
        return "\n".join(self.logs[-lines:])

    def wait(self, container_id: str) -> int:
        return self.exit_code

    def stop_container(self, container_id: str, grace_seconds: int = 5) -> None:
        self.stopped.append(container_id)


def _request(**changes: Any) -> ContainerRequest:
    return container_request("img", R2ENV_IMAGE, LaunchOptions(**changes), token="tok")


def test_ready_once_the_server_answers_then_streams_until_it_exits() -> None:
    engine = FakeContainers(["running"], logs=["server log"])
    answers = iter([False, False, True])
    events = list(run(engine, _request(), LaunchOptions(), probe=lambda url: next(answers), sleep=lambda s: None))
    ready = [e for e in events if isinstance(e, Ready)]
    assert ready == [Ready("http://127.0.0.1:40000/?token=tok", "c0ffee" * 10)]
    assert isinstance(events[-1], Exited)
    assert any(isinstance(e, BuildEvent) and e.kind is Kind.LOG and e.message == "server log" for e in events)
    assert engine.stopped == ["c0ffee" * 10]


def test_the_probe_asks_the_published_port() -> None:
    asked: list[str] = []
    list(run(FakeContainers(["running"]), _request(), LaunchOptions(), probe=lambda url: asked.append(url) or True))
    assert asked == ["http://127.0.0.1:40000/api"]


def test_detach_leaves_the_ready_server_running() -> None:
    engine = FakeContainers(["running"])
    events = list(run(engine, _request(detach=True), LaunchOptions(detach=True), probe=lambda url: True))
    assert isinstance(events[-1], Ready)
    assert engine.stopped == []


def test_a_container_that_exits_during_start_up_is_reported_and_removed() -> None:
    engine = FakeContainers(["running", "exited"], logs=["boom"], exit_code=4)
    with pytest.raises(LaunchError, match="exited with code 4 before the server answered") as raised:
        list(run(engine, _request(), LaunchOptions(), probe=lambda url: False, sleep=lambda s: None))
    assert "boom" in raised.value.details
    assert engine.stopped == ["c0ffee" * 10]


def test_a_server_that_never_answers_times_out_and_is_removed() -> None:
    engine = FakeContainers(["running"])
    ticks = iter(range(1000))
    with pytest.raises(LaunchError, match="did not answer within 3 s"):
        list(run(engine, _request(), LaunchOptions(timeout=3), probe=lambda url: False, sleep=lambda s: None, clock=lambda: next(ticks)))
    assert engine.stopped


def test_a_command_passes_its_exit_code_back() -> None:
    engine = FakeContainers(["running"], logs=["training"], exit_code=3)
    events = list(run(engine, _request(command=("python", "train.py")), LaunchOptions(command=("python", "train.py"))))
    assert events[-1] == Exited(3, "c0ffee" * 10)
    assert engine.stopped


def test_gpu_refusal_stops_before_any_container_starts() -> None:
    engine = FakeContainers(["running"], gpu_refusal='could not select device driver "" with capabilities: [[gpu]]')
    with pytest.raises(LaunchError) as raised:
        list(run(engine, _request(gpus="all"), LaunchOptions(gpus="all")))
    assert str(raised.value).startswith(
        "the Docker engine at unix:///fake.sock has no GPU runtime (no NVIDIA device driver is registered), so it cannot pass --gpus all: "
        "install the NVIDIA Container Toolkit"
    )
    assert engine.started == []


def test_closing_the_run_early_removes_the_container() -> None:
    engine = FakeContainers(["running"], logs=["a", "b"])
    events = run(engine, _request(), LaunchOptions(), probe=lambda url: True)
    for event in events:
        if isinstance(event, Ready):
            events.close()  # what Ctrl-C does
            break
    assert engine.stopped == ["c0ffee" * 10]
