"""Bad input, measured (issue 17): one table per class of the fuzz run's findings, each case a one-line error naming
the file, through the one reading layer (r2env/reading.py) and the one validation layer (r2env/documents.py,
r2env/grammars.py). Nothing here may hang: FIFOs run in a subprocess with a timeout, the rest is timed."""

from __future__ import annotations

import io
import os
import re
import stat
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

import pytest

import r2env
from r2env.cli import main
from r2env.errors import LockError, R2envError, SpecError
from r2env.inspect import inspect
from r2env.lock.lockfile import dump_lock, parse_lock
from r2env.lock.locking import _poetry_pins
from r2env.parsers.apt import parse_apt
from r2env.parsers.conda_lock import parse_conda_lock
from r2env.parsers.environment import parse_environment
from r2env.parsers.pipfile import parse_pipfile, parse_pipfile_lock
from r2env.parsers.pyproject import parse_pyproject
from r2env.parsers.requirements import parse_requirements
from r2env.repo import DiskRepo
from test_lock import sample_lock

SOURCE_ROOT = Path(r2env.__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def isolated_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # no ./r2env_config.py of the developer's


def tree(root: Path) -> dict[str, tuple[int, bytes]]:
    """Every entry's mode and, for regular files, content: to show that nothing was written or changed."""
    out: dict[str, tuple[int, bytes]] = {}
    for directory, folders, files in os.walk(root):
        for name in folders + files:
            path = Path(directory) / name
            mode = path.lstat().st_mode
            out[str(path.relative_to(root))] = (mode, path.read_bytes() if stat.S_ISREG(mode) else b"")
    return out


def one_line(captured: Any) -> str:
    lines = captured.err.splitlines()
    assert len(lines) == 1 and "Traceback" not in captured.err, captured.err
    return str(lines[0])


# --- Encoding and reading -------------------------------------------------------------------------------------------

READING = [
    pytest.param({"requirements.txt": b"\xcd\x00tabulate\n"}, 4, "requirements.txt: cannot be read as UTF-8 text (byte 0xcd at offset 0)", id="invalid UTF-8"),
    pytest.param({"runtime.txt": "python-3.11\n".encode("utf-16")}, 4, "runtime.txt: is UTF-16 text, not UTF-8", id="UTF-16"),
    pytest.param({"Pipfile": b"[packages]\x00\n"}, 4, "Pipfile: contains a NUL byte at offset 10", id="a NUL byte"),
    pytest.param({"Pipfile.lock": b"\xff\xfe{}"}, 4, "Pipfile.lock: is UTF-16 text", id="Pipfile.lock, UTF-16 BOM"),
    pytest.param({"pyproject.toml": b"[project]\nname = '\xe9'\n"}, 4, "pyproject.toml: cannot be read as UTF-8 text (byte 0xe9 at offset 18)", id="pyproject, Latin-1"),
    pytest.param({"environment.yml": b"\x89PNG\r\n\x1a\n"}, 4, "environment.yml: cannot be read as UTF-8 text (byte 0x89 at offset 0)", id="environment.yml, binary"),
    pytest.param({"requirements.txt": b"-r extra.txt\n", "extra.txt": b"ok\n\xc3"}, 4, "extra.txt: cannot be read as UTF-8 text (byte 0xc3 at offset 3)", id="an include"),
    pytest.param({"requirements.txt": b"-c pins.txt\ntabulate\n", "pins.txt": b"\xc3("}, 4, "pins.txt: cannot be read as UTF-8", id="a constraints file"),
    pytest.param({"apt.txt": b"x" * 10_000_001}, 4, "apt.txt: 10.0 MB is over r2env's limit of 1 MiB for a declaration file", id="a 10 MB apt.txt"),
    pytest.param({"requirements.txt": b"-r " + b"a" * 300 + b"\n"}, 4, "its name or path is too long for the file system", id="an over-long include name"),
    pytest.param({"requirements.txt": b"tabulate\n", "r2env.lock": b"\x00\x01\x02"}, 8, "r2env.lock: contains a NUL byte at offset 0", id="a binary r2env.lock"),
]


@pytest.mark.parametrize(("files", "code", "fragment"), READING)
def test_a_file_that_cannot_be_read_as_text_is_one_line_naming_it(
    files: dict[str, bytes], code: int, fragment: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    for name, content in files.items():
        (repo / name).write_bytes(content)
    before = tree(repo)
    assert main(["plan", str(repo)]) == code
    assert fragment in one_line(capsys.readouterr())
    assert tree(repo) == before


def test_a_utf8_bom_is_allowed(tmp_path: Path) -> None:
    (tmp_path / "requirements.txt").write_bytes(b"\xef\xbb\xbftabulate==0.9.0\r\n")
    assert inspect(DiskRepo(tmp_path)).requirements[0].requirements == ("tabulate==0.9.0",)


def test_a_directory_where_a_declaration_file_is_expected_is_refused(tmp_path: Path) -> None:
    (tmp_path / "requirements.txt").mkdir()
    with pytest.raises(SpecError, match=r"^requirements.txt: is a directory, not a regular file"):
        inspect(DiskRepo(tmp_path))


def test_permission_denied_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    # Tests run as root, which chmod 000 does not stop: the open itself is made to fail as it does for other users.
    (tmp_path / "requirements.txt").write_text("tabulate\n")
    real_os_open, real_io_open = os.open, io.open

    def refuse(opener: Callable[..., Any]) -> Callable[..., Any]:
        def wrapped(path: Any, *args: Any, **kwargs: Any) -> Any:
            if str(path).endswith("requirements.txt"):
                raise PermissionError(13, "Permission denied", str(path))
            return opener(path, *args, **kwargs)
        return wrapped

    monkeypatch.setattr(os, "open", refuse(real_os_open))
    monkeypatch.setattr(io, "open", refuse(real_io_open))
    assert main(["plan", str(tmp_path)]) == 4
    assert one_line(capsys.readouterr()) == (
        "r2env: error: requirements.txt: permission denied: r2env reads declaration files and locks as UTF-8 text files of the repository"
    )


def _plan_in_subprocess(repo: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(SOURCE_ROOT), os.environ.get("PYTHONPATH", "")]))}
    return subprocess.run([sys.executable, "-m", "r2env.cli", "plan", str(repo)], capture_output=True, text=True, timeout=30, env=env, cwd=repo)


