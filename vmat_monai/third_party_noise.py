"""Silencing third-party messages that say nothing to our users (each named, with why).

- MONAI's ``NvImgCodecPydicomReader`` is built with every ``LoadImage`` and, without a CUDA build of
  nvImageCodec, logs and warns that its GPU DICOM decoder is unavailable; our chains read NIfTI
  and our DICOM reading uses pydicom directly, so nothing is lost.
- Lightning's advertisement for its cloud logger (``💡 Tip: ... litlogger``) on every training.

Called by the ``vmat-monai`` command and the bundle's ``initialize``; importing the package
changes nothing. Orientationd's deprecation notice is fixed at its cause (the presets pass its
``labels`` explicitly).
"""

from __future__ import annotations

import logging
import warnings

__all__ = ["quiet_third_party"]


class _DropPrefix(logging.Filter):
    def __init__(self, prefix: str):
        super().__init__()
        self.prefix = prefix

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.getMessage()).startswith(self.prefix)


def quiet_third_party() -> None:
    """Silence the messages listed in the module docstring (idempotent)."""
    logging.getLogger("monai.data.nvimgcodec_pydicom_plugin").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", message="NvImgCodecPydicomReader: nvImageCodec", category=UserWarning)
    for name in ("pytorch_lightning.utilities.rank_zero", "lightning.pytorch.utilities.rank_zero"):
        log = logging.getLogger(name)
        if not any(isinstance(f, _DropPrefix) for f in log.filters):
            log.addFilter(_DropPrefix("💡 Tip:"))
