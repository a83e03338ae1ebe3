"""MONAI datasets from ``datalist.json``: cached deterministic preprocessing, random patches after it.

``CacheDataset`` (memory), ``PersistentDataset`` (disk) or both (:class:`DiskBackedCacheDataset`:
memory, filled from a disk cache that later runs reuse) run the chain up to its first random
transform once per case (load, resample, signed distances, beam dose prior); patches and flips are
drawn fresh on every epoch.
"""

from __future__ import annotations

import enum
import hashlib
import json
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from monai.data import CacheDataset, Dataset, PersistentDataset
from monai.transforms import Compose

from vmat_monai.progress_lines import is_terminal

__all__ = ["CACHE_MODES", "PATH_KEYS", "DiskBackedCacheDataset", "chain_hashing", "load_datalist", "make_dataset"]

PATH_KEYS = ("image", "dose", "masks", "body")
SPLITS = ("training", "validation", "test", "inference")
CACHE_MODES = ("memory", "disk", "memory+disk", "none")


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
        cache: ``memory`` (CacheDataset), ``disk`` (PersistentDataset in ``cache_dir``),
            ``memory+disk`` (:class:`DiskBackedCacheDataset`: in memory, filled from ``cache_dir``
            and written there when missing, so a second training on the same cases skips the
            preprocessing) or ``none``. With the memory caches, cropped patches may share storage
            with the cached volume (no copy per draw): treat a sample's ``image``, ``sdf``,
            ``dose``, ``masks`` and ``body`` as read-only.
        cache_dir: folder for the disk cache.
        num_workers: workers that fill the memory cache.
    """
    if cache not in CACHE_MODES:
        raise ValueError(f"cache must be one of {CACHE_MODES}, got {cache!r}")
    if cache in ("disk", "memory+disk") and cache_dir is None:
        raise ValueError(f"cache={cache!r} needs cache_dir")
    items = load_datalist(datalist, split)
    if cache == "memory":
        # the random part (crops, flips, concatenation) makes new tensors and never writes into the
        # cached volumes, so the cache need not be deep-copied for every draw
        return _announced(
            split,
            len(items),
            lambda: CacheDataset(items, transform, num_workers=num_workers, progress=is_terminal(), copy_cache=False),
        )
    if cache == "memory+disk":
        return _announced(split, len(items), lambda: DiskBackedCacheDataset(items, transform, cache_dir, num_workers))
    if cache == "disk":
        # the chain's hash (classes and parameters) is part of the key: a cache made by another
        # chain (another voxel size, without the beam dose prior, ...) is never reused
        return PersistentDataset(items, transform, cache_dir=str(cache_dir), hash_transform=chain_hashing)
    return Dataset(items, transform)


def _announced(split: str, n: int, build: Callable[[], Dataset]) -> Dataset:
    """Build a memory cache; without a terminal (no tqdm bar) one line before and one after."""
    if is_terminal():
        return build()
    print(f"caching the {n} {split} volumes ...", file=sys.stderr, flush=True)
    t0 = time.perf_counter()
    ds = build()
    print(f"cached the {n} {split} volumes in {time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)
    return ds


class DiskBackedCacheDataset(CacheDataset):
    """A memory cache (MONAI ``CacheDataset``) whose cases come from a disk cache (MONAI
    ``PersistentDataset`` files in ``cache_dir``): a case found there is loaded, a missing one is
    computed and written (atomically, by MONAI) for the next run. The key holds the datalist entry
    and the chain's hash (:func:`chain_hashing`), so another chain never reads these files.
    Cases loaded from disk carry plain tensors (no affine), as with ``cache="disk"``.

    Args:
        data: datalist entries.
        transform: the preset chain.
        cache_dir: folder of the disk cache (created when missing).
        num_workers: threads that fill the memory cache.
    """

    def __init__(self, data: Sequence[dict[str, Any]], transform: Compose, cache_dir: str | Path, num_workers: int = 0):
        Path(cache_dir).mkdir(parents=True, exist_ok=True)
        # set before CacheDataset.__init__, which fills the cache through _load_cache_item
        self.disk = PersistentDataset(list(data), transform, cache_dir=str(cache_dir), hash_transform=chain_hashing)
        super().__init__(data, transform, num_workers=num_workers, progress=is_terminal(), copy_cache=False)

    def _load_cache_item(self, idx: int) -> Any:
        """The deterministic part of case ``idx``: from the disk cache, or computed and stored there."""
        return self.disk._cachecheck(self.data[idx])


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
