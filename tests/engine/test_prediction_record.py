"""Re-running a prediction: finished cases are reused, stale or incomplete ones predicted again."""

import json
import os

import nibabel as nib
import numpy as np
import pytest
import torch

from tests.engine.stub_networks import Offset
from vmat_monai.data.case_folder import CASE_JSON, case_item
from vmat_monai.engine.inputs import model_inputs
from vmat_monai.engine.predict import PRED_NAME, STD_NAME, DosePredictor
from vmat_monai.engine.prediction_record import RECORD_NAME, request_fingerprint


def _ckpt(path, level):
    torch.save({"state_dict": {"network.level": torch.tensor(level)}}, path)
    return path


def _predictor(ckpt):
    inputs = model_inputs(prior_channels=0)
    return DosePredictor(Offset(), ckpt, inputs, roi_size=(16, 16, 16), pixdim=(6, 6, 6), device="cpu")


def _max_relative(case_dir, item):
    return float(np.max(nib.load(str(case_dir / PRED_NAME)).get_fdata())) / item["prescription_gy"]


def test_a_rerun_reuses_finished_cases_and_predicts_the_missing_and_stale_ones(converted, tmp_path):
    data, _ = converted
    items = [case_item(p) for p in sorted(data.iterdir()) if (p / CASE_JSON).exists()]
    assert len(items) == 2
    out = tmp_path / "pred"
    a = _ckpt(tmp_path / "a.ckpt", 0.5)
    first = _predictor(a)
    written = first.predict_items(items, out)
    dirs = [out / it["case_id"] for it in items]
    assert written == [d / PRED_NAME for d in dirs] and first.reused == 0
    stamps = [(d / PRED_NAME).stat().st_mtime_ns for d in dirs]
    assert _max_relative(dirs[0], items[0]) == pytest.approx(0.5, abs=1e-3)
    record = json.loads((dirs[0] / RECORD_NAME).read_text())
    assert record["request_sha256"] == first.request_sha256(items[0])

    # the same request again: nothing predicted, the same paths returned
    again = _predictor(a)
    assert again.predict_items(items, out) == written and again.reused == 2
    assert [(d / PRED_NAME).stat().st_mtime_ns for d in dirs] == stamps
    # a crash after the dose but before the record: that case alone is predicted again
    (dirs[1] / RECORD_NAME).unlink()
    again.predict_items(items, out)
    assert again.reused == 1 and (dirs[1] / RECORD_NAME).is_file()
    assert (dirs[0] / PRED_NAME).stat().st_mtime_ns == stamps[0]
    # other goals or the flip TTA are another request
    again.predict_items(items, out, constraint_overrides={"rectum_V70": 0.1})
    assert again.reused == 0
    again.predict_items(items, out, flip_tta=True)
    assert again.reused == 0
    again.predict_items(items, out, flip_tta=True)
    assert again.reused == 2
    # resume=False predicts all
    again.predict_items(items, out, flip_tta=True, resume=False)
    assert again.reused == 0

    # a checkpoint retrained under the same name: predicted again, with the new weights
    _ckpt(a, 0.7)
    st = a.stat()
    os.utime(a, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    retrained = _predictor(a)
    retrained.predict_items(items, out)
    assert retrained.reused == 0 and _max_relative(dirs[0], items[0]) == pytest.approx(0.7, abs=1e-3)
    # a re-converted case (its CT rewritten): that case alone is predicted again
    st = os.stat(items[1]["image"])
    os.utime(items[1]["image"], ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    retrained.predict_items(items, out)
    assert retrained.reused == 1

    # an ensemble's dose_std does not outlive it when one model predicts into the same folder
    b = _ckpt(tmp_path / "b.ckpt", 0.9)
    ensemble = DosePredictor(
        Offset(), f"{a},{b}", model_inputs(prior_channels=0), roi_size=(16, 16, 16), pixdim=(6, 6, 6), device="cpu"
    )
    ensemble.predict_items(items[:1], out)
    assert (dirs[0] / STD_NAME).is_file() and _max_relative(dirs[0], items[0]) == pytest.approx(0.8, abs=1e-3)
    retrained.predict_items(items[:1], out)
    assert retrained.reused == 0 and not (dirs[0] / STD_NAME).exists()


def test_the_fingerprint_follows_the_settings_the_item_and_its_files(tmp_path):
    f = tmp_path / "ct.nii.gz"
    f.write_bytes(b"x")
    item = {"case_id": "c", "image": str(f), "constraints": [0.1, 0.2]}
    base = request_fingerprint({"overlap": 0.5}, item)
    assert request_fingerprint({"overlap": 0.5}, dict(item)) == base
    assert request_fingerprint({"overlap": 0.25}, item) != base
    assert request_fingerprint({"overlap": 0.5}, item | {"constraints": [0.1, 0.3]}) != base
    f.write_bytes(b"xy")  # same path and name, other content (size)
    assert request_fingerprint({"overlap": 0.5}, item) != base
