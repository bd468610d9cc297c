"""Resolving: uv's compiled output, the server's closure, the argv uv gets (the image's Python and platform,
not the host's), and apt's simulation. uv and the engine are fakes with canned output recorded from the real tools."""

from __future__ import annotations

import re
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import pytest

from r2env.errors import LockError
from r2env.lock.resolve import (
    Resolution,
    parse_apt_simulation,
    parse_compiled,
    resolve_apt,
    resolve_python,
    server_closure,
    target_platform,
)

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "lock"
# `uv pip compile --generate-hashes --no-header --quiet --no-config --python-version 3.13
#  --python-platform x86_64-manylinux_2_40` of: jupyter-core==5.7.2 and -r requirements.txt, which holds
# requests==2.32.3, platformdirs, a win32-only and a <3.11-only requirement, and `-e .` (demo-pkg, needs platformdirs).
COMPILED = (FIXTURES / "compiled.txt").read_text()
# The same tool with --universal for Python 3.10: markers on the pins.
UNIVERSAL = (FIXTURES / "compiled-universal.txt").read_text()
# `apt-get install -s -q --no-install-recommends graphviz libxml2` on bookworm (libxml2 and libxml2-dev upgraded).
APT_SIMULATION = (FIXTURES / "apt-simulation.txt").read_text()
# uv's stderr for requests==2.32.3 with urllib3<1.
UV_CONFLICT = (FIXTURES / "uv-conflict.txt").read_text()
HASH = re.compile(r"sha256:[0-9a-f]{64}")


@dataclass
class FakeRunner:
    """Stands in for run_tool: records argv, cwd and the resolver's input file, returns canned output."""

    stdout: str = ""
    stderr: str = ""
    returncode: int = 0
    missing: bool = False  # the tool is not installed
    calls: list[tuple[list[str], Path]] = field(default_factory=list)
    inputs: list[str] = field(default_factory=list)

    def __call__(self, argv: Sequence[str], cwd: Path) -> subprocess.CompletedProcess[str]:
        self.calls.append((list(argv), cwd))
        if self.missing:
            raise FileNotFoundError(2, "No such file or directory", argv[0])
        if list(argv[:3]) == ["uv", "pip", "compile"]:
            self.inputs.append(Path(argv[3]).read_text(encoding="utf-8"))
        return subprocess.CompletedProcess(list(argv), self.returncode, self.stdout, self.stderr)


def option(argv: list[str], name: str) -> str | None:
    return argv[argv.index(name) + 1] if name in argv else None


# --- parse_compiled --------------------------------------------------------------------------------------------


def test_compiled_output_gives_every_pin_in_order() -> None:
    resolution = parse_compiled(COMPILED)
    assert [(p.name, p.version) for p in resolution.packages] == [
        ("certifi", "2026.10.19.post1"),
        ("charset-normalizer", "3.5.3"),
        ("idna", "3.20"),
        ("jupyter-core", "5.7.2"),
        ("platformdirs", "4.14.8"),
        ("requests", "2.32.3"),
        ("traitlets", "5.16.1"),
        ("urllib3", "2.8.0"),
    ]


def test_compiled_output_keeps_every_hash() -> None:
    packages = {p.name: p for p in parse_compiled(COMPILED).packages}
    assert sum(len(p.hashes) for p in packages.values()) == len(HASH.findall(COMPILED)) == 185
    assert len(packages["charset-normalizer"].hashes) == 172
    assert packages["certifi"].hashes == ("sha256:1324c476b4811eff41a8bc2122cd0bbd4d9c7234c725446d99ab1612b3a7fdd2",)
    assert all(HASH.fullmatch(h) for p in packages.values() for h in p.hashes)


