"""Locking and installing a conda environment without conda or Docker: conda-lock and uv through a fake runner,
the engine faked, the channel written by the project's own fixture code (integration/conda_channel.py)."""

from __future__ import annotations

import hashlib
import shutil
import ssl
import subprocess
import sys
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Sequence

import pytest

from conda_channel import example_packages, write_channel
from fake_engine import FakeEngine
from buildpacks import load_buildpacks
from r2env.conda.installer import _verify
from r2env.conda.locking import conda_lock_argv, conda_platform, solver_arguments, solver_explanation
from r2env.conda.packages import map_url, package_image, stage_packages
from r2env.options import parse_channel_map
from r2env.errors import BuildError, LockError, UsageError
from r2env.inspect import inspect
from r2env.lock.lockfile import CondaSection, Lock, LockedBase, LockedPackage, dump_lock, file_digest, parse_lock
from r2env.lock.locking import LockResult, check_fresh, read_conda_lock
from r2env.lock.making import make_lock
from r2env.parsers.conda_lock import parse_conda_lock
from r2env.plan import PlanOptions, plan
from r2env.render import render_dockerfile
from r2env.repo import DiskRepo
from r2env.select import select

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).resolve().parent / "fixtures"
CONDA_LOCK = (FIXTURES / "conda" / "conda-lock.yml").read_text()
UNSATISFIABLE = (FIXTURES / "conda" / "conda-lock-unsatisfiable.txt").read_text()
SERVER_ONLY = (FIXTURES / "lock" / "compiled-server.txt").read_text()
FIXTURE_CHANNEL = "file:///r2env-test-channel"
H = "--hash=sha256:" + "1" * 64
COMPILED = {
    "py-rattler": f"py-rattler==0.28.0 \\\n    {H}\n",
    "ipykernel": f"ipykernel==7.4.0 \\\n    {H}\n    # via -r in\ncomm==0.2.3 \\\n    {H}\n    # via ipykernel\n",
}
SERVER = "jupyter-core==5.7.2"


@dataclass
class FakeTools:
    """conda-lock writes the fixture lock (or fails like the real one); uv compiles from canned output."""

    conda_lock: str = CONDA_LOCK
    conda_code: int = 0
    calls: list[list[str]] = field(default_factory=list)

    def __call__(self, argv: Sequence[str], cwd: Path) -> subprocess.CompletedProcess[str]:
        argv = list(argv)
        self.calls.append(argv)
        if argv[:4] == [sys.executable, "-m", "conda_lock", "lock"]:
            if self.conda_code:
                return subprocess.CompletedProcess(argv, self.conda_code, "", UNSATISFIABLE)
            Path(argv[argv.index("--lockfile") + 1]).write_text(self.conda_lock)
            return subprocess.CompletedProcess(argv, 0, "", "")
        if argv[:3] == ["uv", "pip", "compile"]:
            wanted = Path(argv[3]).read_text()
            output = next((text for name, text in COMPILED.items() if wanted.startswith(name)), SERVER_ONLY)
            return subprocess.CompletedProcess(argv, 0, output, "")
        raise AssertionError(f"unexpected command {argv}")


def which(name: str) -> str | None:
    return "/opt/bin/micromamba" if name == "micromamba" else None


@pytest.fixture
def repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setattr("r2env.conda.locking.shutil.which", which)
    monkeypatch.setattr("r2env.lock.making.conda_platform", lambda: "linux-64")
    root = tmp_path / "repo"
    shutil.copytree(ROOT / "examples" / "environment-yml", root)
    return root


def lock_repo(root: Path, tools: FakeTools | None = None, **options: object) -> tuple[Lock, str, FakeTools]:
    tools = tools or FakeTools()
    plan_options = PlanOptions(server_requirement=SERVER, **options)  # type: ignore[arg-type]
    facts = inspect(DiskRepo(root))
    spec = plan(facts, select(facts, load_buildpacks()), plan_options)
    events = list(make_lock(root, facts, spec, plan_options, FakeEngine(), runner=tools, conda_pypi_lookup="/srv/lookup.json"))
    result = events[-1]
    assert isinstance(result, LockResult) and result.lock is not None
    return result.lock, result.conda_lock, tools


