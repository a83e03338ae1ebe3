"""What every subcommand and script shares: exit codes, the one-line user error, label=path arguments."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TypeVar

__all__ = [
    "EXIT_INTERRUPTED",
    "EXIT_NOTHING",
    "EXIT_OK",
    "EXIT_SOME_FAILED",
    "UserError",
    "batch_exit_code",
    "labelled_path",
    "per_labelled_folder",
]

T = TypeVar("T")

EXIT_OK, EXIT_SOME_FAILED, EXIT_NOTHING, EXIT_INTERRUPTED = 0, 1, 2, 130


def batch_exit_code(n_done: int, n_failed: int) -> int:
    """The exit code of a batch: 0 all done, 1 some failed, 2 every case failed."""
    if not n_failed:
        return EXIT_OK
    return EXIT_SOME_FAILED if n_done else EXIT_NOTHING


class UserError(Exception):
    """A problem with the user's input, reported on one line without a traceback."""


def labelled_path(item: str) -> tuple[str, Path]:
    """``label=path`` as (label, path); a plain path gives the label "".

    Either side may hold "=": an item that is an existing path is plain, otherwise the first "=" whose
    right-hand side exists splits it, and where none does, the first "=" (so that the error that follows
    names the folder the user meant).
    """
    if Path(item).exists() or "=" not in item:
        return "", Path(item)
    cuts = [i for i, c in enumerate(item) if c == "="]
    at = next((i for i in cuts if Path(item[i + 1 :]).exists()), cuts[0])
    return item[:at], Path(item[at + 1 :])


def per_labelled_folder(items: Iterable[str], measure: Callable[[Path], T]) -> tuple[dict[str, T], list[str]]:
    """``{label: measure(folder)}`` over ``label=folder`` items (:func:`labelled_path`; a plain folder
    is labelled by its path), and the items that failed (``"<item>: <why>"``, OSError or ValueError),
    each also printed to stderr as skipped, so one bad folder does not stop the others."""
    import sys

    results: dict[str, T] = {}
    failed: list[str] = []
    for item in items:
        label, folder = labelled_path(item)
        try:
            results[label or str(folder)] = measure(folder)
        except (OSError, ValueError) as e:
            failed.append(f"{item}: {e}")
            print(f"skipped {item}: {e}", file=sys.stderr)
    return results, failed
