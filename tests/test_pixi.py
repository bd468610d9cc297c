"""pixi projects without Docker: the manifest (pixi.toml, pyproject.toml [tool.pixi]), pixi.lock read with py-rattler's
LockFile for one environment, staleness as pixi checks it, selection and binder/ precedence, plans, tasks, the
r2env.lock section, the staged package files, and every bad input as one line through the CLI."""

from __future__ import annotations

import hashlib
import re
import shutil
from pathlib import Path

import pytest

from buildpacks import load_buildpacks
from r2env.cli import main
from r2env.errors import BuildError, LockError, SpecError
from r2env.inspect import inspect
from r2env.lock.lockfile import CondaSection, Lock, LockedBase, LockedPackage, dump_lock, parse_lock
from r2env.parsers.pixi import PixiTask, parse_pixi_manifest
from r2env.pixi.lockfile import read_pixi_environment
from r2env.pixi.packages import environment_constraints, requirements_text, stage_pixi_packages
from r2env.pixi.tasks import task_script
from r2env.plan import PlanOptions, plan
from r2env.repo import DiskRepo, MemoryRepo
from r2env.select import select

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "pixi"
PYPI = "https://files.pythonhosted.org/packages/r2env-test/hello_pypi-0.2.0-py3-none-any.whl"


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    target = tmp_path / "pixi"
    shutil.copytree(EXAMPLE, target)
    return target


def one_line(captured: pytest.CaptureFixture[str]) -> str:
    output = captured.readouterr()
    lines = output.err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in output.err, output.err
    return lines[0]


# --- the manifest --------------------------------------------------------------------------------------------------


def test_the_example_manifest_has_two_environments_made_of_features() -> None:
    manifest = parse_pixi_manifest((EXAMPLE / "pixi.toml").read_text(), "pixi.toml", "pixi.lock")
    assert manifest is not None and manifest.environment_names == ("default", "latest")
    default, latest = manifest.environment("default"), manifest.environment("latest")
    assert dict(default.conda)["libgreet"] == "==1.0.0" and dict(latest.conda)["libgreet"] == "==1.1.0"  # the later feature wins
    assert default.pypi == (("hello-pypi", "==0.2.0"),)
    assert [t.name for t in default.tasks] == ["greet", "where"] and [t.name for t in latest.tasks] == ["greet", "where", "greeting"]
    assert latest.features == ("default", "latest") and default.channels == ("conda-forge",)


def test_tables_for_linux_64_apply_and_other_platforms_do_not() -> None:
    text = ('[workspace]\nchannels = ["conda-forge"]\nplatforms = ["linux-64", "osx-arm64"]\n[dependencies]\npython = "3.12.*"\n'
            '[target.linux-64.dependencies]\nlibstdcxx = ">=13"\n[target.osx-arm64.dependencies]\nlibcxx = "*"\n'
            '[feature.test.pypi-dependencies]\nPyTest_Cov = { version = ">=5", extras = ["toml"] }\nlocal = { path = "./pkg" }\n'
            '[environments]\ntest = { features = ["test"], no-default-feature = true }\n')
    manifest = parse_pixi_manifest(text, "pixi.toml", "pixi.lock")
    assert manifest is not None
    assert manifest.environment("default").conda == (("python", "3.12.*"), ("libstdcxx", ">=13"))
    test = manifest.environment("test")
    assert test.features == ("test",) and test.conda == () and test.pypi == (("pytest-cov", ">=5"), ("local", ""))


