"""Training through the bundle within a time budget, and its record (``training.json``).

A finished training leaves ``training.json`` beside its ``checkpoints`` folder: the bundle
(``vmat_dose_unet`` or ``vmat_dose_diffusion``), the configs it was trained with (``configs``: names
and JSON files, the latter as absolute paths), a hash of their contents (``config_sha256``, so a
changed config is never reused silently), the numeric format it ran in (``precision``,
``channels_last``: their defaults depend on the machine), the budget and a summary.
``vmat-monai predict`` reads the configs back from it.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from itertools import pairwise
from pathlib import Path
from typing import Any

from vmat_monai.atomic import write_text_atomic
from vmat_monai.engine.bundle import BUNDLE_NAME, absolute_configs, config_files

__all__ = ["TRAINING_RECORD", "configs_changed_since_training", "numeric_format", "recorded_configs", "train_bounded"]

TRAINING_RECORD = "training.json"


def _configs_digest(files: Sequence[str]) -> str:
    """SHA-256 of the training configs' contents (``config_files("train", configs)``)."""
    return hashlib.sha256(b"".join(Path(f).read_bytes() for f in files)).hexdigest()


def _recorded(record: Mapping[str, Any]) -> str | None:
    """The configs of a training record (``variant`` in records written before 0.6)."""
    configs = record.get("configs", record.get("variant"))
    return str(configs) if configs else None


def _training_record(ckpt_path: str | Path) -> dict[str, Any] | None:
    """The ``training.json`` beside a checkpoint's ``checkpoints`` folder (or beside the checkpoint);
    None when there is none."""
    ckpt = Path(ckpt_path)
    for folder in (ckpt.parent, ckpt.parent.parent):
        record = folder / TRAINING_RECORD
        if record.is_file():
            try:
                return dict(json.loads(record.read_text()))
            except (OSError, ValueError) as exc:
                raise RuntimeError(f"{record} is unreadable ({exc}); pass --config explicitly") from None
    return None


def recorded_configs(ckpt_path: str | Path) -> str | None:
    """The configs a checkpoint of :func:`train_bounded` was trained with, from the ``training.json``
    beside its ``checkpoints`` folder; None when there is no record (e.g. a bundle run of your own)."""
    record = _training_record(ckpt_path)
    return None if record is None else _recorded(record)


def configs_changed_since_training(ckpt_path: str | Path, configs: str, bundle: str = BUNDLE_NAME) -> bool:
    """True when the training configs ``configs`` of ``bundle``, as they read today, are not byte for
    byte those the checkpoint's ``training.json`` recorded (``config_sha256``): another ``--config``, or
    the bundle's configs edited since the model was trained (their changes are listed in the bundle's
    ``configs/metadata.json`` changelog). False when there is no record, no hash, or a config file is gone."""
    record = _training_record(ckpt_path)
    if record is None or "config_sha256" not in record:
        return False
    try:
        return _configs_digest(config_files("train", configs, bundle)) != record["config_sha256"]
    except FileNotFoundError:
        return False


def numeric_format(config_paths: Sequence[str], extra: Sequence[str] = ()) -> dict[str, Any]:
    """The ``precision`` and ``channels_last`` a training with these config files and command-line
    overrides (``--precision X``, ``--channels_last X`` in ``extra``) runs in on this machine; a key
    the configs do not have is left out."""
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_config(list(config_paths))
    for flag, value in pairwise(extra):
        if flag == "--precision":
            parser["precision"] = value
        elif flag == "--channels_last":
            parser["channels_last"] = value.strip().lower() in ("true", "1")
    found: dict[str, Any] = {}
    for key, kind in (("precision", str), ("channels_last", bool)):
        try:
            found[key] = kind(parser.get_parsed_content(key))
        except KeyError:
            continue
    return found


