"""inspect over an in-memory repository: which config folder is in effect, what it declares, what it asks for."""

from __future__ import annotations

import re

from pathlib import Path

import pytest

from r2env.select import select

from buildpacks import load_buildpacks

from r2env.interpreter import choose_interpreter

from r2env.errors import SpecError
from r2env.inspect import PythonRequest, inspect
from r2env.repo import DiskRepo, MemoryRepo


def test_binder_folder_takes_precedence_over_root_files() -> None:
    facts = inspect(MemoryRepo({
        "binder/requirements.txt": "tabulate==0.9.0\n",
        "requirements.txt": "termcolor==2.4.0\n",
        "apt.txt": "jq\n",
        "runtime.txt": "python-3.13\n",
    }))
    assert facts.config_dir == "binder"
    assert facts.files == {"requirements.txt"}
    assert [f.path for f in facts.requirements] == ["binder/requirements.txt"]
    assert facts.requirements[0].requirements == ("tabulate==0.9.0",)
    assert facts.apt_packages == ()
    assert facts.python == PythonRequest("", "", "")


def test_dot_binder_folder_is_read() -> None:
    facts = inspect(MemoryRepo({".binder/apt.txt": "jq\n", "apt.txt": "tree\n"}))
    assert (facts.config_dir, facts.apt_packages, facts.path("apt.txt")) == (".binder", ("jq",), ".binder/apt.txt")


def test_binder_and_dot_binder_together_are_an_error() -> None:
    with pytest.raises(SpecError, match="both binder/ and .binder/ exist"):
        inspect(MemoryRepo({"binder/apt.txt": "jq\n", ".binder/apt.txt": "jq\n"}))


def test_root_package_files_are_ignored_when_binder_folder_exists() -> None:
    facts = inspect(MemoryRepo({
        "binder/requirements.txt": "numpy\n",
        "setup.py": "from setuptools import setup\nsetup()\n",
        "pyproject.toml": '[project]\nname = "x"\nrequires-python = ">=3.12"\n',
    }))
    assert not facts.installable
    assert facts.pyproject is None
    assert not facts.has("setup.py")
    assert facts.python == PythonRequest("", "", "")


def test_root_package_files_make_the_repository_installable() -> None:
    assert inspect(MemoryRepo({"setup.py": ""})).installable
    both = '[build-system]\nrequires = ["setuptools"]\n[project]\nname = "x"\n'
    assert inspect(MemoryRepo({"pyproject.toml": both})).installable
    # repo2docker installs a pyproject.toml project only when it has both tables.
    assert not inspect(MemoryRepo({"pyproject.toml": '[project]\nname = "x"\n'})).installable
    assert not inspect(MemoryRepo({"pyproject.toml": '[build-system]\nrequires = ["setuptools"]\n'})).installable


def test_missing_include_names_the_including_file() -> None:
    with pytest.raises(SpecError) as caught:
        inspect(MemoryRepo({
            "binder/requirements.txt": "-r sub/extra.txt\n",
            "binder/sub/extra.txt": "-r missing.txt\n",
        }))
    assert str(caught.value).startswith("binder/sub/extra.txt: included file 'binder/sub/missing.txt' does not exist")


def test_an_include_shared_by_two_files_is_read_once() -> None:
    files = {"requirements.txt": "-r a.txt\n-r b.txt\n", "a.txt": "-r common.txt\n", "b.txt": "-r common.txt\n", "common.txt": "numpy\n"}
    facts = inspect(MemoryRepo(files))
    assert [f.path for f in facts.requirements] == ["requirements.txt", "a.txt", "b.txt", "common.txt"]


@pytest.mark.parametrize(
    ("files", "cycle"),
    [
        ({"requirements.txt": "-r requirements.txt\nnumpy\n"}, "requirements.txt -> requirements.txt"),
        ({"requirements.txt": "-r extra.txt\nnumpy\n", "extra.txt": "-r requirements.txt\nscipy\n"},
         "requirements.txt -> extra.txt -> requirements.txt"),
    ],
)
def test_an_include_cycle_is_refused_as_pip_refuses_it(files: dict[str, str], cycle: str) -> None:
    # pip 23 dies of a RecursionError on it, later pips refuse it: say so at plan time, naming the chain.
    with pytest.raises(SpecError, match=f"-r includes form a cycle \\({cycle}\\)"):
        inspect(MemoryRepo(files))


