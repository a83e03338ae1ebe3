"""Which request made a case's prediction, so that a re-run predicts only what is missing or stale.

A predicted case folder is complete when its ``prediction.json`` exists: it is written last, after
the dose, the standard deviation, the samples, the RTDOSE and the OpenKBP submission file, and it
records ``request_sha256``, a fingerprint of everything that determines those outputs:

- the checkpoints (resolved path, size in bytes, modification time in ns),
- the predictor's settings (window size and overlap, voxel size in mm, model inputs, sampler,
  which outputs are written) and the vmat-monai version,
- the call's what-if goals and flip TTA,
- the case's datalist item and every input file it names (path, size, modification time).

A re-run skips a case whose record carries the same fingerprint and whose outputs all exist; a
retrained checkpoint, other settings or goals, a re-converted case or a new version predict it
again.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

__all__ = ["RECORD_NAME", "file_stamp", "is_complete", "predictor_settings", "request_fingerprint"]

RECORD_NAME = "prediction.json"


def file_stamp(path: str | Path) -> list[Any]:
    """``[resolved path, size in bytes, modification time in ns]`` of an existing file."""
    p = Path(path).resolve()
    st = p.stat()
    return [str(p), st.st_size, st.st_mtime_ns]


def predictor_settings(
    predictor: Any, roi_size: Sequence[int], overlap: float, pixdim: Sequence[float]
) -> dict[str, Any]:
    """What of a :class:`~vmat_monai.engine.predict.DosePredictor` (built with this window size and
    overlap, voxel size in mm) determines its outputs, besides the call's goals and TTA and the case
    (JSON-able)."""
    from vmat_monai import __version__

    sampler = None
    if predictor.sampler is not None:
        s = predictor.sampler
        scheduler = [type(s.scheduler).__name__, s.num_train_timesteps, getattr(s.scheduler, "prediction_type", "")]
        sampler = [s.samples, s.steps, s.eta, s.seed, s.scale.dose_range, scheduler]
    return {
        "version": __version__,
        "checkpoints": [file_stamp(p) for p in predictor.ckpt_paths],
        "roi_size": [int(v) for v in roi_size],
        "overlap": float(overlap),
        "pixdim": [float(v) for v in pixdim],
        "inputs": repr(predictor.inputs),
        "sampler": sampler,
        "save_samples": predictor.save_samples,
        "rtdose": predictor.rtdose,
        "dicom_source": None if predictor.dicom_source is None else str(predictor.dicom_source),
        "openkbp_submission": predictor.openkbp_submission,
    }


def _named_files(value: Any) -> Iterable[str]:
    """Every string in ``value`` (nested lists and mappings) that names an existing file."""
    if isinstance(value, str | os.PathLike):
        if len(str(value)) < 4096 and os.path.isfile(value):
            yield str(value)
    elif isinstance(value, Mapping):
        for v in value.values():
            yield from _named_files(v)
    elif isinstance(value, list | tuple):
        for v in value:
            yield from _named_files(v)


def request_fingerprint(settings: Mapping[str, Any], item: Mapping[str, Any]) -> str:
    """SHA-256 (hex) of the predictor ``settings`` (JSON-able, call options included) and the case
    ``item`` with the stamps of the input files it names (see the module docstring)."""
    files = sorted({tuple(file_stamp(f)) for f in _named_files(item)})
    payload = {"settings": settings, "item": item, "files": files}
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


def is_complete(case_dir: str | Path, fingerprint: str, outputs: Sequence[str | Path]) -> bool:
    """True when ``case_dir``'s record was written for ``fingerprint`` and every path in ``outputs`` exists."""
    try:
        record = json.loads((Path(case_dir) / RECORD_NAME).read_text())
    except (OSError, ValueError):
        return False
    return (
        isinstance(record, dict)
        and record.get("request_sha256") == fingerprint
        and all(Path(p).is_file() for p in outputs)
    )