@pytest.mark.parametrize("name", ["requirements.txt", "environment.yml", "postBuild", "r2env.lock"])
def test_a_fifo_in_the_repository_never_blocks(name: str, tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    if name != "requirements.txt":
        (repo / "requirements.txt").write_text("tabulate\n")
    os.mkfifo(repo / name)
    before = tree(repo)
    started = time.monotonic()
    result = _plan_in_subprocess(repo)  # a blocking open() would end in TimeoutExpired
    assert time.monotonic() - started < 20
    assert result.returncode == (8 if name == "r2env.lock" else 4), result.stderr
    assert f"{name}: is a FIFO (named pipe), not a regular file" in result.stderr and "Traceback" not in result.stderr
    assert tree(repo) == before


def test_a_link_to_dev_zero_and_a_device_in_the_repository_are_refused(tmp_path: Path) -> None:
    (tmp_path / "requirements.txt").symlink_to("/dev/zero")
    with pytest.raises(SpecError, match=r"^requirements.txt is a symbolic link to /dev/zero, outside the repository"):
        inspect(DiskRepo(tmp_path))
    (tmp_path / "requirements.txt").unlink()
    try:
        os.mknod(tmp_path / "requirements.txt", stat.S_IFCHR | 0o666, os.makedev(1, 5))  # /dev/zero's numbers
    except PermissionError:
        pytest.skip("cannot make a device node here")
    started = time.monotonic()
    with pytest.raises(SpecError, match=r"^requirements.txt: is a character device, not a regular file"):
        inspect(DiskRepo(tmp_path))
    assert time.monotonic() - started < 1


# --- Wrong types in well-formed TOML/YAML/JSON ----------------------------------------------------------------------

CONDA_LOCK = """\
version: 1
metadata: {platforms: [linux-64], channels: [{url: conda-forge}]}
package:
- name: python
  version: 3.12.1
  manager: conda
  platform: linux-64
  url: https://conda.example/linux-64/python-3.12.1-h1_0.conda
  hash: {sha256: %s}
  dependencies: %s
""" % ("a" * 64, "{}")
POETRY = '[metadata]\nlock-version = "2.1"\n[[package]]\nname = "six"\nversion = %s\nfiles = [{file = "six.whl", hash = "sha256:%s"}]\n'
PIPFILE_LOCK = '{"default": {"six": {"version": "==1.16.0", "hashes": %s}}}'
DEEP = 100_000

WRONG_TYPES: list[Any] = [
    pytest.param(parse_conda_lock, CONDA_LOCK.replace("dependencies: {}", "dependencies: []"), "package[0].dependencies: expected a mapping, got a list", id="conda-lock: a list for a mapping"),
    pytest.param(parse_conda_lock, CONDA_LOCK.replace("name: python", "name: 7"), "package[0].name: expected a string, got an integer", id="conda-lock: an int for a name"),
    pytest.param(parse_conda_lock, CONDA_LOCK.replace("hash: {sha256: " + "a" * 64 + "}", "hash: abc"), "package[0].hash: expected a mapping, got a string", id="conda-lock: a string for a table"),
    pytest.param(parse_conda_lock, "version: 1\npackage: []\nmetadata: " + "[" * DEEP, "nests deeper than 64 levels", id="conda-lock: deep nesting"),
    pytest.param(parse_lock, dump_lock(sample_lock()).replace("  - name: requests", "  - name: 7", 1), "python-packages.repository[0].name: expected a string, got an integer", id="r2env.lock: an int for a name"),
    pytest.param(parse_lock, re.sub(r"^apt:\n(?:  .*\n)*", "apt: x\n", dump_lock(sample_lock()), flags=re.M), "apt: expected a mapping, got a string", id="r2env.lock: a string for a table"),
    pytest.param(parse_lock, "version: 1\ninputs: " + "{a: " * DEEP, "invalid YAML: the document nests deeper", id="r2env.lock: deep nesting"),
    pytest.param(parse_pipfile, '[packages]\nsix = {version = "==1.0", extras = [1]}\n', "package 'six': extras must be a list of strings", id="Pipfile: an int for an extra"),
    pytest.param(parse_pipfile, "[packages]\nx = " + "[" * DEEP, "Pipfile: invalid TOML", id="Pipfile: deep nesting"),
    pytest.param(parse_pipfile_lock, PIPFILE_LOCK % "[1]", "six.hashes: expected a list of sha256:HEX hashes, got [1]", id="Pipfile.lock: an int for a hash"),
    pytest.param(parse_pipfile_lock, "[" * DEEP, "Pipfile.lock: invalid JSON: the document nests too deep", id="Pipfile.lock: deep nesting"),
    pytest.param(parse_pyproject, "[project]\ndependencies = [1]\n", "[project].dependencies must be a list of strings", id="pyproject: an int for a requirement"),
    pytest.param(parse_pyproject, "[project]\nrequires-python = 3.10\n", "requires-python 3.1 is not a valid version specifier", id="pyproject: a float for a specifier"),
    pytest.param(_poetry_pins, 'package = "six"\n[metadata]\nlock-version = "2.1"\n', "poetry.lock: package: expected a list, got a string", id="poetry.lock: a string for a list"),
    pytest.param(_poetry_pins, POETRY % ("1", "a" * 64), "package[0].version: expected a string, got an integer", id="poetry.lock: an int for a version"),
    pytest.param(_poetry_pins, '[metadata]\nlock-version = ["2.1"]\n', "metadata.lock-version: expected a string, got a list", id="poetry.lock: a list for a string"),
    pytest.param(parse_environment, "name: [a]\ndependencies: [numpy]\n", "environment.yml:1:1: name must be a string", id="environment.yml: a list for a name"),
    pytest.param(parse_environment, "dependencies: {numpy: 1}\n", "environment.yml:1:1: dependencies must be a list", id="environment.yml: a mapping for a list"),
    pytest.param(parse_environment, "dependencies: " + "[" * DEEP, "invalid YAML: the document nests deeper than 64 levels", id="environment.yml: deep nesting"),
]


@pytest.mark.parametrize(("parse", "text", "fragment"), WRONG_TYPES)
def test_a_wrong_type_names_its_key_path(parse: Callable[[str, str], Any], text: str, fragment: str) -> None:
    name = {parse_conda_lock: "conda-lock.yml", parse_lock: "r2env.lock", parse_pipfile: "Pipfile", parse_pipfile_lock: "Pipfile.lock",
            parse_pyproject: "pyproject.toml", _poetry_pins: "poetry.lock", parse_environment: "environment.yml"}[parse]
    with pytest.raises(R2envError) as raised:
        parse(text, name)
    message = str(raised.value)
    assert message.startswith(name) and fragment in message and "\n" not in message.split(":  ")[0]


def test_wrong_types_exit_with_the_documented_code(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "environment.yml").write_text("dependencies: {numpy: 1}\n")
    assert main(["plan", str(tmp_path)]) == 4
    assert "environment.yml:1:1: dependencies must be a list" in one_line(capsys.readouterr())


# --- Hangs ------------------------------------------------------------------------------------------------------------

def alias_bomb(top: str) -> str:
    levels = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join(['*' + chr(97 + i)] * 9)}]\n" for i in range(8))
    return levels + top