# --- locking -----------------------------------------------------------------------------------------------------


def test_lock_runs_conda_lock_with_the_solver_the_channels_and_the_lookup(repo: Path) -> None:
    lock, text, tools = lock_repo(repo, conda_channels=("https://mirror.example/conda-forge",))
    conda_call = next(argv for argv in tools.calls if argv[1:3] == ["-m", "conda_lock"])
    assert conda_call[:7] == [sys.executable, "-m", "conda_lock", "lock", "--micromamba", "--conda", "/opt/bin/micromamba"]
    assert conda_call[7:11] == ["-f", str(repo / "binder" / "environment.yml"), "-p", "linux-64"]
    assert conda_call[-4:] == ["-c", "https://mirror.example/conda-forge", "--pypi_to_conda_lookup_file", "/srv/lookup.json"]
    assert text == CONDA_LOCK
    assert lock.conda == CondaSection(
        "binder/conda-lock.yml", file_digest(CONDA_LOCK), "linux-64",
        (LockedPackage("py-rattler", "0.28.0", ("sha256:" + "1" * 64,)),),
        (),
        lock.conda.server,
    )
    # The environment's packages are conda-lock's: r2env resolves only the server the environment runs (for its
    # Python, around its packages), nothing for a /srv/venv the image does not have, and requirements.txt is ignored.
    assert "jupyter-core" in [p.name for p in lock.conda.server]
    assert lock.packages == () and lock.server == () and lock.python == "3.11"
    compiled = [Path(argv[3]).read_text() if Path(argv[3]).exists() else "" for argv in tools.calls if argv[:3] == ["uv", "pip", "compile"]]
    assert len(compiled) == 2
    server_call = next(argv for argv in tools.calls if argv[:3] == ["uv", "pip", "compile"] and "3.11" in argv and "--python-version" in argv and argv != tools.calls[0])
    assert server_call[server_call.index("--python-version") + 1] == "3.11"


def test_the_server_is_resolved_around_the_environments_own_packages(repo: Path) -> None:
    seen: list[str] = []

    class Recording(FakeTools):
        def __call__(self, argv: Sequence[str], cwd: Path) -> subprocess.CompletedProcess[str]:
            if list(argv[:3]) == ["uv", "pip", "compile"]:
                wanted = Path(argv[3]).read_text()
                seen.append(wanted)
                constraint = next((line[3:] for line in wanted.splitlines() if line.startswith("-c ")), "")
                if constraint:
                    seen.append(Path(constraint).read_text())
            return super().__call__(argv, cwd)

    lock, _, _ = lock_repo(repo, Recording())
    constraints = next(text for text in seen if "tabulate==0.9.0" in text and not text.startswith(SERVER))
    # Conda packages and the pip: pins hold the server's resolution; python itself is not a constraint.
    assert "libgreet==1.0.0" in constraints and "pyhello==0.1.0" in constraints and "python==" not in constraints
    assert lock.conda is not None and not {"tabulate", "libgreet"} & {p.name for p in lock.conda.server}


def test_an_environment_too_old_for_the_server_is_its_kernel(repo: Path) -> None:
    old = CONDA_LOCK.replace("version: 3.11.2", "version: 3.8.10")
    lock, _, _ = lock_repo(repo, FakeTools(conda_lock=old))
    assert lock.conda is not None and lock.conda.server == ()
    assert [p.name for p in lock.conda.kernel] == ["ipykernel", "comm"]
    # The server's own environment (/srv/venv) is Debian's Python, resolved as for any repository.
    assert lock.python == "3.11" and "jupyter-core" in [p.name for p in lock.server]


def test_an_environment_without_python_is_refused_at_lock_time(repo: Path) -> None:
    without = CONDA_LOCK.replace("- name: python\n", "- name: notpython\n", 1)
    with pytest.raises(LockError, match=r"binder/environment.yml: the environment has no python package"):
        lock_repo(repo, FakeTools(conda_lock=without))


