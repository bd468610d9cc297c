"""Turn the output of a failed build step into one sentence, for failures whose cause is known."""

from __future__ import annotations

import re

from r2env.errors import BuildError

# pip's report (https://pip.pypa.io/en/stable/topics/secure-installs/#hash-checking-mode):
#     NAME==VERSION from URL (from -r FILE (line N)):
#         Expected sha256 AAAA
#              Got        BBBB
_HASH_REPORT = re.compile(
    r"(?P<package>[A-Za-z0-9._-]+==\S+) from [^\n]*\n\s*Expected sha256 (?P<expected>[0-9a-f]{64})(?:\s*\n\s*or sha256 [0-9a-f]{64})*\s*\n\s*Got\s+(?P<got>[0-9a-f]{64})"
)
# uv's (r2env/uv_installer.py), whether or not it draws the tree ("cause:" without a terminal, "╰─▶" with one):
#     Hash mismatch for `NAME==VERSION`  Expected: sha256:AAAA ... Computed: sha256:BBBB
#     No solution found when resolving dependencies ... Because ..., we can conclude that your requirements are unsatisfiable.
_UV_HASH_REPORT = re.compile(
    r"Hash mismatch for `(?P<package>[^`]+)`\s*Expected:\s*sha256:(?P<expected>[0-9a-f]{64})(?:\s*sha256:[0-9a-f]{64})*\s*Computed:\s*sha256:(?P<got>[0-9a-f]{64})"
)
_UV_NO_SOLUTION = re.compile(
    r"No solution found when resolving dependencies:?\s*\n\s*(?:cause:|╰─▶)\s*(?P<cause>Because .*?unsatisfiable\.)"
    r"(?:\s*\n\s*hint: (?P<hint>[^\n]+))?",
    re.DOTALL,
)
# uv names the package between backticks in hints; the cause sentence is wrapped over several lines in a terminal.
_WRAPPED = re.compile(r"\s*\n\s*(?:│\s*)?")
_APT_MISSING_VERSION = re.compile(r"E: Version '(?P<version>[^']+)' for '(?P<package>[^']+)' was not found")


def explain(error: BuildError) -> BuildError:
    """The same error, led by a sentence that names the cause when the output shows a known one."""
    if match := _HASH_REPORT.search(error.details) or _UV_HASH_REPORT.search(error.details):
        return BuildError(
            f"{match['package']} does not match its locked hash: the lock expects sha256:{match['expected']}, "
            f"the download is sha256:{match['got']}",
            "if the lock was edited, regenerate it with `r2env lock`; otherwise the package index served "
            "different bytes: do not trust it until you know why",
            details=error.details,
        )
    if match := _UV_NO_SOLUTION.search(error.details):
        cause = _WRAPPED.sub(" ", match["cause"])
        hint = _WRAPPED.sub(" ", match["hint"]) if match["hint"] else ""
        return BuildError(
            f"the Python packages cannot be installed: {cause[0].lower()}{cause[1:]}" + (f" ({hint.rstrip('.')})" if hint else ""),
            "change the requirement it names (a version that exists, for Linux and this Python), or the Python in runtime.txt; "
            "with r2env.lock, run `r2env lock` again",
            details=error.details,
        )
    if match := _APT_MISSING_VERSION.search(error.details):
        return BuildError(
            f"the Debian mirror no longer has {match['package']} {match['version']}, which the lock pins",
            "bootstrap the base from a snapshot mirror (--mirror http://snapshot.debian.org/archive/debian/<date>), or relock",
            details=error.details,
        )
    return error