BOMBS = [
    pytest.param(parse_environment, "environment.yml", alias_bomb("dependencies: *i\n"), SpecError, id="environment.yml"),
    pytest.param(parse_conda_lock, "conda-lock.yml", alias_bomb("version: 1\nmetadata: {platforms: *i}\npackage: *i\n"), LockError, id="conda-lock.yml"),
    pytest.param(parse_lock, "r2env.lock", alias_bomb("version: 1\ninputs: {files: {}, digest: *i}\n"), LockError, id="r2env.lock"),
]


@pytest.mark.parametrize(("parse", "name", "text", "error"), BOMBS)
def test_a_yaml_alias_bomb_is_refused_at_once(parse: Callable[[str, str], Any], name: str, text: str, error: type[R2envError]) -> None:
    started = time.monotonic()
    with pytest.raises(error, match=rf"^{re.escape(name)}.*aliases expand to more than 100,000 nodes"):
        parse(text, name)
    assert time.monotonic() - started < 0.5


def test_a_few_shared_blocks_still_load() -> None:
    environment = parse_environment("x: &pkgs [numpy, scipy]\ndependencies: *pkgs\n", "environment.yml")
    assert environment.dependencies == ("numpy", "scipy")


LONG = 100_000
LINEAR = [
    pytest.param(lambda: parse_requirements(" " * LONG + "\n", "requirements.txt"), id="requirements: a line of spaces"),
    pytest.param(lambda: parse_requirements("\t" * LONG + "\n", "requirements.txt"), id="requirements: a line of tabs"),
    pytest.param(lambda: parse_requirements("numpy" + " " * LONG + "--hash=sha256:" + "a" * 64 + "\n", "requirements.txt"), id="requirements: spaces before a hash"),
    pytest.param(lambda: parse_requirements("a" + " " * LONG + "b\n", "requirements.txt"), id="requirements: spaces inside a name"),
    pytest.param(lambda: parse_environment("dependencies:\n  - 'a" + " " * LONG + "!'\n", "environment.yml"), id="environment.yml: spaces in a match spec"),
    pytest.param(lambda: parse_apt("".join(f"package{i}\n" for i in range(50_000)), "apt.txt"), id="apt.txt: 50,000 packages"),
]


