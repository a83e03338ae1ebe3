"""What every subcommand shares: exit codes and the one-line user error."""

from __future__ import annotations

__all__ = ["EXIT_INTERRUPTED", "EXIT_NOTHING", "EXIT_OK", "EXIT_SOME_FAILED", "UserError", "batch_exit_code"]

EXIT_OK, EXIT_SOME_FAILED, EXIT_NOTHING, EXIT_INTERRUPTED = 0, 1, 2, 130


def batch_exit_code(n_done: int, n_failed: int) -> int:
    """The exit code of a batch: 0 all done, 1 some failed, 2 every case failed."""
    if not n_failed:
        return EXIT_OK
    return EXIT_SOME_FAILED if n_done else EXIT_NOTHING


class UserError(Exception):
    """A problem with the user's input, reported on one line without a traceback."""