def test_the_environments_channels_are_used_without_an_override(repo: Path) -> None:
    _, _, tools = lock_repo(repo)
    conda_call = next(argv for argv in tools.calls if argv[1:3] == ["-m", "conda_lock"])
    assert conda_call[conda_call.index("-c") + 1] == "conda-forge"


def test_an_environment_that_declares_jupyterlab_gets_no_server_added(repo: Path) -> None:
    environment = repo / "binder" / "environment.yml"
    environment.write_text(environment.read_text().replace("  - tinytool\n", "  - tinytool\n  - jupyter_core\n"))  # the tests' server requirement
    lock, _, tools = lock_repo(repo)
    assert lock.conda is not None and lock.conda.server == () and lock.conda.kernel == ()
    assert len([argv for argv in tools.calls if argv[:3] == ["uv", "pip", "compile"]]) == 1  # py-rattler only


def test_an_r_environment_gets_irkernel_in_a_file_of_r2envs_own(repo: Path) -> None:
    environment = repo / "binder" / "environment.yml"
    environment.write_text(environment.read_text().replace("  - tinytool\n", "  - tinytool\n  - r-base=4.2\n"))
    added: list[str] = []

    class Recording(FakeTools):
        def __call__(self, argv: Sequence[str], cwd: Path) -> subprocess.CompletedProcess[str]:
            files = [argv[i + 1] for i, word in enumerate(argv) if word == "-f"]
            added.extend(Path(f).read_text() for f in files[1:])
            return super().__call__(argv, cwd)

    _, _, tools = lock_repo(repo, Recording())
    conda_call = next(argv for argv in tools.calls if argv[1:3] == ["-m", "conda_lock"])
    # The user's file first, as written; r2env's additions beside it (conda-lock merges them), without channels.
    assert conda_call[conda_call.index("-f") + 1] == str(environment)
    assert added == ["dependencies:\n  - r-irkernel\n"]


@pytest.mark.parametrize(("dependencies", "added"), [
    ("  - r-base\n", ("r-irkernel",)),
    ("  - r-ggplot2>=3\n", ("r-irkernel",)),  # any r- package, as repo2docker decides
    ("  - r-base\n  - r-irkernel=1.3\n", ()),  # declared: the user's pin stands
    ("  - rust\n", ()),
])
def test_what_r2env_adds_to_an_r_environment(repo: Path, dependencies: str, added: tuple[str, ...]) -> None:
    environment = repo / "binder" / "environment.yml"
    environment.write_text(environment.read_text().replace("  - tinytool\n", "  - tinytool\n" + dependencies))
    facts = inspect(DiskRepo(repo))
    assert facts.conda_environment is not None and facts.conda_environment.added_for_r == added


def test_an_unsatisfiable_environment_is_one_lock_error_with_the_solvers_explanation(repo: Path) -> None:
    with pytest.raises(LockError) as raised:
        lock_repo(repo, FakeTools(conda_code=1))
    message = str(raised.value)
    assert message.startswith("binder/environment.yml: cannot lock the conda environment: Could not lock the environment for platform linux-64")
    assert "No candidates were found for nosuchpkg" in message and "Traceback" not in message and "\n" not in message


def test_without_a_solver_on_path_locking_says_what_to_install() -> None:
    with pytest.raises(LockError, match="none of micromamba, mamba or conda is on PATH"):
        solver_arguments(lambda name: None)
    assert solver_arguments(lambda name: f"/bin/{name}" if name == "conda" else None) == ["--no-mamba", "--conda", "/bin/conda"]


def test_conda_lock_argv_without_override_or_lookup() -> None:
    argv = conda_lock_argv(Path("/r/environment.yml"), Path("/t/conda-lock.yml"), "linux-aarch64", ["conda-forge"], ["--mamba", "--conda", "mamba"])
    assert argv == [sys.executable, "-m", "conda_lock", "lock", "--mamba", "--conda", "mamba", "-f", "/r/environment.yml", "-p", "linux-aarch64",
                    "--lockfile", "/t/conda-lock.yml", "-c", "conda-forge"]


@pytest.mark.parametrize(("machine", "platform"), [("x86_64", "linux-64"), ("aarch64", "linux-aarch64"), ("arm64", "linux-aarch64")])
def test_the_conda_platform_follows_the_machine(machine: str, platform: str) -> None:
    assert conda_platform(machine) == platform


