"""choose_interpreter: Debian's python3 when a suite ships the requested version, a uv build otherwise."""

from __future__ import annotations

import pytest

from r2env.errors import SpecError
from r2env.inspect import PythonRequest
from r2env.interpreter import choose_interpreter


@pytest.mark.parametrize(
    ("request_", "version", "source", "suite"),
    [
        (PythonRequest("", "", ""), "3.11", "debian", "bookworm"),
        (PythonRequest("3.11", "", "runtime.txt"), "3.11", "debian", "bookworm"),
        (PythonRequest("3.13", "", "runtime.txt"), "3.13", "debian", "trixie"),
        (PythonRequest("3.10", "", "runtime.txt"), "3.10", "uv", "bookworm"),
        (PythonRequest("3.12", "", "Pipfile [requires] python_version"), "3.12", "uv", "bookworm"),
        (PythonRequest("", ">=3.12", "pyproject.toml requires-python"), "3.13", "debian", "trixie"),
        (PythonRequest("", ">=3.10", "pyproject.toml requires-python"), "3.11", "debian", "bookworm"),
        (PythonRequest("", ">=3.8,<3.11", "pyproject.toml requires-python"), "3.10", "uv", "bookworm"),
        (PythonRequest("", "==3.12.*", "pyproject.toml requires-python"), "3.12", "uv", "bookworm"),
    ],
    ids=["nothing", "3.11", "3.13", "3.10", "3.12", ">=3.12", ">=3.10", ">=3.8,<3.11", "==3.12.*"],
)
def test_interpreter_and_suite_for_a_request(request_: PythonRequest, version: str, source: str, suite: str) -> None:
    interpreter, chosen_suite = choose_interpreter(request_)
    assert (interpreter.version, interpreter.source, chosen_suite) == (version, source, suite)
    assert interpreter.reason


def test_default_suite_changes_the_unrequested_python() -> None:
    interpreter, suite = choose_interpreter(PythonRequest("", "", ""), "trixie")
    assert (interpreter.version, interpreter.source, suite) == ("3.13", "debian", "trixie")


@pytest.mark.parametrize(
    ("request_", "message"),
    [
        (PythonRequest("", "<3.0", "pyproject.toml requires-python"), "pyproject.toml requires-python: no known Python satisfies '<3.0'"),
        (PythonRequest("", ">=3.99", "pyproject.toml requires-python"), "pyproject.toml requires-python: no known Python satisfies '>=3.99'"),
        (PythonRequest("2.7", "", "runtime.txt"), "runtime.txt: Python 2.7 comes only from conda"),
        (PythonRequest("3.4", "", "runtime.txt"), "runtime.txt: Python 3.4 is not a version r2env knows"),
    ],
)
def test_unsatisfiable_request_is_a_spec_error(request_: PythonRequest, message: str) -> None:
    with pytest.raises(SpecError) as caught:
        choose_interpreter(request_)
    assert str(caught.value).startswith(message)
