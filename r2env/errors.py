"""One error hierarchy. Each error carries what the user should do; the CLI maps classes to exit codes."""

from __future__ import annotations


# The exit code of a run the user interrupted (Ctrl-C), as shells report a SIGINT death (128 + 2).
EXIT_INTERRUPTED = 130


class R2envError(Exception):
    """Base of every error r2env reports to a user."""

    exit_code = 1

    def __init__(self, message: str, hint: str = "", details: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.details = details  # output that explains the error (a failed step's last lines), shown before it

    def __str__(self) -> str:
        return f"{self.message}: {self.hint}" if self.hint else self.message


class UsageError(R2envError):
    """The command line or configuration is wrong."""

    exit_code = 2


class SourceError(R2envError):
    """The repository cannot be fetched: missing path, clone failure, unknown ref."""

    exit_code = 3


class SpecError(R2envError):
    """The repository's declaration files are malformed or ask for something unsupported."""

    exit_code = 4


class BuildError(R2envError):
    """A build step failed."""

    exit_code = 5


class BaseImageError(R2envError):
    """The base image is neither present, pullable, nor bootstrappable."""

    exit_code = 6


class EngineUnavailableError(R2envError):
    """The container engine cannot be reached."""

    exit_code = 7


class LockError(R2envError):
    """r2env.lock is stale, corrupt, or cannot be made (unsatisfiable requirements)."""

    exit_code = 8


class LaunchError(R2envError):
    """A container cannot be started or its server never became ready."""

    exit_code = 10
class PushError(R2envError):
    """The registry cannot be reached, refuses the credentials, or refuses the push."""

    exit_code = 9