def test_solver_explanation_drops_the_traceback() -> None:
    assert solver_explanation(UNSATISFIABLE) == (
        "Could not lock the environment for platform linux-64 Cannot solve the request because of: No candidates were found for nosuchpkg *."
    )


# --- r2env.lock's conda section ------------------------------------------------------------------------------------


def test_a_lock_with_a_conda_section_round_trips(repo: Path) -> None:
    lock, _, _ = lock_repo(repo)
    assert parse_lock(dump_lock(lock), "binder/r2env.lock") == lock
    assert "\nconda:\n  lockfile: binder/conda-lock.yml\n" in dump_lock(lock)


def test_a_conda_section_without_hashes_is_a_lock_error(repo: Path) -> None:
    lock, _, _ = lock_repo(repo)
    text = dump_lock(lock).replace("  installer:\n  - name: py-rattler\n    version: 0.28.0\n    hashes:\n", "  installer:\n  - name: py-rattler\n    version: 0.28.0\n    hashes: []\n    x:\n")
    with pytest.raises(LockError, match=r"conda.installer\[0\].hashes: is empty"):
        parse_lock(text, "binder/r2env.lock")


def test_editing_or_losing_conda_lock_yml_makes_r2env_lock_stale(repo: Path) -> None:
    lock, text, _ = lock_repo(repo)
    (repo / "binder" / "conda-lock.yml").write_text(text)
    facts = inspect(DiskRepo(repo))
    options = PlanOptions(server_requirement=SERVER)
    check_fresh(lock, repo, facts, options)
    (repo / "binder" / "conda-lock.yml").write_text(text.replace("version: 1.0.0", "version: 1.1.0", 1))
    with pytest.raises(LockError, match=r"binder/r2env.lock is stale: binder/conda-lock.yml changed"):
        check_fresh(lock, repo, facts, options)
    (repo / "binder" / "conda-lock.yml").unlink()
    with pytest.raises(LockError, match=r"binder/conda-lock.yml changed"):
        check_fresh(lock, repo, facts, options)


def test_the_conda_channel_option_does_not_make_a_lock_stale(repo: Path) -> None:
    lock, text, _ = lock_repo(repo, conda_channels=("https://mirror.example/conda-forge",))
    (repo / "binder" / "conda-lock.yml").write_text(text)
    check_fresh(lock, repo, inspect(DiskRepo(repo)), PlanOptions(server_requirement=SERVER))


# --- channel mapping -----------------------------------------------------------------------------------------------

MAP = parse_channel_map(["https://conda.anaconda.org/conda-forge/=file:///srv/mirror/conda-forge", "http://127.0.0.1:8000=https://mirror.example/c"])


@pytest.mark.parametrize(("url", "mapped"), [
    ("https://conda.anaconda.org/conda-forge/noarch/a-1-0.conda", "file:///srv/mirror/conda-forge/noarch/a-1-0.conda"),
    ("http://127.0.0.1:8000/linux-64/b-1-0.tar.bz2", "https://mirror.example/c/linux-64/b-1-0.tar.bz2"),
    ("https://conda.anaconda.org/conda-forge-extra/noarch/a-1-0.conda", "https://conda.anaconda.org/conda-forge-extra/noarch/a-1-0.conda"),
    ("https://other.example/noarch/a-1-0.conda", "https://other.example/noarch/a-1-0.conda"),
])
def test_channel_map_rewrites_whole_path_prefixes_only(url: str, mapped: str) -> None:
    assert map_url(url, MAP) == mapped


@pytest.mark.parametrize("entry", ["no-equals-sign", "=file:///x", "https://a="])
def test_a_malformed_channel_map_is_a_usage_error(entry: str) -> None:
    with pytest.raises(UsageError, match="is not FROM=TO"):
        parse_channel_map([entry])


# --- fetching and installing exactly the lock -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def channel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_channel(tmp_path_factory.mktemp("conda") / "channel", example_packages())


