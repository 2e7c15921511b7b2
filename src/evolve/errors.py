"""The exceptions whose message is meant for a person.

Core code raises these; `cli.py` prints the message to stderr and exits with `exit_code`.
Anything else that escapes is a bug and shows a traceback.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from dataclasses import dataclass


class EvolveError(Exception):
    """An error a user can act on. The message is shown as is; `exit_code` is the documented one."""

    exit_code = 1


class StoreError(EvolveError):
    """The workspace cannot be read or written: a corrupted, read-only or full state store, or an
    event log that cannot be appended to. `kind`: corrupt | readonly | full | other."""

    exit_code = 1

    def __init__(self, message: str, kind: str = "other"):
        super().__init__(message)
        self.kind = kind


class UsageError(EvolveError):
    """Bad command-line input: a malformed --args, an unknown run id, a missing path."""

    exit_code = 2


@dataclass(frozen=True)
class Problem:
    """One located problem in an experience: `file:line:col: message [json.path]`."""

    file: str
    line: int
    col: int
    message: str
    json_path: str = "$"

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.col}: {self.message} [{self.json_path}]"


class SpecError(EvolveError):
    """An invalid experience. Carries every problem found, not just the first."""

    exit_code = 2

    def __init__(self, problems: list[Problem]):
        self.problems = sorted(problems, key=lambda p: (p.file, p.line, p.col, p.message))
        super().__init__("\n".join(str(p) for p in self.problems))


def did_you_mean(word: object, candidates: Iterable[object]) -> str:
    """ "; did you mean 'x'?" for the closest candidate, or "" when none is close."""
    match = difflib.get_close_matches(str(word), [str(c) for c in candidates], n=1, cutoff=0.6)
    return f"; did you mean '{match[0]}'?" if match else ""
