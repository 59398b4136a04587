"""`~` in a path the user typed, expanded without pathlib's RuntimeError for an unknown user."""

from __future__ import annotations

import os
from pathlib import Path


def expand_home(path: str | os.PathLike) -> Path:
    """`~` and `~user` expanded; ValueError (one line) for a user this machine does not know,
    where pathlib raises RuntimeError and os.path would keep `~user` as a folder name."""
    text = os.fspath(path)
    expanded = os.path.expanduser(text)
    if text.startswith("~") and expanded == text:
        user = text[1:].split("/", 1)[0]
        raise ValueError(f"{text}: no home folder for {'~' + user if user else '~ ($HOME unset)'} here; "
                         "allowed: ~/... , ~USER/... of a user on this machine, or a path without ~")
    return Path(expanded)