def test_pyproject_tool_pixi_is_a_manifest_and_its_project_dependencies_are_pypi_dependencies() -> None:
    text = ('[project]\nname = "demo"\ndependencies = ["requests>=2.31", "rich[jupyter]"]\n'
            '[tool.pixi.workspace]\nchannels = ["conda-forge"]\nplatforms = ["linux-64"]\n[tool.pixi.dependencies]\npython = "3.12.*"\n'
            '[tool.pixi.tasks]\nhello = "echo hi"\n')
    manifest = parse_pixi_manifest(text, "pyproject.toml", "pixi.lock")
    assert manifest is not None
    default = manifest.environment("default")
    assert default.pypi == (("requests", ">=2.31"), ("rich", "")) and default.conda == (("python", "3.12.*"),)
    assert default.tasks == (PixiTask("hello", "echo hi"),)
    assert parse_pixi_manifest('[project]\nname = "x"\n', "pyproject.toml", "pixi.lock") is None


@pytest.mark.parametrize(("text", "fragment"), [
    ('[dependencies]\n"Bad Name" = "*"\n', "[dependencies] 'Bad Name' is not a conda package name"),
    ("[dependencies]\npython = 3\n", "[dependencies] python = 3 is not a version spec"),
    ('[environments]\ntest = ["nope"]\n', "environment 'test' uses feature 'nope', which is not defined"),
    ('[environments]\nTest = []\n', "[environments] 'Test' is not an environment name"),
    ("[workspace\n", "pixi.toml: invalid TOML"),
    ('[tasks]\nx = 3\n', "[tasks] x must be a command or a table"),
])
def test_bad_manifests_are_one_error_naming_the_file(text: str, fragment: str) -> None:
    with pytest.raises(SpecError) as error:
        parse_pixi_manifest(text, "pixi.toml", "pixi.lock")
    assert fragment in str(error.value) and str(error.value).startswith("pixi.toml")


# --- pixi.lock, read with py-rattler ---------------------------------------------------------------------------------


def test_the_default_environment_is_read_exactly_from_the_lock() -> None:
    manifest = inspect(DiskRepo(EXAMPLE)).pixi
    assert manifest is not None
    lock = read_pixi_environment(EXAMPLE, manifest, "default")
    assert lock.environment == "default" and lock.platform == "linux-64" and lock.python_version == "3.11"
    assert {p.name: p.version for p in lock.packages} == {
        "hello-cli": "1.0.0", "hello-server-ext": "0.1.0", "libgreet": "1.0.0", "pyhello": "0.1.0", "python": "3.11.2", "tinytool": "0.1.0"}
    libgreet = next(p for p in lock.packages if p.name == "libgreet")
    assert libgreet.url == "https://conda.anaconda.org/conda-forge/noarch/libgreet-1.0.0-0.tar.bz2" and len(libgreet.sha256) == 64 and len(libgreet.md5) == 32
    (wheel,) = lock.pypi
    assert (wheel.name, wheel.version, wheel.url) == ("hello-pypi", "0.2.0", PYPI)
    assert lock.pip == (LockedPackage("hello-pypi", "0.2.0", (f"sha256:{wheel.sha256}",)),)
    assert next(p for p in read_pixi_environment(EXAMPLE, manifest, "latest").packages if p.name == "libgreet").version == "1.1.0"


def _lock_error(repo: Path, environment: str = "default") -> str:
    manifest = inspect(DiskRepo(repo)).pixi
    assert manifest is not None
    with pytest.raises((LockError, SpecError)) as error:
        read_pixi_environment(repo, manifest, environment)
    return str(error.value)


def test_a_stale_lock_is_reported_as_pixi_would(repo: Path) -> None:
    manifest = repo / "pixi.toml"
    original = manifest.read_text()
    manifest.write_text(original.replace('libgreet = "==1.0.0"', 'libgreet = ">=1.1"'))
    assert _lock_error(repo) == ("pixi.lock is stale for environment 'default': libgreet >=1.1 is declared but 1.0.0 is locked: "
                                 "run `pixi lock` and commit pixi.lock")
    manifest.write_text(original.replace("[pypi-dependencies]\n", '[pypi-dependencies]\nrich = "*"\n'))
    assert "PyPI package rich is declared but not locked" in _lock_error(repo)
    manifest.write_text(original.replace('channels = ["conda-forge"]', 'channels = ["bioconda"]'))
    assert "the manifest's channels (bioconda) are not the lock's (https://conda.anaconda.org/conda-forge)" in _lock_error(repo)
    manifest.write_text(original.replace('hello-pypi = "==0.2.0"', 'hello-pypi = "<0.2"'))
    assert "PyPI package hello-pypi <0.2 is declared but 0.2.0 is locked" in _lock_error(repo)