@pytest.mark.parametrize("parse", LINEAR)
def test_parsers_are_linear_on_100k_character_lines(parse: Callable[[], Any]) -> None:
    started = time.monotonic()
    try:
        parse()
    except SpecError as error:
        assert len(str(error)) < 400  # an excerpt of the bad line, never the line
    assert time.monotonic() - started < 1


def test_a_huge_environment_yml_is_refused_before_it_is_parsed(tmp_path: Path) -> None:
    (tmp_path / "environment.yml").write_text("# " + "x" * 10_000_000 + "\ndependencies: [numpy]\n")
    started = time.monotonic()
    with pytest.raises(SpecError, match=r"^environment.yml: 10.0 MB is over r2env's limit of 1 MiB for a declaration file"):
        inspect(DiskRepo(tmp_path))
    assert time.monotonic() - started < 1


# --- Accepted when it must be refused ---------------------------------------------------------------------------------

LOCK_TEXT = dump_lock(sample_lock())
HASH = sample_lock().packages[0].hashes[0]
REFUSED_LOCKS = [
    pytest.param(LOCK_TEXT.replace(HASH, "sha256:" + "g" * 64, 1), "is not a sha256:HEX hash", id="a non-hex hash"),
    pytest.param(LOCK_TEXT.replace(f"- {HASH}", f"- \"'{HASH}'\"", 1), "is not a sha256:HEX hash", id="a quoted hash"),
    pytest.param(LOCK_TEXT.replace("version: 2.32.3", 'version: "2.32.3\\nRUN id"', 1), "version: '2.32.3\\nRUN id' is not a PEP 440 version", id="a multi-line version"),
    pytest.param(LOCK_TEXT.replace("version: 2.32.3", "version: not-a-version", 1), "is not a PEP 440 version", id="a garbage version"),
    pytest.param(LOCK_TEXT.replace("name: requests", "name: requests;rm", 1), "is not a normalized Python package name", id="shell in a name"),
    pytest.param(LOCK_TEXT.replace("graphviz: 2.42.2-7+deb12u1", 'graphviz: "2.42\\nRUN id"', 1), "apt.graphviz: '2.42\\nRUN id' is not a Debian version", id="a newline in an apt version"),
    pytest.param(LOCK_TEXT.replace("graphviz: 2.42.2-7+deb12u1", '"graph$(id)": 1.0', 1), "is not a Debian package name", id="shell in an apt name"),
    pytest.param(LOCK_TEXT.replace("  repository:\n", "  repository:\n  - name: requests\n    version: 2.32.3\n    hashes: [" + HASH + "]\n", 1), "requests is listed twice", id="a duplicate package"),
    pytest.param(LOCK_TEXT.replace("source: r2env", "source: elsewhere"), "source: 'elsewhere' is neither r2env nor one of inputs.files", id="an unknown source"),
    pytest.param(LOCK_TEXT.replace("  mirror: http://deb.debian.org/debian", "  mirror: [1]"), "base.mirror: expected a string, got a list", id="a list for mirror"),
    pytest.param(LOCK_TEXT.replace("r2env: 0.1.0", "r2env: [0]"), "r2env: expected a string, got a list", id="a list for r2env-version"),
]


