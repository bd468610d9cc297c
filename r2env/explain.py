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
_APT_MISSING_VERSION = re.compile(r"E: Version '(?P<version>[^']+)' for '(?P<package>[^']+)' was not found")


def explain(error: BuildError) -> BuildError:
    """The same error, led by a sentence that names the cause when the output shows a known one."""
    if match := _HASH_REPORT.search(error.details):
        return BuildError(
            f"{match['package']} does not match its locked hash: the lock expects sha256:{match['expected']}, "
            f"the download is sha256:{match['got']}",
            "if the lock was edited, regenerate it with `r2env lock`; otherwise the package index served "
            "different bytes: do not trust it until you know why",
            details=error.details,
        )
    if match := _APT_MISSING_VERSION.search(error.details):
        return BuildError(
            f"the Debian mirror no longer has {match['package']} {match['version']}, which the lock pins",
            "bootstrap the base from a snapshot mirror (--mirror http://snapshot.debian.org/archive/debian/<date>), or relock",
            details=error.details,
        )
    return error