def train_bounded(
    datalist: Path,
    out_dir: Path,
    minutes: float,
    configs: str = "cpu",
    learning_rate: float | None = None,
    fresh: bool = False,
    extra: Sequence[str] = (),
    bundle: str = BUNDLE_NAME,
) -> Path:
    """Train ``bundle`` (``vmat_dose_unet`` or ``vmat_dose_diffusion``) with ``monai.bundle run training``
    for at most ``minutes`` of training time.

    The learning rate follows a cosine over the time budget. An interrupted run resumes from
    ``last.ckpt`` (Lightning keeps the elapsed time in it). Returns the path of ``last.ckpt``.
    """
    ckpt = out_dir / "checkpoints" / "last.ckpt"
    record = out_dir / TRAINING_RECORD
    config_paths = config_files("train", configs, bundle)
    digest = _configs_digest(config_paths)
    if record.is_file() and ckpt.is_file() and not fresh:
        done = json.loads(record.read_text())
        if done.get("bundle", BUNDLE_NAME) != bundle:  # records before 0.8.2 are of the U-Net bundle
            raise RuntimeError(
                f"{ckpt} is a model of the {done.get('bundle', BUNDLE_NAME)} bundle, not of {bundle}: train {bundle} "
                "into another folder, or pass --fresh to replace it"
            )
        before = _recorded(done)
        if before not in (None, configs, absolute_configs(configs)):
            try:  # advise reusing it only when its configs are still the ones it was trained with
                same = _configs_digest(config_files("train", before, bundle)) == done.get("config_sha256")
            except FileNotFoundError:
                same = False
            reuse = f"pass --config {before} to reuse it, or " if same else ""
            raise RuntimeError(
                f"{ckpt} was trained with --config {before}, not {configs}: {reuse}--fresh to train again with "
                f"{configs}"
            )
        if done.get("config_sha256") != digest:  # a record without it predates the check: older configs
            raise RuntimeError(
                f"{ckpt} was trained with another version of the {configs!r} configuration (the bundle's configs "
                "changed since, e.g. the beam dose prior channel); re-run with --fresh to train again"
            )
        print(f"training: reusing {ckpt} ({done['summary']})", flush=True)
        return ckpt
    if fresh and out_dir.exists():
        import shutil

        shutil.rmtree(out_dir)
    seconds = round(minutes * 60)
    hh, rest = divmod(seconds, 3600)
    mm, ss = divmod(rest, 60)
    files = ",".join(f"'{f}'" for f in config_paths)
    cmd = [
        sys.executable,
        "-m",
        "monai.bundle",
        "run",
        "training",
        "--config_file",
        f"[{files}]",
        "--datalist",
        str(datalist),
        "--output_dir",
        str(out_dir),
        "--epochs",
        "100000",
        "--max_time",
        f"00:{hh:02d}:{mm:02d}:{ss:02d}",
        "--schedule_seconds",
        str(seconds),
        *(["--learning_rate", str(learning_rate)] if learning_rate else []),
        *(["--ckpt_path", str(ckpt)] if ckpt.is_file() else []),
        *extra,
    ]
    formats = numeric_format(config_paths, extra)  # as the training will resolve them on this machine
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True)
    wall = time.perf_counter() - t0
    metrics = sorted(out_dir.glob("csv/version_*/metrics.csv"))
    epochs = 0
    if metrics:
        lines = metrics[-1].read_text().splitlines()
        epochs = len({line.split(",")[0] for line in lines[1:]})
    layout = {True: ", channels_last_3d", False: ""}.get(formats.get("channels_last"), "")
    summary = (
        f"{wall / 60:.1f} min wall, {epochs} epochs in the last session, budget {minutes:g} min"
        f"{', ' + formats['precision'] if 'precision' in formats else ''}{layout}"
    )
    done = {
        "summary": summary,
        "bundle": bundle,
        "configs": absolute_configs(configs),
        "minutes": minutes,
        "config_sha256": digest,
        **formats,
    }
    write_text_atomic(record, json.dumps(done, indent=2))
    return ckpt
