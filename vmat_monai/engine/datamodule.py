"""The Lightning data module: datasets from datalist.json with the transform presets."""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import pytorch_lightning as pl
import torch
from monai.data import DataLoader, list_data_collate

from vmat_monai.data.datasets import load_datalist, make_dataset
from vmat_monai.engine.inputs import ModelInputs
from vmat_monai.transforms import train_transforms, val_transforms

__all__ = ["DoseDataModule"]


def _mallopt(option: int, value: int) -> None:
    """glibc's ``mallopt`` (a no-op where there is none)."""
    import ctypes
    import sys

    if not sys.platform.startswith("linux"):
        return
    try:
        ctypes.CDLL("libc.so.6").mallopt(option, value)
    except (OSError, AttributeError):
        pass


M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3


@contextmanager
def _freed_volumes_go_back_to_the_os() -> Iterator[None]:
    """While the cache is filled (glibc only): every allocation above 1 MiB is served by mmap, so the
    float32 intermediates of each case (a few hundred MB, freed after the cast to compact types) go
    back to the OS instead of fragmenting the heap: on OpenKBP 109 instead of 152 MB of resident
    memory per cached case (80 MB of tensors). Afterwards the thresholds are set where glibc's own
    adjustment ends up (mmap above 32 MiB, trim above 64 MiB): with the 1 MiB threshold kept, every
    training step would map and zero its activations afresh (1.5 times slower, measured)."""
    _mallopt(M_MMAP_THRESHOLD, 1 << 20)
    try:
        yield
    finally:
        _mallopt(M_MMAP_THRESHOLD, 32 << 20)
        _mallopt(M_TRIM_THRESHOLD, 64 << 20)


class DoseDataModule(pl.LightningDataModule):
    """Training patches and full validation volumes from ``datalist.json``.

    Args:
        datalist: path of datalist.json (from ``vmat-monai convert``).
        inputs: the model-input spec (structure set, constraint layout, prior channels; see
            :func:`~vmat_monai.engine.inputs.model_inputs`).
        patch_size: training patch size, voxels.
        num_samples: patches per volume and draw.
        batch_size: volumes per batch (each gives ``num_samples`` patches).
        pixdim: resampled voxel size, mm.
        num_workers: DataLoader workers.
        cache: ``memory``, ``disk``, ``memory+disk`` or ``none`` (see vmat_monai.data.datasets).
        cache_dir: folder of the disk cache.
        pos_fraction: share of patches centred on targets.
        centres_in_body: the patches not centred on a target are centred on a voxel of the body
            (for OpenKBP: the possible-dose mask) instead of anywhere in the volume.
        rotate_deg: random rotation of each training patch about the S-I axis, up to ± this many
            degrees (0: none; see :func:`~vmat_monai.transforms.train_transforms`).
        cache_workers: threads that fill the memory cache (default: the CPU count, at most 4).
    """

    def __init__(
        self,
        datalist: str | Path,
        inputs: ModelInputs,
        patch_size: Sequence[int] = (128, 128, 128),
        num_samples: int = 2,
        batch_size: int = 1,
        pixdim: Sequence[float] = (2.5, 2.5, 2.5),
        num_workers: int = 0,
        cache: str = "memory",
        cache_dir: str | Path | None = None,
        pos_fraction: float = 2 / 3,
        centres_in_body: bool = False,
        rotate_deg: float = 0.0,
        cache_workers: int | None = None,
    ) -> None:
        super().__init__()
        self.cache_workers = cache_workers if cache_workers is not None else min(4, os.cpu_count() or 1)
        self.datalist = Path(datalist)
        self.inputs = inputs
        self.patch_size, self.num_samples, self.batch_size = tuple(patch_size), num_samples, batch_size
        self.pixdim, self.num_workers = tuple(pixdim), num_workers
        self.cache, self.cache_dir, self.pos_fraction = cache, cache_dir, pos_fraction
        self.centres_in_body = bool(centres_in_body)
        self.rotate_deg = float(rotate_deg)
        self.train_ds = self.val_ds = None

    def setup(self, stage: str | None = None) -> None:
        with _freed_volumes_go_back_to_the_os():
            self._build(stage)

    def _build(self, stage: str | None) -> None:
        if self.train_ds is None and stage in (None, "fit"):
            t = train_transforms(
                mirror_pairs=self.inputs.mirror_pairs,
                patch_size=self.patch_size,
                num_samples=self.num_samples,
                pos_fraction=self.pos_fraction,
                centres_in_body=self.centres_in_body,
                pixdim=self.pixdim,
                rotate_deg=self.rotate_deg,
                constraint_pairs=self.inputs.constraint_pairs,
                **self.inputs.preset_kwargs(),
            )
            self.train_ds = make_dataset(self.datalist, "training", t, self.cache, self.cache_dir, self.cache_workers)
        if self.val_ds is None and stage in (None, "fit", "validate"):
            v = val_transforms(pixdim=self.pixdim, **self.inputs.preset_kwargs())
            self.val_ds = make_dataset(self.datalist, "validation", v, self.cache, self.cache_dir, self.cache_workers)

    def training_constraints(self) -> torch.Tensor:
        """The training cases' constraint vectors, (N, K), from the datalist."""
        items = load_datalist(self.datalist, "training")
        if not items:
            raise ValueError(f"{self.datalist}: no training cases")
        k = self.inputs.n_constraints
        vectors = []
        for item in items:
            vec = item.get("constraints")
            if vec is None or len(vec) != k:
                raise ValueError(
                    f"{self.datalist}: case {item.get('case_id', '?')} has no constraint vector of length {k}; "
                    "run vmat-monai convert again to rebuild the datalist"
                )
            vectors.append([float(v) for v in vec])
        return torch.tensor(vectors, dtype=torch.float64)

    def train_dataloader(self) -> DataLoader:
        return DataLoader(
            self.train_ds,
            batch_size=self.batch_size,
            shuffle=True,
            num_workers=self.num_workers,
            collate_fn=list_data_collate,
            pin_memory=torch.cuda.is_available(),
        )

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self.val_ds, batch_size=1, num_workers=self.num_workers, pin_memory=torch.cuda.is_available())
