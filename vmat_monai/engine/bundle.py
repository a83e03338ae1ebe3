"""The ``vmat_dose_unet`` bundle from Python: where it is, its configs, a predictor built from them."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

__all__ = ["BUNDLE_NAME", "absolute_variant", "bundle_dir", "config_files", "predictor_from_bundle"]

BUNDLE_NAME = "vmat_dose_unet"


def bundle_dir() -> Path:
    """The bundle folder of this checkout (``bundles/vmat_dose_unet`` beside the package)."""
    d = Path(__file__).resolve().parents[2] / "bundles" / BUNDLE_NAME
    if not (d / "configs").is_dir():
        raise FileNotFoundError(f"bundle folder {d} not found: run from a checkout of vmat-monai")
    return d


def _entries(variant: str | None) -> list[str]:
    """The comma-separated entries of a ``variant``, stripped, empty ones dropped."""
    return [v.strip() for v in (variant or "").split(",") if v.strip()]


def absolute_variant(variant: str) -> str:
    """``variant`` with its JSON files as absolute paths (bundle config names unchanged), so that it
    names the same configs from any working folder."""
    return ",".join(str(Path(v).resolve()) if Path(v).suffix else v for v in _entries(variant))


def config_files(base: str, variant: str | None) -> list[str]:
    """``configs/<base>.json`` plus overrides: bundle config names (``cpu``, ``openkbp``) or JSON paths,
    comma-separated and applied in order (``"cpu,openkbp"``); ``default`` or None adds nothing."""
    configs = bundle_dir() / "configs"
    files = [str(configs / f"{base}.json")]
    for v in _entries(variant):
        if v == "default":
            continue
        path = Path(v)
        if not path.suffix:
            path = configs / f"{v}.json"
        if not path.is_file():
            raise FileNotFoundError(f"config {v!r} not found (tried {path}); use cpu, openkbp, default or a JSON file")
        files.append(str(path.resolve()))
    return files


def predictor_from_bundle(
    ckpt_path: str | Path,
    variant: str | None = "cpu",
    overrides: Mapping[str, Any] | None = None,
    **predictor_kwargs: Any,
) -> Any:
    """A :class:`~vmat_monai.engine.predict.DosePredictor` with the network and window of the bundle's
    ``inference.json`` (+ ``variant``), loading ``ckpt_path``; ``predictor_kwargs`` override its arguments."""
    from monai.bundle import ConfigParser

    from vmat_monai.engine.predict import DosePredictor

    parser = ConfigParser()
    parser.read_config(config_files("inference", variant))
    for k, v in (overrides or {}).items():
        parser[k] = v
    kwargs: dict[str, Any] = {
        "structure_set": parser["structure_set"],
        "roi_size": parser["patch_size"],
        "sw_batch_size": parser["sw_batch_size"],
        "overlap": parser["sw_overlap"],
        "pixdim": parser["pixdim"],
        "openkbp_submission": bool(parser.get("openkbp_submission", False)),
        "dose_prior": int(parser.get_parsed_content("dose_prior", default=0)),
        "flip_tta": bool(parser.get("flip_tta", False)),
    }
    kwargs.update(predictor_kwargs)
    return DosePredictor(parser.get_parsed_content("network"), ckpt_path, **kwargs)
