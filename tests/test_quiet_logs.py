"""Clean logs: third-party noise silenced, progress as plain lines when the output is not a terminal."""

from __future__ import annotations

import io
import logging
import warnings

from vmat_monai.progress_lines import ProgressLines, is_terminal
from vmat_monai.third_party_noise import quiet_third_party


def test_building_a_chain_says_nothing_after_quiet_third_party(caplog):
    from vmat_monai.transforms import val_transforms

    with warnings.catch_warnings(record=True) as caught, caplog.at_level(logging.INFO):
        warnings.simplefilter("default")
        quiet_third_party()
        val_transforms([0], pixdim=(4.0, 4.0, 4.0))
    noise = [str(w.message) for w in caught if "nvImageCodec" in str(w.message) or "Orientationd" in str(w.message)]
    assert not noise
    assert not [r for r in caplog.records if "nvImageCodec" in r.getMessage()]


def test_progress_lines_are_whole_lines_and_throttled():
    out = io.StringIO()
    lines = ProgressLines("predict", 5, every_s=3600, stream=out)
    for i in range(6):
        lines.update(i, f"case_{i}")
    text = out.getvalue()
    assert "\r" not in text
    assert [line.split(" (")[0] for line in text.splitlines()] == ["predict: 0/5 case_0", "predict: 5/5 case_5"]
    assert not is_terminal(out)