def test_the_test_channel_is_byte_reproducible(channel: Path) -> None:
    # The fixture lock's hashes were taken from the same fixture code: they must still match.
    locked = parse_conda_lock(CONDA_LOCK, "binder/conda-lock.yml")
    for package in locked.packages:
        path = channel / package.subdir / package.filename
        assert hashlib.sha256(path.read_bytes()).hexdigest() == package.sha256, package.filename


def test_staging_fetches_every_locked_package_through_the_channel_map(channel: Path, tmp_path: Path) -> None:
    locked = parse_conda_lock(CONDA_LOCK, "binder/conda-lock.yml")
    stage_packages(locked, [(FIXTURE_CHANNEL, channel.as_uri())], tmp_path / "context", ssl.create_default_context())
    staged = sorted(p.name for p in (tmp_path / "context" / "pkgs").iterdir())
    assert staged == sorted(p.filename for p in locked.packages)
    assert (tmp_path / "context" / "Dockerfile").read_text() == "FROM scratch\nCOPY . /r2env-conda/\n"
    assert (tmp_path / "context" / "conda_installer.py").read_text() == (ROOT / "r2env" / "conda" / "installer.py").read_text()


def test_a_package_that_does_not_match_its_locked_hash_stops_staging(channel: Path, tmp_path: Path) -> None:
    mirror = tmp_path / "mirror"
    shutil.copytree(channel, mirror)
    target = mirror / "noarch" / "hello-cli-1.0.0-0.tar.bz2"
    target.write_bytes(target.read_bytes() + b"\0")
    locked = parse_conda_lock(CONDA_LOCK, "binder/conda-lock.yml")
    with pytest.raises(BuildError) as raised:
        stage_packages(locked, [(FIXTURE_CHANNEL, mirror.as_uri())], tmp_path / "context", ssl.create_default_context())
    expected = next(p.sha256 for p in locked.packages if p.name == "hello-cli")
    assert str(raised.value).startswith(f"hello-cli-1.0.0-0.tar.bz2 from {mirror.as_uri()}/noarch/hello-cli-1.0.0-0.tar.bz2 does not match its locked sha256 {expected}")
    assert hashlib.sha256(target.read_bytes()).hexdigest() in str(raised.value)


def test_an_unreachable_channel_names_the_package_and_the_url(tmp_path: Path) -> None:
    locked = parse_conda_lock(CONDA_LOCK, "binder/conda-lock.yml")
    with pytest.raises(BuildError, match=r"binder/conda-lock.yml: cannot fetch hello-cli-1.0.0-0.tar.bz2 from file:///r2env-test-channel/noarch/"):
        stage_packages(locked, [], tmp_path / "context", ssl.create_default_context())


def test_the_package_image_is_named_by_the_locked_hashes() -> None:
    locked = parse_conda_lock(CONDA_LOCK, "binder/conda-lock.yml")
    assert package_image(locked) == package_image(replace(locked, path="elsewhere/conda-lock.yml"))
    changed = replace(locked, packages=(replace(locked.packages[0], sha256="0" * 64), *locked.packages[1:]))
    assert package_image(changed) != package_image(locked)
    assert package_image(locked).startswith("r2env/conda-packages:")


def test_the_in_image_installer_rejects_a_file_that_does_not_match(tmp_path: Path) -> None:
    package = tmp_path / "a-1-0.conda"
    package.write_bytes(b"payload")
    good = {"fn": package.name, "sha256": hashlib.sha256(b"payload").hexdigest(), "md5": hashlib.md5(b"payload").hexdigest()}
    _verify(package, good)
    with pytest.raises(SystemExit, match=r"r2env: a-1-0.conda does not match its locked md5"):
        _verify(package, {**good, "md5": "0" * 32})


# --- the locked plan ---------------------------------------------------------------------------------------------------


