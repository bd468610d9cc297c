"""Known failures of a build step become one sentence that names the cause."""

from __future__ import annotations

import pytest

from r2env.errors import BuildError
from r2env.explain import explain

EXPECTED = "a" * 64
GOT = "b6a85871a79d2e3b22d2d1b94ac2824226a63c6b741c88f7ae975f18b6778374"
PIP_REPORT = f"""ERROR: THESE PACKAGES DO NOT MATCH THE HASHES FROM THE REQUIREMENTS FILE. If you have updated the package versions, please update the hashes.
    iniconfig==2.0.0 from https://files.pythonhosted.org/packages/ef/a6/iniconfig-2.0.0-py3-none-any.whl (from -r /tmp/r2env-dependencies.txt (line 1)):
        Expected sha256 {EXPECTED}
             or sha256 {"c" * 64}
             Got        {GOT}
"""


def test_a_hash_mismatch_names_the_package_and_both_hashes() -> None:
    error = explain(BuildError("build step failed: RUN pip install", "fix the step", details=PIP_REPORT))
    assert error.message == (
        f"iniconfig==2.0.0 does not match its locked hash: the lock expects sha256:{EXPECTED}, the download is sha256:{GOT}"
    )
    assert "r2env lock" in error.hint and error.details == PIP_REPORT


def test_a_version_gone_from_the_mirror_says_what_to_do() -> None:
    details = "E: Version '2.36-9+deb12u9' for 'libc6' was not found"
    error = explain(BuildError("build step failed: RUN apt-get install", details=details))
    assert error.message == "the Debian mirror no longer has libc6 2.36-9+deb12u9, which the lock pins"
    assert "snapshot" in error.hint


def test_an_unknown_failure_is_left_as_it_is() -> None:
    original = BuildError("build step failed: RUN make", "fix the step", details="make: *** [all] Error 2")
    assert explain(original) is original


# uv's reports (r2env/uv_installer.py installs every pip path), as a BuildKit step prints them: without a terminal
# uv writes "cause:"; with one it draws "╰─▶" and wraps the sentence.
UV_HASH_REPORT = f"""Resolved 1 package in 73ms
error: Failed to download `iniconfig==2.0.0`
  cause: Hash mismatch for `iniconfig==2.0.0`

         Expected:
           sha256:{EXPECTED}
           sha256:{"c" * 64}

         Computed:
           sha256:{GOT}
"""


def test_a_uv_hash_mismatch_names_the_package_and_both_hashes() -> None:
    error = explain(BuildError("build step failed: RUN uv pip install", "fix the step", details=UV_HASH_REPORT))
    assert error.message == (
        f"iniconfig==2.0.0 does not match its locked hash: the lock expects sha256:{EXPECTED}, the download is sha256:{GOT}"
    )


@pytest.mark.parametrize("report", [
    "error: No solution found when resolving dependencies\n  cause: Because there is no version of iniconfig==99 and you require "
    "iniconfig==99, we can conclude that your requirements are unsatisfiable.\n",
    "  × No solution found when resolving dependencies:\n  ╰─▶ Because there is no version of iniconfig==99 and you require\n"
    "      iniconfig==99, we can conclude that your requirements are unsatisfiable.\n",
])
def test_an_unsatisfiable_requirement_is_one_sentence_naming_it(report: str) -> None:
    error = explain(BuildError("build step failed: RUN uv pip install", "fix the step", details=report))
    assert error.message == ("the Python packages cannot be installed: because there is no version of iniconfig==99 and you require "
                             "iniconfig==99, we can conclude that your requirements are unsatisfiable.")
    assert "r2env lock" in error.hint and "\n" not in error.message


def test_a_package_without_a_wheel_for_linux_says_which_platforms_it_has() -> None:
    report = ("error: No solution found when resolving dependencies\n  cause: Because pywin32==306 has no wheels with a matching platform "
              "tag (e.g., `manylinux_2_36_x86_64`) and you require pywin32==306, we can conclude that your requirements are "
              "unsatisfiable.\n\nhint: Wheels are available for `pywin32` (v306) on the following platforms: `win32`, `win_amd64`\n")
    error = explain(BuildError("build step failed: RUN uv pip install", details=report))
    assert error.message.startswith("the Python packages cannot be installed: because pywin32==306 has no wheels with a matching platform tag")
    assert error.message.endswith("(Wheels are available for `pywin32` (v306) on the following platforms: `win32`, `win_amd64`)")