def test_via_comments_give_each_package_its_parents() -> None:
    parents = parse_compiled(COMPILED).parents
    assert parents["certifi"] == {"requests"}  # "# via requests"
    assert parents["jupyter-core"] == {""}  # "# via -r /tmp/uvs/small.in": a top-level requirement
    assert parents["requests"] == {""}  # "# via -r requirements.txt"
    assert parents["platformdirs"] == {"", "demo-pkg", "jupyter-core"}  # multi-line "# via"


def test_the_editable_repository_is_not_a_pin() -> None:
    resolution = parse_compiled(COMPILED)
    assert "demo-pkg" not in {p.name for p in resolution.packages}
    assert COMPILED.startswith("-e .\n")


@pytest.mark.parametrize(
    "local",
    [
        "-e .",
        "-e file:///srv/repo/sub",
        "-e /srv/repo",
        "./vendored/pkg",
        "/srv/repo",
        "file:///srv/repo",
        "mypkg @ file:///srv/repo",
        "otherpkg @ https://example.org/otherpkg-1.0-py3-none-any.whl",
    ],
)
def test_local_and_direct_references_are_skipped_with_their_via_lines(local: str) -> None:
    text = (
        "six==1.17.0 \\\n"
        "    --hash=sha256:4721f391ed90541fddacab5acf947aa0d3dc7d27b2e1e8eda2be8970586c3274 \\\n"
        "    --hash=sha256:ff70335d468e7eb6ec65b95b99d3a2836546063f63acc5171de367e834932a81\n"
        "    # via -r requirements.txt\n"
        f"{local}\n"
        "    # via\n"
        "    #   -r requirements.txt\n"
        "    #   some-parent\n"
        "tabulate==0.9.0 \\\n"
        "    --hash=sha256:0095b12bf5966de529c0feb1fa08671671b3368eec77d7ef7ab114be2c068b3c\n"
        "    # via -r requirements.txt\n"
    )
    resolution = parse_compiled(text)
    assert [(p.name, p.version, len(p.hashes)) for p in resolution.packages] == [("six", "1.17.0", 2), ("tabulate", "0.9.0", 1)]
    assert resolution.parents == {"six": {""}, "tabulate": {""}}


def test_markers_are_not_part_of_the_version_and_their_hashes_are_kept() -> None:
    packages = parse_compiled(UNIVERSAL).packages
    found = {(p.name, p.version): len(p.hashes) for p in packages}
    assert found[("colorama", "0.4.6")] == 2  # "colorama==0.4.6 ; sys_platform == 'win32' \"
    assert found[("exceptiongroup", "1.3.2")] == 2  # "; python_full_version < '3.11'"
    assert found[("pywin32", "312")] == 21  # "; platform_python_implementation != 'PyPy' and sys_platform == 'win32'"
    assert found[("platformdirs", "4.12.4")] == 2 and found[("platformdirs", "4.14.8")] == 2
    assert all(";" not in p.version and " " not in p.version for p in packages)


def test_markers_keep_each_pin_to_its_platform_and_python() -> None:
    """uv's universal output forks platformdirs and has Windows-only pins: for the image only one of each applies."""
    from packaging.markers import Marker

    packages = parse_compiled(UNIVERSAL).packages

    def applying(python: str, platform: str) -> list[tuple[str, str]]:
        environment = {"python_version": python, "python_full_version": f"{python}.0", "sys_platform": platform,
                       "platform_python_implementation": "CPython"}
        return [(p.name, p.version) for p in packages if not getattr(p, "marker", "") or Marker(getattr(p, "marker")).evaluate(environment)]

    assert applying("3.11", "linux") == [("jupyter-core", "5.7.2"), ("platformdirs", "4.14.8"), ("traitlets", "5.16.1")]
    assert applying("3.10", "linux") == [("exceptiongroup", "1.3.2"), ("jupyter-core", "5.7.2"), ("platformdirs", "4.12.4"),
                                         ("traitlets", "5.16.1"), ("typing-extensions", "4.16.0")]
    assert ("pywin32", "312") in applying("3.11", "win32") and ("colorama", "0.4.6") in applying("3.11", "win32")


