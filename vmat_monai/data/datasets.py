"""MONAI datasets from ``datalist.json``: cached deterministic preprocessing, random patches after it.

``CacheDataset`` (memory) or ``PersistentDataset`` (disk) run the chain up to its first random
transform once per case (load, resample, signed distances); patches and flips are drawn fresh on
every epoch.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from monai.data import CacheDataset, Dataset, PersistentDataset
from monai.data.utils import json_hashing
from monai.transforms import Compose

from vmat_monai.structures import StructureSet, get_structure_set

__all__ = ["PATH_KEYS", "load_datalist", "make_dataset", "preset_kwargs"]

PATH_KEYS = ("image", "dose", "masks", "body")
SPLITS = ("training", "validation", "test", "inference")


def load_datalist(path: str | Path, split: str) -> list[dict[str, Any]]:
    """Entries of one split with file paths made absolute; every file must exist.

    Raises:
        FileNotFoundError: naming the datalist, the case and the missing file.
        KeyError: for an unknown split.
    """
    path = Path(path)
    if split not in SPLITS:
        raise KeyError(f"unknown split {split!r}: use one of {SPLITS}")
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"datalist {path} not found: run `vmat-monai convert` first or fix the path") from None
    entries = []
    for item in data.get(split, []):
        e = dict(item)
        for key in PATH_KEYS:
            if key in e:
                p = Path(e[key])
                p = p if p.is_absolute() else path.parent / p
                if not p.exists():
                    raise FileNotFoundError(
                        f"datalist {path}, case {e.get('case_id', '?')}: {key} file {p} does not exist; "
                        "re-run `vmat-monai convert` or correct the path"
                    )
                e[key] = str(p)
        entries.append(e)
    return entries


def make_dataset(
    datalist: str | Path,
    split: str,
    transform: Compose,
    cache: str = "memory",
    cache_dir: str | Path | None = None,
    num_workers: int = 0,
) -> Dataset:
    """A dataset of one split.

    Args:
        datalist: path of datalist.json.
        split: ``training``, ``validation``, ``test`` or ``inference``.
        transform: the preset chain (see vmat_monai.transforms.presets).
        cache: ``memory`` (CacheDataset), ``disk`` (PersistentDataset in ``cache_dir``) or ``none``.
            With ``memory``, cropped patches may share storage with the cached volume (no copy per
            draw): treat a sample's ``image``/``sdf``/``dose``/``masks``/``body`` as read-only.
        cache_dir: folder for the disk cache.
        num_workers: workers that fill the memory cache.
    """
    items = load_datalist(datalist, split)
    if cache == "memory":
        # the random part (crops, flips, concatenation) makes new tensors and never writes into the
        # cached volumes, so the cache need not be deep-copied for every draw
        return CacheDataset(items, transform, num_workers=num_workers, progress=True, copy_cache=False)
    if cache == "disk":
        if cache_dir is None:
            raise ValueError("cache='disk' needs cache_dir")
        # the chain's hash is part of the key: a cache made by another chain (say without the
        # arc dose prior) is never reused
        return PersistentDataset(items, transform, cache_dir=str(cache_dir), hash_transform=json_hashing)
    if cache == "none":
        return Dataset(items, transform)
    raise ValueError(f"cache must be 'memory', 'disk' or 'none', got {cache!r}")


def preset_kwargs(structure_set: str | Path | StructureSet | None = None) -> dict[str, Any]:
    """Target channels, their dose levels (Gy), mirror pairs and constraint-vector length of a structure
    set, for the presets."""
    from vmat_monai.constraints import layout_for

    s = get_structure_set(structure_set)
    return {
        "target_channels": [s.index(t) for t in s.targets],
        "target_levels": [float(s.targets[t]) for t in s.targets],
        "mirror_pairs": [(s.index(a), s.index(b)) for a, b in s.mirror_pairs],
        "n_constraints": len(layout_for(s)),
    }
