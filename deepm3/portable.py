"""Paths and commands as committed records show them: no absolute path of the machine that ran.

A run record, a benchmark result or a suite config is committed and read on other machines, so
the folders it names must mean the same there. An absolute path inside the working directory
(the checkout) is shown relative to it, one beside the checkout (the shared data,
``../shared/data``) relative too, and one in the temporary folder as ``$TMPDIR/...``; any other
path, and everything that is not an absolute path, is kept as given.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from pathlib import Path, PurePosixPath


def _inside(path: PurePosixPath, folder: Path) -> str | None:
    """``path`` relative to ``folder`` (``.`` for the folder itself), None outside it."""
    for base in {PurePosixPath(folder), PurePosixPath(os.path.realpath(folder))}:
        if path.is_relative_to(base):
            return path.relative_to(base).as_posix()
    return None


def portable_path(value: str, cwd: str | Path | None = None, *, openable: bool = False) -> str:
    """``value`` as a committed record shows it (see the module docstring); ``cwd``: the
    working directory it is relative to (default: the process's). ``openable``: only the
    relative forms, which still open the same folder from ``cwd`` (no ``$TMPDIR``)."""
    if not value.startswith("/"):
        return value
    path = PurePosixPath(os.path.normpath(value))
    here = Path(cwd if cwd is not None else os.getcwd())
    inside = _inside(path, here)
    if inside is not None:
        return inside
    temporary = None if openable else _inside(path, Path(tempfile.gettempdir()))
    if temporary is not None:
        return "$TMPDIR" if temporary == "." else f"$TMPDIR/{temporary}"
    beside = _inside(path, here.parent) if here.parent != here else None
    if beside is not None:
        return f"../{beside}"
    return value


def portable_argument(argument: str, cwd: str | Path | None = None) -> str:
    """One command-line argument: a path, ``--option=path`` or a ``key=path`` override."""
    if "=" in argument and not argument.startswith("/"):
        key, value = argument.split("=", 1)
        return f"{key}={portable_path(value, cwd)}"
    return portable_path(argument, cwd)


def portable_command(argv: Sequence[str], cwd: str | Path | None = None) -> str:
    """``argv`` joined with spaces, each argument as :func:`portable_argument` shows it."""
    return " ".join(portable_argument(argument, cwd) for argument in argv)