def test_the_locked_plan_installs_in_a_build_stage_and_copies_only_the_prefix(repo: Path) -> None:
    lock, text, _ = lock_repo(repo)
    (repo / "binder" / "conda-lock.yml").write_text(text)
    facts = inspect(DiskRepo(repo))
    conda = read_conda_lock(repo, lock)
    spec = plan(facts, select(facts, load_buildpacks()), PlanOptions(server_requirement=SERVER), lock, conda=conda)
    dockerfile = render_dockerfile(spec)
    stages = dockerfile.split("\nFROM debian:bookworm\n")
    assert len(stages) == 2 and "FROM debian:bookworm AS r2env-conda" in stages[0]
    assert stages[0].index("AS r2env-uv") < stages[0].index("AS r2env-conda") < stages[0].index("from=r2env-uv")
    assert "FROM debian:bookworm AS r2env-node" in stages[0]  # binder/postBuild: Node.js from its wheel (r2env/node_installer.py)
    build_stage, final = stages
    assert f"COPY --from={package_image(conda)} [\"/r2env-conda\", \"/r2env-conda\"]" in build_stage  # type: ignore[arg-type]
    assert "PYTHONPATH=/opt/r2env-rattler python3 /r2env-conda/conda_installer.py /r2env-conda /srv/conda/envs/notebook" in build_stage
    # py-rattler by pip from Debian's own wheel, hash-checked: the conda stage does not wait for uv's stage to start.
    assert "/pip install --disable-pip-version-check --root-user-action=ignore --no-compile --target /opt/r2env-rattler --require-hashes --no-deps" in build_stage
    assert "py-rattler==0.28.0" in build_stage and "py-rattler" not in final
    assert 'COPY --from=r2env-conda --chown=1000:1000 ["/srv/conda", "/srv/conda"]' in final
    assert 'PATH="/srv/conda/envs/notebook/bin:$PATH"' in final
    # pip: packages and the server go into the environment in the build stage; the image has no /srv/venv.
    assert "/tmp/r2env-uv/bin/uv pip install --python /srv/conda/envs/notebook/bin/python --compile-bytecode --require-hashes --no-deps" in build_stage
    # uv comes from its own stage, which shares the conda stage's first (apt) step, and is mounted, not copied.
    assert "FROM debian:bookworm AS r2env-uv" in build_stage and "--mount=type=bind,from=r2env-uv" in build_stage
    assert "r2env-uv" not in final
    assert "tabulate==0.9.0 --hash=sha256:024ca478" in build_stage and "jupyter-core==5.7.2" in build_stage
    assert "/srv/venv" not in final and "ipykernel install" not in dockerfile
    installs = [line.split("--no-install-recommends ", 1)[1].split(" && ")[:2] for line in final.splitlines() if "--no-install-recommends" in line]
    # r2env's own packages in one step, apt.txt's in the next (with r2env's small root steps, r2env/plain_steps.py).
    assert installs == [["ca-certificates=20230311+deb12u1", "rm /etc/apt/preferences.d/r2env-lock"],
                        ["jq=1.6-2.1", "rm /etc/apt/preferences.d/r2env-lock"]]
    assert spec.interpreter is not None and (spec.interpreter.version, spec.interpreter.source) == ("3.11", "conda")
    assert ("NB_PYTHON_PREFIX", "/srv/conda/envs/notebook") in spec.env
    # No solve anywhere: the records come from the lock, the pip steps are --no-deps.
    assert "solve" not in dockerfile.replace("no solve", "")
    lines = final.splitlines()
    assert lines.index('COPY --from=r2env-conda --chown=1000:1000 ["/srv/conda", "/srv/conda"]') < lines.index("COPY --chown=1000:1000 . /home/jovyan/")


def test_the_pip_packages_and_the_server_install_in_one_uv_run_the_servers_pin_winning(repo: Path) -> None:
    lock, text, _ = lock_repo(repo)
    (repo / "binder" / "conda-lock.yml").write_text(text)
    facts = inspect(DiskRepo(repo))
    conda = read_conda_lock(repo, lock)
    assert conda is not None and lock.conda is not None
    server_pin = lock.conda.server[0]
    # A pip: package the server's closure also pins (at another version): one pin per name in the one run.
    clash = LockedPackage(server_pin.name, "0.0.1", ("sha256:" + "0" * 64,))
    conda = replace(conda, pip=(*conda.pip, clash))
    spec = plan(facts, select(facts, load_buildpacks()), PlanOptions(server_requirement=SERVER), lock, conda=conda)
    (stage,) = [stage for stage in spec.build_stages if stage.name == "r2env-conda"]
    (install,) = [step for step in stage.steps if "uv pip install --python /srv/conda/envs/notebook/bin/python" in step.script]
    assert install.description.startswith("install the pip: packages (2 locked, from binder/conda-lock.yml) and the notebook server (")
    assert "tabulate==0.9.0 --hash=sha256:024ca478" in install.script and server_pin.requirement_line() in install.script
    assert f"{server_pin.name}==0.0.1" not in install.script


