"""Errors shared by every input source (DICOM-RT, research NPZ, OpenKBP CSV)."""

from __future__ import annotations

__all__ = ["SourceInputError"]


class SourceInputError(Exception):
    """A problem with a case's input files that the user must fix; the message names the case or
    file and the fix. Converters turn it into a per-case failure and go on with the other cases."""