@pytest.mark.parametrize(("text", "fragment"), REFUSED_LOCKS)
def test_a_lock_value_outside_its_grammar_is_refused(text: str, fragment: str) -> None:
    assert text != LOCK_TEXT
    with pytest.raises(LockError) as raised:
        parse_lock(text, "r2env.lock")
    assert str(raised.value).startswith("r2env.lock: ") and fragment in raised.value.message


def test_a_refused_lock_exits_8_through_the_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "old.lock").write_text(LOCK_TEXT)
    (tmp_path / "new.lock").write_text(REFUSED_LOCKS[2].values[0])
    assert main(["lock", "--diff", str(tmp_path / "old.lock"), str(tmp_path / "new.lock")]) == 8
    assert "is not a PEP 440 version" in one_line(capsys.readouterr())


REFUSED_DECLARATIONS: list[Any] = [
    pytest.param(parse_pipfile_lock, PIPFILE_LOCK % '["md5:0123456789abcdef0123456789abcdef"]', "six.hashes: expected a list of sha256:HEX hashes", id="Pipfile.lock: an md5 hash"),
    pytest.param(parse_pipfile_lock, PIPFILE_LOCK % '"sha256:abc"', "six.hashes: expected a list of sha256:HEX hashes", id="Pipfile.lock: a string for hashes"),
    pytest.param(parse_pipfile_lock, '{"default": {"six": {"version": "==1.16.0\\nRUN id", "hashes": ["sha256:' + "a" * 64 + '"]}}}', "has an invalid name or version", id="Pipfile.lock: a newline in a version"),
    pytest.param(_poetry_pins, POETRY % ('"1.16.0\\nRUN id"', "a" * 64), "package[0].version: '1.16.0\\nRUN id' is not a PEP 440 version", id="poetry.lock: a newline in a version"),
    pytest.param(parse_requirements, "tabulate==${VERSION}\n", "uses ${…}, which r2env does not expand", id="requirements: $VAR"),
    pytest.param(parse_requirements, "./`id`\n", "uses a backtick", id="requirements: backticks"),
    pytest.param(parse_requirements, "https://example.com/\n", "is a URL that names no package", id="requirements: a bare URL"),
    pytest.param(parse_requirements, "file:///etc/pkg.whl\n", "'file:///etc/pkg.whl' is outside the repository", id="requirements: file: outside"),
    pytest.param(parse_requirements, "pkg @ file:///etc/pkg\n", "is outside the repository", id="requirements: NAME @ file: outside"),
    pytest.param(parse_requirements, "-e ../x\n", "'../x' is outside the repository", id="requirements: -e ../x"),
    pytest.param(parse_requirements, "./pkg;$(id)\n", "is not a path r2env can install", id="requirements: shell in a local path"),
    pytest.param(parse_pyproject, '[project]\ndependencies = ["numpy\\nRUN id"]\n', "is not a valid requirement", id="pyproject: a newline in a dependency"),
    pytest.param(parse_environment, 'dependencies:\n  - pip:\n    - "numpy\\nRUN id"\n', "is not a one-line string", id="environment.yml: a newline in a pip line"),
]


