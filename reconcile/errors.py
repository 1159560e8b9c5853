"""The exception tree. The library raises only these; the CLI turns them into a message and
an exit code (docs/contract.md, "Exit codes": 1 = could not do its job).

    ReconError                  base; `exit_code` 1
    ├── ConfigError             a setting or recon.toml is invalid
    ├── DatabaseError           the store cannot be opened or used
    │   └── DatabaseLockedError another process holds the write lock past the timeout
    └── InputFileError          a file cannot be read at all; nothing from it was loaded

Every message says what is wrong and what to do about it. Messages never carry raw input
values that could hold card numbers or secrets.
"""

from __future__ import annotations


class ReconError(Exception):
    exit_code = 1


class ConfigError(ReconError):
    """A setting is invalid: the message names the key and the expected form."""


class DatabaseError(ReconError):
    """The database file cannot be opened or used."""


class DatabaseLockedError(DatabaseError):
    """Another process kept the write lock for longer than the lock timeout."""


class MemoryLimitError(DatabaseError):
    """Work needed more memory than `memory_limit` allows, even on one thread; nothing was
    stored."""


class InputFileError(ReconError):
    """A file that cannot be read at all. Carries the path, the problem and what to do."""

    def __init__(self, path: str, problem: str, hint: str = "") -> None:
        self.path = path
        self.problem = problem
        self.hint = hint
        message = f"{path}: {problem}"
        if hint:
            message += f"\n  what to do: {hint}"
        message += "\n  nothing from this file was loaded."
        super().__init__(message)
