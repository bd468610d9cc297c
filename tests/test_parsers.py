"""The pure parsers, table-driven: valid text → the exact parsed value; malformed text → a SpecError naming the file."""

from __future__ import annotations

import json

import pytest
from packaging.requirements import Requirement

from r2env.errors import SpecError
from r2env.parsers.apt import parse_apt
from r2env.parsers.pipfile import Pipfile, parse_pipfile, parse_pipfile_lock
from r2env.parsers.pyproject import Pyproject, parse_pyproject
from r2env.parsers.requirements import RequirementsFile, parse_requirements
from r2env.parsers.runtime import parse_runtime


def requirements_file(
    path: str = "requirements.txt",
    requirements: tuple[str, ...] = (),
    includes: tuple[str, ...] = (),
    local: tuple[str, ...] = (),
    hashed: bool = False,
    options: tuple[str, ...] = (),
    constraints: tuple[str, ...] = (),
) -> RequirementsFile:
    return RequirementsFile(path, requirements, includes, local, hashed, options, constraints)


GIT_URL = "git+https://github.com/example/lib.git@v1.2#egg=lib"

VALID_REQUIREMENTS = [
    ("pinned", "requirements.txt", "numpy==1.26.4\n", requirements_file(requirements=("numpy==1.26.4",))),
    (
        "comments and blank lines",
        "requirements.txt",
        "# top comment\n\nnumpy  # inline comment\n   \npandas>=2\n",
        requirements_file(requirements=("numpy", "pandas>=2")),
    ),
    (
        "continuation lines with hashes",
        "requirements.txt",
        "numpy==1.26.4 \\\n    --hash=sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa \\\n    --hash=sha256:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb\n",
        requirements_file(requirements=("numpy==1.26.4",), hashed=True),
    ),
    (
        "hashed only when every requirement has a hash",
        "requirements.txt",
        "numpy==1.26.4 --hash=sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\nscipy==1.13.0\n",
        requirements_file(requirements=("numpy==1.26.4", "scipy==1.13.0")),
    ),
    (
        "-r and -c are relative to the including file",
        "binder/requirements.txt",
        "-r extra.txt\n--requirement=sub/more.txt\n-c ../constraints.txt\n",
        requirements_file(
            "binder/requirements.txt", includes=("binder/extra.txt", "binder/sub/more.txt"), constraints=("constraints.txt",)
        ),
    ),
    ("-e . is a local reference", "requirements.txt", "-e .\n", requirements_file(local=("-e .",))),
    ("./localpkg is a local reference", "requirements.txt", "./localpkg\n", requirements_file(local=("./localpkg",))),
    ("git+https URL", "requirements.txt", f"{GIT_URL}\n", requirements_file(requirements=(GIT_URL,))),
    ("editable git URL", "requirements.txt", f"-e {GIT_URL}\n", requirements_file(requirements=(GIT_URL,))),
    (
        "index options are kept as pip arguments",
        "requirements.txt",
        "--index-url https://pypi.example/simple\n--extra-index-url=https://extra.example/simple\n--pre\nnumpy\n",
        requirements_file(
            requirements=("numpy",),
            options=("--index-url", "https://pypi.example/simple", "--extra-index-url", "https://extra.example/simple", "--pre"),
        ),
    ),
    (
        "short option with attached value",
        "requirements.txt",
        "-ihttps://pypi.example/simple\n",
        requirements_file(options=("-i", "https://pypi.example/simple")),
    ),
]


@pytest.mark.parametrize(("path", "text", "expected"), [case[1:] for case in VALID_REQUIREMENTS], ids=[c[0] for c in VALID_REQUIREMENTS])
def test_requirements_file_is_parsed_exactly(path: str, text: str, expected: RequirementsFile) -> None:
    assert parse_requirements(text, path) == expected


MALFORMED_REQUIREMENTS = [
    ("unknown option", "numpy\n--frobnicate\n", "requirements.txt line 2: unknown option '--frobnicate'"),
    ("invalid requirement", "numpy\n# comment\nfoo==\n", "requirements.txt line 3: 'foo==' is not a valid requirement"),
    ("include without a file", "-r\n", "requirements.txt line 1: -r needs a file name"),
    ("index option without a value", "--index-url\n", "requirements.txt line 1: --index-url needs a value"),
    ("unsupported per-requirement option", "numpy --install-option=x\n", "requirements.txt line 1: unsupported per-requirement option"),
    ("a truncated hash", "numpy==1.26.0 --hash=sha256:abc\n", "requirements.txt line 1: --hash='sha256:abc' is not a hash pip can check"),
    ("an unknown hash algorithm", "numpy==1.26.0 --hash md5:" + "a" * 32 + "\n", "requirements.txt line 1: --hash='md5:aaaa"),
    ("a non-hex hash", "numpy==1.26.0 --hash=sha256:" + "z" * 64 + "\n", "requirements.txt line 1: --hash='sha256:zzz"),
    ("unbalanced quote", 'numpy "oops\n', "requirements.txt line 1: 'numpy \"oops' is not a valid requirement"),
    ("error in a continued line names its first line", "numpy\nfoo \\\n  ==\n", "requirements.txt line 2:"),
]


