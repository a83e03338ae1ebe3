"""The bundles from Python (``vmat_dose_unet``, the default, and ``vmat_dose_diffusion``): where they are,
their configs, their weights, a predictor built from them.

The bundle folder ships inside the installed package (``vmat_monai/bundles/<name>``; in a checkout
that is a link to the top-level ``bundles/``), so it is found without a checkout and from any
working folder. A *configs* list names the override files stacked on a base config: bundle config
names (``cpu``, ``residual``, ``openkbp``) or JSON files, comma-separated, applied in order;
``default`` (or nothing) adds none.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from vmat_monai.atomic import atomic_file

__all__ = [
    "BUNDLES",
    "BUNDLE_NAME",
    "FAMILY_BUNDLE",
    "absolute_configs",
    "bundle_dir",
    "bundle_for_checkpoint",
    "config_entries",
    "config_files",
    "inference_parser",
    "predictor_from_bundle",
    "sampling_overrides",
    "save_model_weights",
]

BUNDLE_NAME = "vmat_dose_unet"
BUNDLES = ("vmat_dose_unet", "vmat_dose_diffusion")
FAMILY_BUNDLE = {"unet": "vmat_dose_unet", "diffusion": "vmat_dose_diffusion"}  # model family -> its bundle


def bundle_dir(name: str = BUNDLE_NAME) -> Path:
    """The bundle folder shipped with the installed package (``bundle_root`` of the configs)."""
    if name not in BUNDLES:
        raise ValueError(f"unknown bundle {name!r}: use one of {', '.join(BUNDLES)}")
    d = Path(__file__).resolve().parents[1] / "bundles" / name
    if not (d / "configs").is_dir():
        raise FileNotFoundError(f"bundle folder {d} not found: reinstall vmat-monai (the bundles are package data)")
    return d


def config_entries(configs: str | None) -> list[str]:
    """The comma-separated entries of a configs list, stripped, empty ones dropped."""
    return [v.strip() for v in (configs or "").split(",") if v.strip()]


def absolute_configs(configs: str) -> str:
    """``configs`` with its JSON files as absolute paths (bundle config names unchanged), so that it
    names the same configs from any working folder."""
    return ",".join(str(Path(v).resolve()) if Path(v).suffix else v for v in config_entries(configs))


def config_files(base: str, configs: str | None, bundle: str = BUNDLE_NAME) -> list[str]:
    """``configs/<base>.json`` of ``bundle`` plus the overrides of ``configs`` (see the module docstring)."""
    folder = bundle_dir(bundle).resolve() / "configs"  # one spelling for every file: MONAI then finds logging.conf
    files = [str(folder / f"{base}.json")]
    for v in config_entries(configs):
        if v == "default":
            continue
        path = Path(v)
        if not path.suffix:
            path = folder / f"{v}.json"
        if not path.is_file():
            names = ", ".join(sorted(p.stem for p in folder.glob("*.json") if p.stem not in ("metadata", base)))
            raise FileNotFoundError(f"config {v!r} not found (tried {path}); use {names}, default or a JSON file")
        files.append(str(path.resolve()))
    return files


def bundle_for_checkpoint(ckpt_path: str | Path) -> str:
    """The bundle of the model family a checkpoint holds (the first one of a comma-separated list)."""
    from vmat_monai.engine.checkpoint_weights import checkpoint_family_of, checkpoint_list

    return FAMILY_BUNDLE[checkpoint_family_of(checkpoint_list(ckpt_path)[0])]


def sampling_overrides(bundle: str, model: str, **options: Any) -> dict[str, Any]:
    """The diffusion sampling options given (``samples``, ``ddim_steps``, ``eta``, ``sample_seed``,
    ``save_samples``; None: not given) as config overrides of ``bundle``; a ValueError naming the
    flags and ``model`` (e.g. the checkpoint) when they are given for the U-Net, which does not sample."""
    given = {k: v for k, v in options.items() if v is not None}
    if given and bundle != FAMILY_BUNDLE["diffusion"]:
        flags = ", ".join("--" + k.replace("_", "-") for k in given)
        raise ValueError(f"{flags} only apply to a diffusion model ({FAMILY_BUNDLE['diffusion']}); {model} is a U-Net")
    return given


def save_model_weights(trainer: Any, network: nn.Module, path: str | Path) -> Path | None:
    """Write the trained network's state dict to ``path`` (the model zoo's ``models/model.pt``, loaded
    with ``weights_only=True``), atomically and from the global-zero process only."""
    if not getattr(trainer, "is_global_zero", True):
        return None
    state = {k: v.detach().cpu() for k, v in network.state_dict().items()}
    with atomic_file(Path(path)) as tmp:
        torch.save(state, str(tmp))
    return Path(path)


def inference_parser(configs: str | None = "cpu", bundle: str = BUNDLE_NAME) -> Any:
    """A MONAI ``ConfigParser`` of ``bundle``'s ``inference.json`` + ``configs``, read as MONAI stacks
    files (later keys win, ``a#b`` sets inside ``a``), except that a key inside an object that the
    inference configs do not have (a training lever's ``loss#weights#dvh``) is skipped: the same lever
    files serve training and prediction (MONAI's own reader fails on such a key)."""
    from monai.bundle import ConfigParser
    from monai.bundle.reference_resolver import ReferenceResolver
    from monai.bundle.utils import ID_SEP_KEY

    files = config_files("inference", configs, bundle)
    parser = ConfigParser(ConfigParser.load_config_file(files[0]))
    for f in files[1:]:
        for key, value in ConfigParser.load_config_file(f).items():
            root = ReferenceResolver.normalize_id(key).split(ID_SEP_KEY, 1)[0]  # '#' or '::'
            if root != key and root not in parser:
                continue
            parser[key] = value
    return parser


def predictor_from_bundle(
    ckpt_path: str | Path,
    configs: str | None = "cpu",
    overrides: Mapping[str, Any] | None = None,
    bundle: str = BUNDLE_NAME,
    **predictor_kwargs: Any,
) -> Any:
    """A :class:`~vmat_monai.engine.predict.DosePredictor` built by ``bundle``'s ``inference.json``
    (+ ``configs``, + ``overrides`` of config ids), loading ``ckpt_path`` (a Lightning checkpoint or
    ``models/model.pt``); ``predictor_kwargs`` override the predictor's arguments."""
    parser = inference_parser(configs, bundle)
    for k, v in {**(overrides or {}), "ckpt_path": str(ckpt_path)}.items():
        parser[k] = v
    for k, v in predictor_kwargs.items():
        parser[f"predictor#{k}"] = v
    try:
        return parser.get_parsed_content("predictor")
    except Exception as err:  # MONAI wraps the predictor's own error (it names the fix): raise that one
        root: BaseException = err
        while root.__cause__ is not None and str(root).startswith(("Failed to instantiate", "Failed to evaluate")):
            root = root.__cause__
        raise root from None
