"""MONAI datasets from ``datalist.json``: cached deterministic preprocessing, random patches after it.

``CacheDataset`` (memory) or ``PersistentDataset`` (disk) run the chain up to its first random
transform once per case (load, resample, signed distances); patches and flips are drawn fresh on
every epoch.
"""

from __future__ import annotations

import enum
import hashlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from monai.data import CacheDataset, Dataset, PersistentDataset
from monai.transforms import Compose

__all__ = ["PATH_KEYS", "chain_hashing", "load_datalist", "make_dataset"]

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
        # the chain's hash (classes and parameters) is part of the key: a cache made by another
        # chain (another voxel size, without the beam dose prior, ...) is never reused
        return PersistentDataset(items, transform, cache_dir=str(cache_dir), hash_transform=chain_hashing)
    if cache == "none":
        return Dataset(items, transform)
    raise ValueError(f"cache must be 'memory', 'disk' or 'none', got {cache!r}")


def _describe(obj: Any, depth: int = 0, seen: frozenset[int] = frozenset()) -> Any:
    """A JSON-able description of a transform's class and parameters (no memory addresses)."""
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    if isinstance(obj, enum.Enum):
        return str(obj.value)
    if isinstance(obj, (np.ndarray, np.generic)):
        return np.asarray(obj).tolist()
    if isinstance(obj, torch.Tensor):
        return obj.detach().cpu().tolist() if obj.numel() <= 256 else [list(obj.shape), float(obj.double().sum())]
    if isinstance(obj, (torch.dtype, np.dtype, type)):
        return str(obj)
    if depth > 6 or id(obj) in seen:
        return type(obj).__qualname__
    seen = seen | {id(obj)}
    if isinstance(obj, dict):
        return {str(k): _describe(v, depth + 1, seen) for k, v in sorted(obj.items(), key=lambda kv: str(kv[0]))}
    if isinstance(obj, (set, frozenset)):
        return sorted(str(_describe(v, depth + 1, seen)) for v in obj)
    if isinstance(obj, (list, tuple)):
        return [_describe(v, depth + 1, seen) for v in obj]
    if callable(obj) and not hasattr(obj, "__dict__"):
        return getattr(obj, "__qualname__", type(obj).__qualname__)
    attrs = getattr(obj, "__dict__", None)
    if attrs is None:
        return type(obj).__qualname__
    # public attributes only: private ones hold run-time state (thread-locals, readers' caches)
    params = _describe({k: v for k, v in attrs.items() if not k.startswith("_")}, depth + 1, seen)
    return {"class": f"{type(obj).__module__}.{type(obj).__qualname__}", "params": params}


def chain_hashing(transforms: Sequence[Any]) -> bytes:
    """Cache key of a transform chain from its classes and their parameters (``hash_transform`` of
    MONAI's ``PersistentDataset``; MONAI's ``json_hashing`` cannot serialise transforms and falls
    back to their class names, so a chain with another voxel size would read the old cache)."""
    dump = json.dumps(_describe(list(transforms)), sort_keys=True, default=str).encode("utf-8")
    return hashlib.sha256(dump).hexdigest().encode()
