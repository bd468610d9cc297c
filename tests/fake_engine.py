"""One fake of the Engine protocol (r2env/engine.py) for the tests: no Docker. It records every call, simulates
`apt-get install -s` from a table of Debian packages, and tags each image it builds with the build's labels.
EagerEngine is the same fake whose builds start when asked for, as the docker CLI's do."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

from r2env.engine import BuilderKind, BuildRequest
from r2env.errors import EngineUnavailableError, PushError
from r2env.events import BuildEvent, Kind, Phase
from r2env.registry import Credentials
from r2env.lock.resolve import parse_apt_simulation

APT_SIMULATION = (Path(__file__).resolve().parent / "fixtures" / "lock" / "apt-simulation.txt").read_text()
BOOKWORM_ID = "sha256:" + "b" * 64
TRIXIE_ID = "sha256:" + "c" * 64
PULLED_ID = "sha256:" + "0" * 64
MIRROR = "http://deb.example.org/debian"
# What apt would install for each requested package in the base (bookworm versions).
DEBIAN = {
    "ca-certificates": {"openssl": "3.0.17-1~deb12u2", "ca-certificates": "20230311+deb12u1"},
    "python3": {"libpython3.11-minimal": "3.11.2-6+deb12u6", "python3.11": "3.11.2-6+deb12u6", "python3": "3.11.2-1+b1"},
    "python3-venv": {"python3-pip-whl": "23.0.1+dfsg-1", "python3.11-venv": "3.11.2-6+deb12u6", "python3-venv": "3.11.2-1+b1"},
    "git": {"libcurl3-gnutls": "7.88.1-10+deb12u14", "git-man": "1:2.39.5-0+deb12u2", "git": "1:2.39.5-0+deb12u2"},
    "graphviz": {name: version for name, version in parse_apt_simulation(APT_SIMULATION).items() if not name.startswith("libxml2")},
    "jq": {"libonig5": "6.9.8-1", "libjq1": "1.6-2.1", "jq": "1.6-2.1"},
    # postBuild's Node.js: a few of the 360-odd packages npm pulls in on bookworm.
    "nodejs": {"libuv1": "1.44.2-1+deb12u1", "libnode108": "18.20.4+dfsg-1~deb12u2", "nodejs": "18.20.4+dfsg-1~deb12u2"},
    "npm": {"node-semver": "7.3.5+~7.3.9-2", "node-abbrev": "1.1.1+~1.1.2-1", "npm": "9.2.0~ds1-1"},
}


def _default_images() -> dict[str, str]:
    return {"debian:bookworm": BOOKWORM_ID, "debian:trixie": TRIXIE_ID}


def _default_labels() -> dict[str, dict[str, str]]:
    return {"debian:bookworm": {"org.r2env.base.mirror": MIRROR}, "debian:trixie": {"org.r2env.base.mirror": MIRROR}}


@dataclass
class FakeEngine:
    """Implements the Engine protocol. `images` maps the references it has to IDs (by default debian:bookworm and
    debian:trixie); pulls succeed only for `pullable`; `run` simulates `apt-get install -s` from `debian` (by default
    a copy of DEBIAN); a build records its request, Dockerfile and secrets, then tags an image with its labels."""

    images: dict[str, str] = field(default_factory=_default_images)
    labels: dict[str, dict[str, str]] = field(default_factory=_default_labels)
    debian: dict[str, dict[str, str]] = field(default_factory=lambda: dict(DEBIAN))
    pullable: set[str] = field(default_factory=set)
    kind: BuilderKind = "buildx"
    calls: list[tuple[str, str]] = field(default_factory=list)
    runs: list[tuple[str, list[str]]] = field(default_factory=list)
    requests: list[BuildRequest] = field(default_factory=list)
    dockerfiles: list[str] = field(default_factory=list)
    secrets_during_build: list[dict[str, str]] = field(default_factory=list)
    registry: dict[str, str] = field(default_factory=dict)  # reference -> manifest digest, what a registry holds
    push_error: str = ""  # when set, every push and registry question fails with this PushError message
    build_steps: tuple[tuple[str, bool], ...] = (("RUN pip install -r requirements.txt", False),)  # (step, cached)
    credentials_seen: list[Credentials | None] = field(default_factory=list)

    @property
    def builder(self) -> BuilderKind:
        return self.kind

    def image_id(self, reference: str) -> str | None:
        self.calls.append(("image_id", reference))
        return self.images.get(reference)

    def image_labels(self, reference: str) -> dict[str, str]:
        self.calls.append(("image_labels", reference))
        return dict(self.labels.get(reference, {}))

    def run(self, image: str, command: list[str]) -> tuple[int, str]:
        self.calls.append(("run", image))
        self.runs.append((image, list(command)))
        names = command[-1].split("--no-install-recommends ", 1)[1].split()
        lines = ["Reading package lists...", "Building dependency tree...", "Reading state information..."]
        installed: dict[str, str] = {}
        for name in names:
            if name not in self.debian:
                return 100, "\n".join(lines + [f"E: Unable to locate package {name}"]) + "\n"
            installed.update(self.debian[name])
        lines += [f"Inst {name} ({version} Debian:12.15/oldstable [amd64])" for name, version in installed.items()]
        lines += [f"Conf {name} ({version} Debian:12.15/oldstable [amd64])" for name, version in installed.items()]
        return 0, "\n".join(lines) + "\n"

    def pull(self, reference: str, credentials: Credentials | None = None) -> bool:
        self.calls.append(("pull", reference))
        if reference in self.registry:  # an image this registry got from push(): pushing it again gives the same digest
            self.images[reference] = "sha256:" + self.registry[reference].removeprefix("sha256:")[::-1]
            return True
        if reference in self.pullable:
            self.images[reference] = PULLED_ID
            return True
        return False

    def image_size(self, reference: str) -> int:
        return 376_000_000

    def push(self, reference: str, credentials: Credentials | None) -> str:
        self.calls.append(("push", reference))
        self.credentials_seen.append(credentials)
        if self.push_error:
            raise PushError(self.push_error, "check the registry")
        # The same image always gets the same manifest digest, whatever its tag.
        self.registry[reference] = "sha256:" + self.images[reference].removeprefix("sha256:")[::-1]
        return self.registry[reference]

    def registry_digest(self, reference: str, credentials: Credentials | None) -> str | None:
        self.calls.append(("registry_digest", reference))
        if self.push_error:
            raise PushError(self.push_error, "check the registry")
        return self.registry.get(reference)

    def load(self, archive: Path) -> None:
        self.calls.append(("load", str(archive)))

    def tag(self, image: str, reference: str) -> None:
        self.calls.append(("tag", reference))
        if image in self.images:
            self.images[reference] = self.images[image]
            self.labels[reference] = dict(self.labels.get(image, {}))

    def build(self, request: BuildRequest) -> Iterator[BuildEvent]:
        self.calls.append(("build", request.tag))
        self.requests.append(request)
        self.dockerfiles.append(request.dockerfile.read_text())
        self.secrets_during_build.append({name: path.read_text() for name, path in request.secrets.items()})
        self.images[request.tag] = "sha256:" + f"{len(self.requests):064x}"
        self.labels[request.tag] = dict(request.labels)
        for index, (step, cached) in enumerate(self.build_steps, start=1):
            yield BuildEvent(Phase.BUILD, Kind.STEP, step, (index, len(self.build_steps)))
            if cached:
                yield BuildEvent(Phase.BUILD, Kind.CACHED, step)


@dataclass
class StartedBuild:
    """What the docker CLI's build is to the pipeline: events, and close() to stop it."""

    engine: "EagerEngine"
    events: Iterator[BuildEvent]
    dockerfile: Path
    stopped: bool = False

    def __iter__(self) -> "StartedBuild":
        return self

    def __next__(self) -> BuildEvent:
        return next(self.events)

    def close(self) -> None:  # as the real one: stopping a stopped build does nothing
        if not self.stopped:
            self.stopped = True
            self.engine.calls.append(("stopped", "" if self.dockerfile.exists() else "its Dockerfile already gone"))


@dataclass
class EagerEngine(FakeEngine):
    """A fake whose build starts when build() is called, as the docker CLI's does; it may fail to answer."""

    unreachable: bool = False
    started: list[StartedBuild] = field(default_factory=list)

    def image_id(self, reference: str) -> str | None:
        if self.unreachable:
            raise EngineUnavailableError("cannot reach the Docker engine at unix:///nowhere (no such socket)", "start it")
        return super().image_id(reference)

    def build(self, request: BuildRequest) -> Iterator[BuildEvent]:
        events = list(super().build(request))  # the fake's bookkeeping (the image, its labels) happens now
        self.calls[-1] = ("build started", request.tag)
        started = StartedBuild(self, iter(events), request.dockerfile)
        self.started.append(started)
        return started