def test_lock_problems_are_one_line_each(repo: Path) -> None:
    lock = repo / "pixi.lock"
    text = lock.read_text()
    assert _lock_error(repo, "nope") == ("pixi.toml: there is no pixi environment 'nope' (there are: default, latest): "
                                         "choose one with --pixi-environment (or c.R2env.pixi_environment)")
    lock.write_text("version: 6\nenvironments: [\n")
    assert _lock_error(repo).startswith("pixi.lock: not a pixi lock file r2env can read (")
    lock.write_text(re.sub(r"(version: 0\.2\.0\n)  sha256: [0-9a-f]{64}\n", r"\1", text))
    assert _lock_error(repo).startswith("pixi.lock: PyPI package hello-pypi 0.2.0 has no sha256 hash")
    lock.write_text(text.replace(PYPI, "./pkg"))
    assert "PyPI package hello-pypi comes from './pkg', and r2env installs only PyPI packages locked as downloadable files" in _lock_error(repo)
    lock.write_text(text.replace("linux-64", "osx-64"))
    assert _lock_error(repo).startswith("pixi.lock: environment 'default' is not locked for linux-64 (only for osx-64)")
    lock.unlink()
    assert _lock_error(repo) == ("pixi.toml has no pixi.lock beside it: run `pixi lock` and commit pixi.lock: "
                                 "r2env installs pixi projects exactly from their lock and never solves them")


@pytest.mark.parametrize(("change", "code", "fragment"), [
    (lambda repo: (repo / "pixi.lock").unlink(), 4, "pixi.toml has no pixi.lock beside it: run `pixi lock`"),
    (lambda repo: (repo / "pixi.lock").write_text("version: 6\nenvironments: [\n"), 8, "pixi.lock: not a pixi lock file r2env can read"),
    (lambda repo: None, 4, "there is no pixi environment 'gpu' (there are: default, latest)"),
])
def test_bad_input_exits_with_one_line_through_the_cli(repo: Path, change: object, code: int, fragment: str, capsys: pytest.CaptureFixture[str]) -> None:
    change(repo)  # type: ignore[operator]
    extra = ["--pixi-environment", "gpu"] if "gpu" in fragment else []
    assert main(["plan", str(repo), *extra]) == code
    assert fragment in one_line(capsys)