@pytest.mark.parametrize(("text", "message"), [c[1:] for c in MALFORMED_REQUIREMENTS], ids=[c[0] for c in MALFORMED_REQUIREMENTS])
def test_malformed_requirements_name_file_and_line(text: str, message: str) -> None:
    with pytest.raises(SpecError) as caught:
        parse_requirements(text, "requirements.txt")
    assert str(caught.value).startswith(message)


@pytest.mark.parametrize(
    "line",
    ['pywin32==306; sys_platform == "win32"', "tomli>=2; python_version < '3.11'"],
)
def test_requirement_with_quoted_environment_marker_is_valid(line: str) -> None:
    # PEP 508 markers compare against quoted strings; pip accepts these lines in requirements files.
    parsed = parse_requirements(line + "\n", "requirements.txt")
    assert [str(Requirement(r)) for r in parsed.requirements] == [str(Requirement(line))]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("python-3.10\n", "3.10"),
        ("python-3.11.4\n", "3.11"),
        ("# which Python\n\npython-3.13\n", "3.13"),
        ("python-3\n", ""),  # repo2docker: the default Python 3
        ("python-2\n", "2.7"),
        ("python-3.7-2020-01-01\n", "3.7"),  # a date is allowed and means nothing for Python
        ("r-4.2-2023-01-05\n", ""),  # R: the default Python beside it
    ],
)
def test_runtime_txt_gives_major_minor(text: str, expected: str) -> None:
    assert parse_runtime(text, "runtime.txt").python == expected


@pytest.mark.parametrize(
    ("text", "name", "version", "date"),
    [("r-4.2\n", "r", "4.2", ""), ("r-4.2-2023-01-05\n", "r", "4.2", "2023-01-05"), ("r-2023-01-05\n", "r", "", "2023-01-05")],
)
def test_runtime_txt_reads_repo2dockers_r_forms(text: str, name: str, version: str, date: str) -> None:
    runtime = parse_runtime(text, "runtime.txt")
    assert (runtime.name, runtime.version, runtime.date) == (name, version, date)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("python3.11\n", "runtime.txt: 'python3.11' is not understood"),
        ("r-4.1-2023-13-01\n", "runtime.txt: '2023-13-01' in 'r-4.1-2023-13-01' is not a date"),
        ("python-4\n", "runtime.txt: 'python-4' is not understood"),
        ("python-3.x\n", "runtime.txt: 'python-3.x' is not understood"),
        ("julia-1.9\n", "runtime.txt: 'julia-1.9' is not understood"),
        ("python-3-1\n", "runtime.txt: 'python-3-1' is not understood"),
        ("", "runtime.txt: expected one line"),
        ("python-3.10\npython-3.11\n", "runtime.txt: expected one line"),
    ],
)
def test_malformed_runtime_txt_is_a_spec_error(text: str, message: str) -> None:
    with pytest.raises(SpecError) as caught:
        parse_runtime(text, "runtime.txt")
    assert str(caught.value).startswith(message)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("# tools\njq\n\n  tree   # inline comment\nlibgl1 jq\n", ("jq", "tree", "libgl1")),
        ("curl=7.88.1-10+deb12u5\ng++\n", ("curl=7.88.1-10+deb12u5", "g++")),
        ("# nothing\n\n", ()),
    ],
)
def test_apt_txt_lists_unique_packages_in_order(text: str, expected: tuple[str, ...]) -> None:
    assert parse_apt(text, "apt.txt") == expected


def test_invalid_apt_package_name_names_file_and_line() -> None:
    with pytest.raises(SpecError) as caught:
        parse_apt("jq\ntree\nFoo_Bar\n", "binder/apt.txt")
    assert str(caught.value).startswith("binder/apt.txt line 3: 'Foo_Bar' is not a Debian package name")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            '[project]\nname = "x"\nrequires-python = ">=3.10"\ndependencies = ["tomli==2.0.1"]\n',
            Pyproject(False, ">=3.10", ("tomli==2.0.1",)),
        ),
        ('[build-system]\nrequires = ["setuptools"]\n', Pyproject(False, "", ())),  # no [project]: not installed (repo2docker)
        ('[build-system]\nrequires = ["setuptools"]\n[project]\nname = "x"\n', Pyproject(True, "", ())),
        ("[tool.black]\nline-length = 100\n", Pyproject(False, "", ())),
    ],
)
def test_pyproject_is_parsed(text: str, expected: Pyproject) -> None:
    assert parse_pyproject(text, "pyproject.toml") == expected


