"""What an error line may echo of its input: no credentials, no control characters, no more than an excerpt.

Applied once where errors leave r2env (the CLI's `r2env: error:` line, the daemon's error JSON), so every message
is safe however it was built. Pure functions of text."""

from __future__ import annotations

import re

# The password of a URL's userinfo (RFC 3986 section 3.2.1: `user:password@` is deprecated precisely because it
# leaks): `https://user:secret@host` is shown as `https://user:***@host`.
# Linear on any input: a scheme starts where no scheme character precedes it and is bounded, as are user and password
# (an unanchored `[A-Za-z][A-Za-z0-9+.-]*://` is quadratic: 11 s on a 100,000-letter word).
_USERINFO = re.compile(
    r"(?P<scheme>(?<![A-Za-z0-9+.-])[A-Za-z][A-Za-z0-9+.-]{0,31}://)(?P<user>[^:/?#@\s]{0,1024}):(?P<password>[^/?#@\s]{0,1024})@"
)
# Credentials passed as query parameters or KEY=VALUE words (the daemon's `?token=`, an index's `password=`).
_PARAMETER = re.compile(r"(?P<key>\b(?:token|access_token|auth|password|passwd|secret|api_key|apikey)=)(?P<value>[^&\s'\"]+)", re.IGNORECASE)
# Anything a terminal or a log reader would act on: C0 and C1 controls, DEL, Unicode line and paragraph separators.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
# A word of more than this many characters is cut to its ends: a 100,000-character value says nothing more.
WORD_LIMIT = 240  # longer than any path r2env prints of its own (a pytest tmp path is ~120)
LINE_LIMIT = 1000
_LONG_WORD = re.compile(r"\S{%d,}" % (WORD_LIMIT + 1))
_LONG_SPACE = re.compile(r"\s{%d,}" % (WORD_LIMIT + 1))
REDACTED = "***"


def redact(text: str) -> str:
    """`text` without URL passwords and token/password parameter values."""
    text = _USERINFO.sub(lambda m: f"{m['scheme']}{m['user']}:{REDACTED}@", text)
    return _PARAMETER.sub(lambda m: m["key"] + REDACTED, text)


def _escape(match: re.Match[str]) -> str:
    char = match.group()
    return {"\n": "\\n", "\r": "\\r", "\t": "\\t"}.get(char, f"\\x{ord(char):02x}" if ord(char) < 0x100 else f"\\u{ord(char):04x}")


def one_line(text: str) -> str:
    """`text` with control characters shown as escapes (`\\n`), so it cannot split or rewrite a log line."""
    return _CONTROL.sub(_escape, text)


def shorten(text: str, limit: int = LINE_LIMIT) -> str:
    """`text` if it has at most `limit` characters, else its start and end around a count of what was left out."""
    if len(text) <= limit:
        return text
    head = limit * 2 // 3
    tail = limit - head
    return f"{text[:head]}…[{len(text) - head - tail:,} characters]…{text[-tail:]}"


def _shorten_word(match: re.Match[str]) -> str:
    return shorten(match.group(), WORD_LIMIT)


def safe_line(text: str, limit: int = LINE_LIMIT) -> str:
    """One printable line of at most about `limit` characters, without credentials: how errors are shown."""
    text = one_line(redact(text))
    text = _LONG_SPACE.sub(lambda m: f" …[{len(m.group()):,} blanks]… ", text)
    return shorten(_LONG_WORD.sub(_shorten_word, text), limit)