def test_the_lock_diff_names_a_changed_conda_lock_and_server(repo: Path) -> None:
    from r2env.lock.diff import diff_locks, format_diff

    old, _, _ = lock_repo(repo)
    assert old.conda is not None and len(old.conda.server) > 1
    new = replace(old, conda=replace(old.conda, digest=file_digest("other"), server=old.conda.server[:1]))
    text = format_diff(diff_locks(old, new))
    assert f"changed  conda         binder/conda-lock.yml  {old.conda.digest[:19]}" in text
    assert f"removed  conda-server  {old.conda.server[1].name}" in text
    assert format_diff(diff_locks(old, old)) == "no changes"


def test_a_build_makes_the_package_image_first_and_reuses_it(repo: Path, channel: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from r2env import pipeline
    from r2env.config import load_config

    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    lock, text, _ = lock_repo(repo)
    (repo / "binder" / "conda-lock.yml").write_text(text)
    (repo / "binder" / "r2env.lock").write_text(dump_lock(lock))
    settings = load_config(None, {"server_requirement": SERVER, "channel_map": f"{FIXTURE_CHANNEL}={channel.as_uri()}", "image_name": "r2env-it/conda-fake"})
    engine = FakeEngine()
    messages = [event.message for event in pipeline.build(str(repo), settings, lambda: engine)]
    conda = read_conda_lock(repo, lock)
    assert conda is not None
    assert [request.tag for request in engine.requests] == [package_image(conda), "r2env-it/conda-fake"]
    assert engine.dockerfiles[0] == "FROM scratch\nCOPY . /r2env-conda/\n"
    assert f"COPY --from={package_image(conda)}" in engine.dockerfiles[1]
    assert any(m.startswith("conda packages: fetching 6 locked packages") for m in messages)
    (repo / "analysis.ipynb").write_text("{}")  # a new build of the image, but the same packages
    messages = [event.message for event in pipeline.build(str(repo), settings, lambda: engine)]
    assert [request.tag for request in engine.requests][2:] == ["r2env-it/conda-fake"]
    assert f"conda packages: {package_image(conda)} is present (6 packages)" in messages


def test_an_old_environment_is_the_kernel_of_a_server_in_srv_venv(repo: Path) -> None:
    old = CONDA_LOCK.replace("version: 3.11.2", "version: 3.8.10")
    lock, text, _ = lock_repo(repo, FakeTools(conda_lock=old))
    (repo / "binder" / "conda-lock.yml").write_text(text)
    facts = inspect(DiskRepo(repo))
    spec = plan(facts, select(facts, load_buildpacks()), PlanOptions(server_requirement=SERVER), lock, conda=read_conda_lock(repo, lock))
    build_stage, final = render_dockerfile(spec).split("\nFROM debian:bookworm\n")
    assert spec.interpreter is not None and (spec.interpreter.version, spec.interpreter.source) == ("3.8", "conda")
    assert "older than the notebook server needs (3.9)" in spec.interpreter.reason
    assert ("NB_PYTHON_PREFIX", "/srv/venv") in spec.env and "uv venv --allow-existing --python /usr/bin/python3.11 /srv/venv" in final
    assert "/srv/venv/bin/python -m pip --python /srv/conda/envs/notebook/bin/python) install --require-hashes" in final
    assert "$(test -x /srv/conda/envs/notebook/bin/pip && echo /srv/conda/envs/notebook/bin/pip" in final  # the environment's own pip first
    assert "/srv/conda/envs/notebook/bin/python -m ipykernel install --prefix /srv/venv --name python3" in final
    assert "jupyter-core==5.7.2" in final and "jupyter-core" not in build_stage
