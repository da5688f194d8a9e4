"""What is wrong with a routes.yaml: ``file:line: key.path: message``, kept readable.

Every problem names the file, the line and the key; all of them are collected
before failing, sorted by line. The text is capped — the first
``MAX_SHOWN`` problems, each at most ``MAX_PROBLEM_CHARS`` characters, then
"… and K more" — so a hostile or huge file can't turn ``/_gateway/health`` or
the log into megabytes (issue 14).
"""
from __future__ import annotations

import difflib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

MAX_SHOWN = 20  # problems in an error's text (all stay in .problems)
MAX_PROBLEM_CHARS = 300  # one problem's line
MAX_SHOWN_VALUE = 60  # characters of a bad value quoted back


@dataclass(frozen=True)
class Problem:
    file: str
    line: int
    key: str
    message: str

    def __str__(self) -> str:
        return clip(f"{self.file}:{self.line}: {self.key}: {self.message}", MAX_PROBLEM_CHARS)


class RoutesError(Exception):
    """routes.yaml (or the file it names) can't be used; ``problems`` says why.

    Named apart from ``services.common.settings.SettingsError`` (environment)."""

    def __init__(self, problems: Iterable[Problem]):
        unique = list(dict.fromkeys(problems))  # one report per distinct problem
        self.problems = sorted(unique, key=lambda p: p.line)
        super().__init__(self.text())

    def text(self, limit: int = MAX_SHOWN) -> str:
        lines = [str(p) for p in self.problems[:limit]]
        hidden = len(self.problems) - limit
        if hidden > 0:
            lines.append(f"… and {hidden} more problem(s)")
        return "\n".join(lines)


def clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def shown(value: Any) -> str:
    """A bad value quoted back in a message, never more than a few dozen characters."""
    if isinstance(value, (dict, list, tuple)):
        return {dict: "a mapping", list: "a list", tuple: "a list"}[type(value)]
    return clip(repr(value), MAX_SHOWN_VALUE)


def did_you_mean(word: Any, options: Iterable[str]) -> str:
    if not isinstance(word, str) or len(word) > 64:
        return ""
    close = difflib.get_close_matches(word, list(options), n=1)
    return f" (did you mean '{close[0]}'?)" if close else ""
