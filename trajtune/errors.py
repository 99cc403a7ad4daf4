"""Domain errors. Stages raise these; only the CLI turns them into a message and an exit code."""
from __future__ import annotations


class TrajtuneError(Exception):
    """Base class. ``exit_code`` is what the CLI exits with."""

    exit_code = 1

    def __init__(self, message: str, *, path: str | None = None, line: int | None = None, hint: str | None = None):
        self.message = message
        self.path = path
        self.line = line
        self.hint = hint
        super().__init__(self.render())

    def render(self) -> str:
        where = ""
        if self.path is not None:
            where = f"{self.path}:{self.line}: " if self.line is not None else f"{self.path}: "
        text = where + self.message
        if self.hint:
            text += f" ({self.hint})"
        return text


class DataError(TrajtuneError):
    """Bad input data: exit 1."""

    exit_code = 1


class RunError(TrajtuneError):
    """A run failed (training diverged, verification failed, ...): exit 1."""

    exit_code = 1


class ConfigError(TrajtuneError):
    """Bad configuration or usage: exit 2."""

    exit_code = 2


class UsageError(ConfigError):
    """Bad flags or unreadable paths: exit 2."""