def test_include_outside_the_repository_is_a_spec_error() -> None:
    # A user mistake in a declaration file must be a SpecError (exit code 4), not a crash.
    with pytest.raises(SpecError, match="requirements.txt"):
        inspect(MemoryRepo({"requirements.txt": "-r ../outside.txt\n"}))


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        ({"runtime.txt": "python-3.10\n"}, PythonRequest("3.10", "", "runtime.txt")),
        ({"binder/runtime.txt": "python-3.12\n"}, PythonRequest("3.12", "", "binder/runtime.txt")),
        (
            {"Pipfile": '[requires]\npython_version = "3.12"\n'},
            PythonRequest("3.12", "", "Pipfile [requires]"),
        ),
        (
            {"pyproject.toml": '[project]\nname = "x"\nrequires-python = ">=3.10"\n'},
            PythonRequest("", ">=3.10", "pyproject.toml requires-python"),
        ),
        (
            {"runtime.txt": "python-3.10\n", "Pipfile": '[requires]\npython_version = "3.12"\n'},
            PythonRequest("3.12", "", "Pipfile [requires]"),
        ),
        (
            {"Pipfile": '[requires]\npython_version = "3.12"\n', "pyproject.toml": '[project]\nrequires-python = ">=3.9"\n'},
            PythonRequest("3.12", "", "Pipfile [requires]"),
        ),
        ({"requirements.txt": "numpy\n"}, PythonRequest("", "", "")),
        (
            {"Pipfile": '[requires]\npython_version = "3.12"\n', "Pipfile.lock": '{"_meta": {"requires": {"python_version": "3.13"}}, "default": {}, "develop": {}}'},
            PythonRequest("3.13", "", "Pipfile.lock _meta.requires"),
        ),
        ({"Pipfile": '[requires]\npython_full_version = "3.13.1"\npython_version = "3.12"\n'}, PythonRequest("3.13", "", "Pipfile [requires]")),
        ({"Pipfile": "", "runtime.txt": "python-3.13\n"}, PythonRequest("3.13", "", "runtime.txt")),
        ({"runtime.txt": "python-3\n"}, PythonRequest("", "", "runtime.txt")),
        ({"runtime.txt": "python-3.12.1\n"}, PythonRequest("3.12", "", "runtime.txt")),
        ({"runtime.txt": "python-3\n", "pyproject.toml": '[project]\nrequires-python = ">=3.12"\n'}, PythonRequest("", ">=3.12", "pyproject.toml requires-python")),
        ({"environment.yml": "dependencies: [python=3.12]\n", "runtime.txt": "this is not read\n"}, PythonRequest("", "", "")),
        ({"Dockerfile": "FROM scratch\n", "runtime.txt": "nor this\n"}, PythonRequest("", "", "")),
    ],
    ids=["runtime.txt", "binder/runtime.txt", "Pipfile", "requires-python", "Pipfile beats runtime", "Pipfile beats pyproject", "none",
         "Pipfile.lock beats Pipfile", "python_full_version first", "Pipfile without version: runtime", "python-3 is the default",
         "patch version", "python-3 leaves requires-python", "environment.yml: runtime.txt not read", "Dockerfile: runtime.txt not read"],
)
def test_python_request_comes_from_the_first_file_that_asks(files: dict[str, str], expected: PythonRequest) -> None:
    assert inspect(MemoryRepo(files)).python == expected


@pytest.mark.parametrize(
    ("executables", "expected"),
    [
        (frozenset(), {"postBuild", "start"}),
        (frozenset({"postBuild"}), {"start"}),
        (frozenset({"postBuild", "start"}), set()),
    ],
)
def test_non_executable_scripts_are_recorded(executables: frozenset[str], expected: set[str]) -> None:
    repo = MemoryRepo({"postBuild": "#!/bin/sh\n", "start": '#!/bin/sh\nexec "$@"\n'}, executables)
    assert inspect(repo).not_executable == expected


@pytest.mark.parametrize("link", ["requirements.txt", "binder"])
def test_a_declaration_file_linked_from_outside_the_repository_is_refused(tmp_path: Path, link: str) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "requirements.txt").write_text("secret-token-from-the-host\n")
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / link).symlink_to(outside / "requirements.txt" if link == "requirements.txt" else outside)
    with pytest.raises(SpecError, match=r"is a symbolic link to \S+, outside the repository") as raised:
        inspect(DiskRepo(repo))
    assert "secret-token" not in str(raised.value)


def test_a_link_inside_the_repository_is_read(tmp_path: Path) -> None:
    (tmp_path / "deps").mkdir()
    (tmp_path / "deps" / "requirements.txt").write_text("pyparsing==3.1.2\n")
    (tmp_path / "requirements.txt").symlink_to("deps/requirements.txt")
    assert inspect(DiskRepo(tmp_path)).has("requirements.txt")


def test_a_loop_of_links_is_not_followed_out_of_the_repository(tmp_path: Path) -> None:
    (tmp_path / "requirements.txt").symlink_to("requirements.txt")
    # A loop is not a file: nothing escapes, and a declaration that cannot be read is refused (issue 17), not skipped.
    with pytest.raises(SpecError, match=r"^requirements.txt: is a loop of symbolic links, not a regular file"):
        inspect(DiskRepo(tmp_path))