def test_a_bad_environment_option_is_refused_before_anything_runs(repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plan", str(repo), "--pixi-environment", "Not A Name"]) == 2
    assert "--pixi-environment = 'Not A Name': is not a pixi environment name" in one_line(capsys)


# --- selection and plans ------------------------------------------------------------------------------------------


def test_pixi_comes_before_conda_and_binder_folder_takes_precedence() -> None:
    files = {"pixi.toml": (EXAMPLE / "pixi.toml").read_text(), "pixi.lock": "", "environment.yml": "dependencies: [x]\n", "requirements.txt": "x\n"}
    facts = inspect(MemoryRepo(files))
    selection = select(facts, load_buildpacks())
    assert selection.primary.name == "pixi"
    assert selection.detections[0].reason == "found pixi.toml and pixi.lock (environment.yml, requirements.txt ignored, as in repo2docker)"
    binder = select(inspect(MemoryRepo({**files, "binder/requirements.txt": "x\n"})), load_buildpacks())
    assert binder.primary.name == "python"  # binder/ is the folder in effect: the root's pixi.toml is not read
    in_binder = inspect(MemoryRepo({"binder/pixi.toml": files["pixi.toml"], "binder/pixi.lock": ""}))
    assert in_binder.pixi is not None and in_binder.pixi.lockfile == "binder/pixi.lock"


def _plan(repo: Path, options: PlanOptions = PlanOptions()) -> tuple[str, str]:
    facts = inspect(DiskRepo(repo))
    assert facts.pixi is not None
    conda = read_pixi_environment(repo, facts.pixi, options.pixi_environment)
    spec = plan(facts, select(facts, load_buildpacks()), options, conda=conda)
    stage = "\n".join(step.description for s in spec.build_stages for step in s.steps)
    return stage, spec.to_json()


def test_the_plan_installs_the_chosen_environment_and_says_it_adds_the_server(repo: Path) -> None:
    stage, spec = _plan(repo, PlanOptions(pixi_environment="latest"))
    assert "install 6 locked conda packages of environment 'latest'" in stage
    assert "install 1 locked PyPI packages from pixi.lock (their files, sha256 checked; no index)" in stage
    assert "add the notebook server to the environment (jupyterlab==4.6.6" in stage
    assert '"PIXI_ENVIRONMENT_NAME", "latest"' in spec.replace("[\n", "[").replace(",\n", ", ").replace("  ", "")


def test_an_environment_that_has_the_server_gets_none_added(repo: Path) -> None:
    lock = repo / "pixi.lock"
    # The lock's conda packages renamed: hello-server-ext stands in for jupyterlab (a server the environment has).
    lock.write_text(lock.read_text().replace("hello-server-ext", "jupyterlab"))
    (repo / "pixi.toml").write_text((repo / "pixi.toml").read_text().replace("hello-server-ext", "jupyterlab"))
    stage, _ = _plan(repo)
    assert "notebook server" not in stage


# --- tasks ------------------------------------------------------------------------------------------------------------


def test_a_task_runs_after_what_it_depends_on_from_the_manifests_folder() -> None:
    manifest = parse_pixi_manifest((EXAMPLE / "pixi.toml").read_text(), "binder/pixi.toml", "binder/pixi.lock")
    assert manifest is not None
    assert task_script(manifest, "default", "where").splitlines() == [
        "set -e", "( cd binder && hello-cli )",
        "( cd binder && python -c 'import sys, hello_pypi; print(sys.prefix, hello_pypi.__version__)' )"]
    assert task_script(manifest, "latest", "greeting").splitlines()[1] == "( cd binder && export LANG=C.UTF-8; cat $CONDA_PREFIX/share/libgreet/greeting.txt )"
    with pytest.raises(SpecError, match=r"environment 'default' has no task 'greeting' \(its tasks: greet, where\)"):
        task_script(manifest, "default", "greeting")


def test_a_task_cycle_is_refused() -> None:
    manifest = parse_pixi_manifest('[tasks]\na = { cmd = "x", depends-on = ["b"] }\nb = { cmd = "y", depends-on = ["a"] }\n', "pixi.toml", "pixi.lock")
    assert manifest is not None
    with pytest.raises(SpecError, match=r"cycle \(a -> b -> a\)"):
        task_script(manifest, "default", "a")


# --- r2env.lock and the staged files -------------------------------------------------------------------------------


def test_r2env_lock_refers_to_pixi_lock_by_path_digest_and_environment() -> None:
    pin = LockedPackage("py-rattler", "0.28.0", ("sha256:" + "a" * 64,))
    section = CondaSection("pixi.lock", "sha256:" + "b" * 64, "linux-64", (pin,), (), (), environment="latest")
    lock = Lock("0.1.0", {"pixi.toml": "sha256:" + "c" * 64}, LockedBase("debian:bookworm", "", "bookworm"), "3.11", (), (), {}, conda=section)
    text = dump_lock(lock)
    assert "  environment: latest\n" in text and "  lockfile: pixi.lock\n" in text
    assert parse_lock(text, "r2env.lock").conda == section
    conda_only = dump_lock(Lock("0.1.0", {}, LockedBase("debian:bookworm", "", "bookworm"), "3.11", (), (), {},
                                conda=CondaSection("conda-lock.yml", "sha256:" + "b" * 64, "linux-64", (pin,), ())))
    assert "environment:" not in conda_only  # conda locks are unchanged
    with pytest.raises(LockError, match="is not a pixi environment name"):
        parse_lock(text.replace("environment: latest", "environment: 'a b'"), "r2env.lock")


def test_the_package_files_are_fetched_through_the_channel_map_and_hash_checked(tmp_path: Path) -> None:
    from conda_channel import example_packages, write_channel
    from pixi_lock import WHEEL_NAME, write_pypi_index

    manifest = inspect(DiskRepo(EXAMPLE)).pixi
    assert manifest is not None
    lock = read_pixi_environment(EXAMPLE, manifest, "default")
    channel = write_channel(tmp_path / "channel", example_packages())
    index = write_pypi_index(tmp_path / "index")
    channel_map = (("https://conda.anaconda.org/conda-forge", channel.as_uri()),
                   ("https://files.pythonhosted.org/packages/r2env-test", (index / "files").as_uri()))
    staged = tmp_path / "staged"
    stage_pixi_packages(lock, channel_map, staged, "")
    wheel = staged / "pypi" / WHEEL_NAME
    assert hashlib.sha256(wheel.read_bytes()).hexdigest() == lock.pypi[0].sha256
    assert (staged / "pypi" / "requirements.txt").read_text() == requirements_text(lock) == \
        f"/r2env-conda/pypi/{WHEEL_NAME} --hash=sha256:{lock.pypi[0].sha256}\n"
    assert "hello-pypi==0.2.0\n" in environment_constraints(lock) and "python==" not in environment_constraints(lock)
    assert sorted(p.name for p in (staged / "pkgs").iterdir()) == sorted(p.filename for p in lock.packages)
    (index / "files" / WHEEL_NAME).write_bytes(b"tampered")
    with pytest.raises(BuildError, match=f"{WHEEL_NAME} from .* does not match its locked sha256"):
        stage_pixi_packages(lock, channel_map, tmp_path / "again", "")


@pytest.mark.parametrize("url", [
    "https://example.org/files/..%2F..%2Fetc%2Fevil-1.0-py3-none-any.whl",
    "https://example.org/files/.hidden.whl",
    "https://example.org/files/hello_pypi-0.2.0.exe",
])
def test_a_pypi_file_name_that_is_not_a_plain_wheel_or_sdist_is_refused(repo: Path, url: str) -> None:
    lock = repo / "pixi.lock"
    lock.write_text(lock.read_text().replace(PYPI, url))
    assert "PyPI package hello-pypi has an unusable URL" in _lock_error(repo)


def test_a_changed_pixi_lock_or_environment_makes_r2env_lock_stale(repo: Path) -> None:
    from r2env.lock.locking import check_fresh, current_inputs
    from r2env.lock.lockfile import file_digest

    facts = inspect(DiskRepo(repo))
    options = PlanOptions()
    section = CondaSection("pixi.lock", file_digest((repo / "pixi.lock").read_text()), "linux-64", (), (), (), environment="default")
    lock = Lock("0.1.0", current_inputs(repo, facts, options), LockedBase("debian:bookworm", "", "bookworm"), "3.11", (), (), {}, conda=section)
    check_fresh(lock, repo, facts, options)
    with pytest.raises(LockError, match="r2env.lock is stale: the option pixi-environment changed"):
        check_fresh(lock, repo, facts, PlanOptions(pixi_environment="latest"))
    (repo / "pixi.lock").write_text((repo / "pixi.lock").read_text() + "\n")
    with pytest.raises(LockError, match="r2env.lock is stale: pixi.lock changed"):
        check_fresh(lock, repo, facts, options)