@pytest.mark.parametrize(("parse", "text", "fragment"), REFUSED_DECLARATIONS)
def test_a_declaration_r2env_cannot_install_is_refused(parse: Callable[[str, str], Any], text: str, fragment: str) -> None:
    with pytest.raises(R2envError) as raised:
        parse(text, "FILE")
    assert str(raised.value).startswith("FILE") and fragment in str(raised.value)


def test_a_missing_local_path_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "requirements.txt").write_text("-e ./pkg\n")
    assert main(["plan", str(tmp_path)]) == 4
    assert "requirements.txt: '-e ./pkg' does not exist in the repository" in one_line(capsys.readouterr())
    (tmp_path / "pkg").mkdir()
    assert main(["plan", str(tmp_path)]) == 0



def test_the_context_digest_does_not_open_a_fifo(tmp_path: Path) -> None:
    from r2env.context import context_digest

    (tmp_path / "notebook.ipynb").write_text("{}")
    os.mkfifo(tmp_path / "pipe")
    result = subprocess.run([sys.executable, "-c", f"from r2env.context import context_digest; print(context_digest(__import__('pathlib').Path({str(tmp_path)!r})))"],
                            capture_output=True, text=True, timeout=30,
                            env={**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(SOURCE_ROOT), os.environ.get("PYTHONPATH", "")]))})
    assert result.returncode == 0 and result.stdout.startswith("sha256:"), result.stderr
    assert context_digest(tmp_path) == result.stdout.strip()
