"""The one error type users see: a message naming the file or key, and a hint on what to do."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class AutosrError(Exception):
    """Bad input or an impossible request. The CLI prints it on one line and exits 2."""

    exit_code = 2

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message} — {self.hint}" if self.hint else self.message


class AutosrRuntimeError(AutosrError):
    """A failure while running (not the user's input): exit code 1."""

    exit_code = 1


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """A ' (did you mean X?)' suffix for the closest choice, or '' when nothing is close."""
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""
