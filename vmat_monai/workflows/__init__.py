"""Workflows: the library's end-to-end jobs as functions with typed options.

- :mod:`~vmat_monai.workflows.demo`: the synthetic end-to-end demo (cohort -> check -> conversion
  -> training -> prediction -> evaluation -> what-if), ``vmat-monai demo``.
- :mod:`~vmat_monai.workflows.what_if`: one case predicted with its own and with changed goals.
- :mod:`~vmat_monai.workflows.openkbp`: the OpenKBP job (convert -> train -> predict -> score ->
  submission files).
- :mod:`~vmat_monai.workflows.text`: the tables and summaries the workflows and the CLI print.

The CLI, ``scripts/benchmark.py`` and the tests call these; they report progress through a
``report`` callable (one line at a time) and ``progress`` bars.
"""

from vmat_monai.workflows.demo import DEMO_CONFIGS, DemoOptions, DemoResult, run_demo
from vmat_monai.workflows.openkbp import OpenKBPOptions, OpenKBPResult, run_openkbp
from vmat_monai.workflows.what_if import what_if

__all__ = [
    "DEMO_CONFIGS",
    "DemoOptions",
    "DemoResult",
    "OpenKBPOptions",
    "OpenKBPResult",
    "run_demo",
    "run_openkbp",
    "what_if",
]