@pytest.mark.parametrize("version", ["2.7", "3.5", "3.6", "3.7"])
def test_a_python_only_conda_provides_becomes_a_conda_environment(version: str) -> None:
    facts = inspect(MemoryRepo({"runtime.txt": f"python-{version}\n", "requirements.txt": "six==1.16.0\n"}))
    environment = facts.conda_environment
    assert environment is not None and environment.synthesized and environment.path == "runtime.txt"
    assert environment.dependencies == (f"python={version}", "pip", "ipykernel") and environment.pip == ("six==1.16.0",)
    assert environment.to_yaml() == (
        f"channels:\n  - conda-forge\ndependencies:\n  - python={version}\n  - pip\n  - ipykernel\n  - pip:\n      - \"six==1.16.0\"\n"
        "pip-repositories:\n  - \"https://pypi.org/simple\"\nallow-pypi-requests: false\n"
    )


def test_python_2_means_2_7_from_conda() -> None:
    environment = inspect(MemoryRepo({"runtime.txt": "python-2\n"})).conda_environment
    assert environment is not None and environment.dependencies[0] == "python=2.7" and environment.pip == ()


@pytest.mark.parametrize(("files", "message"), [
    ({"runtime.txt": "python-3.6\n", "requirements.txt": "-e .\n"}, "requirements.txt: '-e .' cannot be installed into a Python 3.6 conda environment yet"),
    ({"runtime.txt": "python-3.6\n", "requirements.txt": "--index-url https://x.example/simple\nsix\n"}, "requirements.txt: options and constraints files"),
])
def test_what_an_old_python_environment_cannot_hold_is_one_spec_error(files: dict[str, str], message: str) -> None:
    with pytest.raises(SpecError, match=re.escape(message)):
        inspect(MemoryRepo(files))


def test_an_old_python_beside_a_pipfile_is_refused_with_what_works() -> None:
    facts = inspect(MemoryRepo({"Pipfile": '[requires]\npython_version = "3.6"\n'}))
    assert facts.conda_environment is None
    with pytest.raises(SpecError, match="Python 3.6 comes only from conda, and r2env builds it from runtime.txt with requirements.txt"):
        choose_interpreter(facts.python)


@pytest.mark.parametrize(("files", "ignored"), [
    ({"environment.yml": "dependencies: [python=3.12]\n", "runtime.txt": "python-3.10\n"}, ("runtime.txt (environment.yml pins Python itself)",)),
    ({"Dockerfile": "FROM scratch\n", "runtime.txt": "python-3.10\n"}, ("runtime.txt (the Dockerfile is built as-is)",)),
    ({"Pipfile": '[requires]\npython_version = "3.11"\n', "runtime.txt": "python-3.10\n"}, ("runtime.txt (the Pipfile's Python version wins)",)),
    ({"requirements.txt": "six\n", "runtime.txt": "python-3.10\n"}, ()),
])
def test_an_ignored_runtime_txt_is_recorded_with_why(files: dict[str, str], ignored: tuple[str, ...]) -> None:
    facts = inspect(MemoryRepo(files))
    assert facts.ignored == ignored and (facts.runtime is None) == bool(ignored)


def test_runtime_txt_outside_requires_python_is_refused() -> None:
    with pytest.raises(SpecError, match=r"runtime.txt: python-3.10 is outside pyproject.toml's requires-python '>=3.12'"):
        inspect(MemoryRepo({"runtime.txt": "python-3.10\n", "pyproject.toml": '[project]\nrequires-python = ">=3.12"\n'}))


@pytest.mark.parametrize(("files", "found"), [
    ({"Project.toml": "", "requirements.txt": "six\n"}, "julia"),
    ({"binder/JuliaProject.toml": "", "binder/environment.yml": "dependencies: [python]\n"}, "julia"),
    ({"REQUIRE": "julia 0.6\n"}, "julia-require"),
    ({"REQUIRE": "julia 0.6\n", "Project.toml": ""}, "julia"),
    ({"default.nix": "", "environment.yml": "dependencies: [python]\n"}, "nix"),
    ({"DESCRIPTION": "Package: xy\n", "requirements.txt": "six\n"}, "r"),
    ({"runtime.txt": "r-2023-01-05\n", "environment.yml": "dependencies: [python]\n"}, "r"),
    ({"binder/requirements.txt": "six\n", "DESCRIPTION": "Package: x\n"}, "python"),  # repo2docker reads DESCRIPTION only without binder/
    ({"Dockerfile": "FROM scratch\n", "Project.toml": ""}, "dockerfile"),
])
def test_declarations_r2env_cannot_build_are_detected_in_repo2dockers_order(files: dict[str, str], found: str) -> None:
    facts = inspect(MemoryRepo(files))
    assert select(facts, load_buildpacks()).primary.name == found