def test_names_are_canonical() -> None:
    text = (
        "Jinja2==3.1.4 \\\n    --hash=sha256:" + "a" * 64 + "\n    # via Flask_Login\n"
        "zope.interface==7.0 \\\n    --hash=sha256:" + "b" * 64 + "\n    # via -r requirements.txt\n"
    )
    resolution = parse_compiled(text)
    assert [p.name for p in resolution.packages] == ["jinja2", "zope-interface"]
    assert resolution.parents["jinja2"] == {"flask-login"}


def test_a_package_without_via_lines_or_hashes_still_parses() -> None:
    resolution = parse_compiled("six==1.17.0\ntabulate==0.9.0\n")
    assert [(p.name, p.version, p.hashes) for p in resolution.packages] == [("six", "1.17.0", ()), ("tabulate", "0.9.0", ())]


def test_empty_output_is_an_empty_resolution() -> None:
    assert parse_compiled("") == Resolution((), {})


# --- server_closure --------------------------------------------------------------------------------------------


def graph(parents: dict[str, set[str]]) -> Resolution:
    return Resolution((), {name: frozenset(p) for name, p in parents.items()})


def test_server_closure_takes_what_the_server_needs_transitively() -> None:
    resolution = graph({
        "jupyterlab": {""},
        "jupyter-server": {"jupyterlab"},
        "tornado": {"jupyter-server"},
        "requests": {"", "jupyterlab-server"},  # the user asks for it, and the server needs it too
        "jupyterlab-server": {"jupyterlab"},
        "idna": {"requests"},  # shared through requests
        "pandas": {""},  # the user's alone
        "numpy": {"pandas"},
        "pytz": {"pandas"},
    })
    closure = server_closure(resolution, ["jupyterlab"])
    assert closure == {"jupyterlab", "jupyter-server", "tornado", "jupyterlab-server", "requests", "idna"}


def test_server_closure_on_real_uv_output() -> None:
    resolution = parse_compiled(COMPILED)
    assert server_closure(resolution, ["jupyter-core"]) == {"jupyter-core", "platformdirs", "traitlets"}


def test_server_closure_normalizes_the_server_name() -> None:
    resolution = parse_compiled(COMPILED)
    assert server_closure(resolution, ["Jupyter_Core"]) == {"jupyter-core", "platformdirs", "traitlets"}


def test_server_closure_of_an_unknown_server_is_only_its_name() -> None:
    assert server_closure(graph({"six": {""}}), ["jupyterlab"]) == {"jupyterlab"}


# --- target_platform and resolve_python ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("suite", "machine", "expected"),
    [
        ("trixie", "x86_64", "x86_64-manylinux_2_40"),
        ("bookworm", "x86_64", "x86_64-manylinux_2_36"),
        ("bookworm", "amd64", "x86_64-manylinux_2_36"),
        ("trixie", "arm64", "aarch64-manylinux_2_40"),
        ("trixie", "aarch64", "aarch64-manylinux_2_40"),
        ("sid", "x86_64", "x86_64-manylinux_2_36"),
    ],
)
def test_target_platform_is_the_suites_glibc(suite: str, machine: str, expected: str) -> None:
    assert target_platform(suite, machine) == expected