@pytest.mark.parametrize(
    ("text", "fragments"),
    [
        ('[project]\nname = "x"\nversion = \n', ("pyproject.toml: invalid TOML", "line 3")),
        ('[project]\nrequires-python = "3.10"\n', ("pyproject.toml: requires-python '3.10' is not a valid",)),
        ('[project]\ndependencies = "numpy"\n', ("pyproject.toml: [project].dependencies must be a list",)),
    ],
)
def test_malformed_pyproject_is_a_spec_error(text: str, fragments: tuple[str, ...]) -> None:
    with pytest.raises(SpecError) as caught:
        parse_pyproject(text, "pyproject.toml")
    assert all(fragment in str(caught.value) for fragment in fragments)


PIPFILE = """
[packages]
requests = "*"
numpy = "==1.0"
pandas = {version = ">=2", extras = ["excel", "perf"]}
attrs = {version = "*", markers = "python_version >= '3.8'"}

[requires]
python_version = "3.11"
"""


def test_pipfile_packages_become_requirement_lines() -> None:
    assert parse_pipfile(PIPFILE, "Pipfile") == Pipfile(
        ("requests", "numpy==1.0", "pandas[excel,perf]>=2", "attrs; python_version >= '3.8'"), "3.11"
    )


@pytest.mark.parametrize(
    ("text", "fragments"),
    [
        ('[packages]\nmylib = {git = "https://example.org/mylib.git"}\n', ("Pipfile: package 'mylib' uses a git or file source",)),
        ('[packages]\nmylib = {path = "../elsewhere"}\n', ("Pipfile: package 'mylib' points outside the repository ('../elsewhere')",)),
        ("[packages]\nnumpy = 1\n", ("Pipfile: package 'numpy' has an unreadable version",)),
        ("[packages]\nnumpy = \n", ("Pipfile: invalid TOML", "line 2")),
        ('[packages]\nnumpy = "==1.0.0.."\n', ("Pipfile: 'numpy==1.0.0..' is not a valid requirement",)),
    ],
)
def test_malformed_pipfile_is_a_spec_error(text: str, fragments: tuple[str, ...]) -> None:
    with pytest.raises(SpecError) as caught:
        parse_pipfile(text, "Pipfile")
    assert all(fragment in str(caught.value) for fragment in fragments)


def test_pipfile_lock_gives_sorted_hash_pinned_lines() -> None:
    lock = {
        "_meta": {},
        "default": {
            "termcolor": {"version": "==2.4.0", "hashes": ["sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", "sha256:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"], "markers": "python_version >= '3.8'"},
            "iniconfig": {"version": "==2.0.0", "hashes": ["sha256:cccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc"]},
        },
        "develop": {"pytest": {"version": "==8.0.0", "hashes": ["sha256:dddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddd"]}},
    }
    assert tuple(p.requirement_line() for p in parse_pipfile_lock(json.dumps(lock), "Pipfile.lock")) == (
        "iniconfig==2.0.0 --hash=sha256:cccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc",
        "pytest==8.0.0 --hash=sha256:dddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddd",  # develop packages too, as `pipenv install --dev`
        "termcolor==2.4.0 ; python_version >= '3.8' --hash=sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa --hash=sha256:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb",
    )


@pytest.mark.parametrize(
    ("text", "fragments"),
    [
        ('{"default": {"numpy": {"version": "==1.0"}}}', ("Pipfile.lock: entry 'numpy' lacks an exact version and hashes",)),
        ('{"default": {"numpy": {"version": "==1.0", "hashes": []}}}', ("entry 'numpy' lacks",)),
        ('{"default": {"numpy": {"version": ">=1.0", "hashes": ["sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"]}}}', ("entry 'numpy' lacks",)),
        ('{"default": {"numpy": "==1.0"}}', ("Pipfile.lock", "numpy")),
        ('{"default": {', ("Pipfile.lock: invalid JSON", "line 1 column")),
        ("{}", ("Pipfile.lock: no 'default' section",)),
    ],
    ids=["missing hashes", "empty hashes", "inexact version", "entry not a table", "invalid JSON", "no default"],
)
def test_malformed_pipfile_lock_is_a_spec_error(text: str, fragments: tuple[str, ...]) -> None:
    with pytest.raises(SpecError) as caught:
        parse_pipfile_lock(text, "Pipfile.lock")
    assert all(fragment in str(caught.value) for fragment in fragments)


@pytest.mark.parametrize(("path", "value", "reference"), [
    ("Pipfile", '{path = ".", editable = true}', "-e ."),
    ("Pipfile", '{path = "./sub/pkg"}', "./sub/pkg"),
    (".binder/Pipfile", '{path = "..", editable = true}', "-e ."),  # relative to the Pipfile, where pipenv runs
    ("binder/Pipfile", '{path = "../lib"}', "./lib"),
])
def test_a_pipfile_path_source_is_a_local_reference(path: str, value: str, reference: str) -> None:
    pipfile = parse_pipfile(f"[packages]\nthere = \"*\"\ndummy = {value}\n", path)
    assert pipfile.requirements == ("there",) and pipfile.local_references == (reference,)