@pytest.fixture
def x86_64(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("r2env.lock.resolve.platform.machine", lambda: "x86_64")


@pytest.mark.usefixtures("x86_64")
def test_resolve_python_asks_uv_for_the_images_python_and_platform(tmp_path: Path) -> None:
    runner = FakeRunner(stdout=COMPILED)
    resolve_python(["jupyter-core==5.7.2"], tmp_path, "3.13", "trixie", runner=runner)
    ((argv, cwd),) = runner.calls
    assert argv[:4] == ["uv", "pip", "compile", argv[3]] and argv[3].endswith(".in")
    assert option(argv, "--python-version") == "3.13"
    assert option(argv, "--python-platform") == "x86_64-manylinux_2_40"
    assert {"--generate-hashes", "--no-config", "--no-header"} <= set(argv)
    assert "--index-url" not in argv and "--extra-index-url" not in argv
    assert cwd == tmp_path


@pytest.mark.usefixtures("x86_64")
def test_resolve_python_for_bookworm_targets_manylinux_2_36(tmp_path: Path) -> None:
    runner = FakeRunner(stdout=COMPILED)
    resolve_python(["six"], tmp_path, "3.11", "bookworm", runner=runner)
    argv = runner.calls[0][0]
    assert option(argv, "--python-version") == "3.11"
    assert option(argv, "--python-platform") == "x86_64-manylinux_2_36"


def test_resolve_python_passes_the_target_python_not_the_hosts(tmp_path: Path) -> None:
    host = f"{sys.version_info.major}.{sys.version_info.minor}"
    target = "3.12" if host != "3.12" else "3.10"
    runner = FakeRunner(stdout="")
    resolve_python(["six"], tmp_path, target, "bookworm", runner=runner)
    argv = runner.calls[0][0]
    assert option(argv, "--python-version") == target
    assert host not in argv and "--python" not in argv  # never the host interpreter


def test_resolve_python_passes_the_index_options(tmp_path: Path) -> None:
    runner = FakeRunner(stdout="")
    resolve_python(["six"], tmp_path, "3.11", "bookworm", "https://idx.example/simple", "https://extra.example/simple", runner=runner)
    argv = runner.calls[0][0]
    assert option(argv, "--index-url") == "https://idx.example/simple"
    assert option(argv, "--extra-index-url") == "https://extra.example/simple"


def test_resolve_python_writes_the_requirement_lines_to_the_input_file(tmp_path: Path) -> None:
    runner = FakeRunner(stdout=COMPILED)
    lines = ["jupyter-core==5.7.2", f"-r {tmp_path / 'requirements.txt'}", f"-c {tmp_path / 'constraints.txt'}", str(tmp_path)]
    resolution = resolve_python(lines, tmp_path, "3.13", "trixie", runner=runner)
    assert runner.inputs == ["\n".join(lines) + "\n"]
    assert not Path(runner.calls[0][0][3]).exists()  # the scratch input is gone
    assert resolution == parse_compiled(COMPILED)


def test_a_resolver_failure_is_a_lock_error_with_uvs_explanation(tmp_path: Path) -> None:
    runner = FakeRunner(returncode=1, stderr=UV_CONFLICT)
    with pytest.raises(LockError) as raised:
        resolve_python(["requests==2.32.3", "urllib3<1"], tmp_path, "3.13", "trixie", runner=runner)
    message = raised.value.message
    assert message.startswith("cannot resolve the Python packages: error: No solution found")
    assert "you require urllib3<1" in message
    assert "\n" not in message and len(message) < 1000
    assert raised.value.exit_code == 8


def test_a_long_resolver_failure_is_cut_to_a_few_lines(tmp_path: Path) -> None:
    stderr = "\n".join(f"  cause {i}: something about package-{i}" for i in range(200))
    with pytest.raises(LockError) as raised:
        resolve_python(["x"], tmp_path, "3.13", "trixie", runner=FakeRunner(returncode=2, stderr=stderr))
    assert "package-0" in raised.value.message and "package-5" in raised.value.message
    assert "package-6" not in raised.value.message


def test_a_silent_resolver_failure_names_the_exit_status(tmp_path: Path) -> None:
    with pytest.raises(LockError, match="exit status 2"):
        resolve_python(["x"], tmp_path, "3.13", "trixie", runner=FakeRunner(returncode=2))


def test_missing_uv_is_a_lock_error_saying_so(tmp_path: Path) -> None:
    with pytest.raises(LockError) as raised:
        resolve_python(["six"], tmp_path, "3.13", "trixie", runner=FakeRunner(missing=True))
    assert "uv is not installed" in raised.value.message
    assert "pip install uv" in raised.value.hint
    assert raised.value.__cause__ is None and raised.value.__suppress_context__


# --- apt -------------------------------------------------------------------------------------------------------


def test_apt_simulation_gives_every_installed_packages_new_version() -> None:
    versions = parse_apt_simulation(APT_SIMULATION)
    assert len(versions) == 12
    assert versions["graphviz"] == "2.42.2-7+deb12u1"
    assert versions["libgts-0.7-5"] == "0.7.6+darcs121130-5+b1"
    assert versions["libltdl7"] == "2.4.7-7~deb12u1"
    # "Inst libxml2 [2.9.14+dfsg-1.3~deb12u5] (2.9.14+dfsg-1.3~deb12u6 ...)": the version installed, not the old one
    assert versions["libxml2"] == "2.9.14+dfsg-1.3~deb12u6"
    assert versions["libxml2-dev"] == "2.9.14+dfsg-1.3~deb12u6"


def test_apt_simulation_reads_only_inst_lines() -> None:
    text = (
        "Reading package lists...\n"
        "The following NEW packages will be installed:\n  jq libjq1\n"
        "Inst libonig5 (6.9.8-1 Debian:12.15/oldstable [amd64])\n"
        "Inst login [1:4.13+dfsg1-1] (1:4.13+dfsg1-1+b1 Debian:12.15/oldstable [amd64])\n"
        "Conf libonig5 (6.9.8-1 Debian:12.15/oldstable [amd64])\n"
        "Remv something [1.0]\n"
    )
    assert parse_apt_simulation(text) == {"libonig5": "6.9.8-1", "login": "1:4.13+dfsg1-1+b1"}


@dataclass
class AptEngine:
    """The one Engine method resolve_apt uses."""

    code: int = 0
    output: str = APT_SIMULATION
    calls: list[tuple[str, list[str]]] = field(default_factory=list)

    def run(self, image: str, command: list[str]) -> tuple[int, str]:
        self.calls.append((image, list(command)))
        return self.code, self.output


def test_resolve_apt_simulates_the_install_in_the_base_image() -> None:
    engine = AptEngine()
    versions = resolve_apt(engine, "debian:bookworm", ["graphviz", "libxml2"])  # type: ignore[arg-type]
    ((image, command),) = engine.calls
    assert image == "debian:bookworm"
    assert command[:2] == ["bash", "-c"]
    assert "apt-get update" in command[2]
    assert command[2].endswith("apt-get install -s -q --no-install-recommends graphviz libxml2")
    assert versions == parse_apt_simulation(APT_SIMULATION)


def test_resolve_apt_of_nothing_runs_nothing() -> None:
    engine = AptEngine()
    assert resolve_apt(engine, "debian:bookworm", []) == {}  # type: ignore[arg-type]
    assert engine.calls == []


def test_an_apt_failure_is_a_lock_error_naming_the_packages_and_apts_error() -> None:
    output = "Reading package lists...\nBuilding dependency tree...\nReading state information...\nE: Unable to locate package nosuchpkg-zz\n"
    engine = AptEngine(code=100, output=output)
    with pytest.raises(LockError) as raised:
        resolve_apt(engine, "debian:bookworm", ["graphviz", "nosuchpkg-zz"])  # type: ignore[arg-type]
    assert "graphviz nosuchpkg-zz" in raised.value.message
    assert "E: Unable to locate package nosuchpkg-zz" in raised.value.message
    assert "Reading package lists" not in raised.value.message
    assert "apt.txt" in raised.value.hint


def test_an_apt_failure_without_an_error_line_shows_the_last_lines() -> None:
    output = "\n".join(f"line {i}" for i in range(10)) + "\n"
    with pytest.raises(LockError) as raised:
        resolve_apt(AptEngine(code=1, output=output), "debian:bookworm", ["jq"])  # type: ignore[arg-type]
    assert "line 9" in raised.value.message and "line 6" not in raised.value.message
