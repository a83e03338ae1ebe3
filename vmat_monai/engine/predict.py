"""Full-volume prediction: checkpoint -> dose in Gy on the original CT grid.

Outputs per case (``output_dir/<case_id>/``, each file atomic): ``dose_pred.nii.gz`` (Gy, CT grid),
optionally ``RD.pred.dcm`` (DICOM RTDOSE) and ``output_dir/submission/<case_id>.csv`` (OpenKBP
format), and last ``prediction.json`` (checkpoints, constraint vector used, overrides, flip TTA and
the request's fingerprint): a case folder without it is incomplete. A re-run skips the cases already
predicted by the same request (:mod:`vmat_monai.engine.prediction_record`) unless ``resume=False``.

Ensembles: given several checkpoints of one configuration, the predicted dose is the members'
mean and ``dose_std.nii.gz`` their per-voxel standard deviation (Gy, ``ddof=1``; with flip TTA,
each member's prediction is its own flip average first).

Diffusion models (bundle ``vmat_dose_diffusion``, a ``sampler`` given): every member draws
``samples`` DDIM samples; the prediction is the mean of all samples and ``dose_std.nii.gz`` their
standard deviation, the same files and the same evaluation as an ensemble; ``save_samples`` also
writes them (``dose_samples.nii.gz``, 4D, Gy).
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import torch
from monai.data import MetaTensor
from monai.transforms import Invertd
from torch import nn
from tqdm.auto import tqdm

from vmat_monai.atomic import atomic_file, write_text_atomic
from vmat_monai.constraints import override_vector, spec
from vmat_monai.data.case_folder import CASE_JSON, case_item
from vmat_monai.data.datasets import load_datalist
from vmat_monai.engine.checkpoint_weights import checkpoint_list, load_network_weights
from vmat_monai.engine.denoiser import diffusion_target, is_denoiser
from vmat_monai.engine.diffusion_module import DiffusionDoseModule
from vmat_monai.engine.diffusion_sampling import DiffusionSampler
from vmat_monai.engine.inputs import ModelInputs
from vmat_monai.engine.module import DosePredictionModule
from vmat_monai.engine.prediction_record import RECORD_NAME, is_complete, predictor_settings, request_fingerprint
from vmat_monai.errors import SourceInputError
from vmat_monai.progress_lines import ProgressLines, is_terminal
from vmat_monai.transforms import inference_transforms
from vmat_monai.transforms.array import swap_entries

__all__ = [
    "PRED_NAME",
    "RTDOSE_NAME",
    "SAMPLES_NAME",
    "STD_NAME",
    "DosePredictor",
]

PRED_NAME = "dose_pred.nii.gz"
STD_NAME = "dose_std.nii.gz"
SAMPLES_NAME = "dose_samples.nii.gz"
RTDOSE_NAME = "RD.pred.dcm"
CaseError = Callable[[str, str], None]  # (case, message) of a case that could not be predicted


class DosePredictor:
    """Predict full volumes with the Gaussian-blended sliding window and save dose in Gy.

    Args:
        network: the network (its architecture must match the checkpoint).
        ckpt_path: Lightning checkpoint or plain state dict (``models/model.pt``); several (a
            sequence or a comma-separated string) for an ensemble of models trained with the same
            configuration: mean dose and per-voxel standard deviation (``dose_std.nii.gz``).
        inputs: the model-input spec it was trained with (:func:`~vmat_monai.engine.inputs.model_inputs`).
        roi_size: sliding-window size, voxels.
        sw_batch_size: windows per forward pass.
        overlap: window overlap.
        pixdim: resampled voxel size used in training, mm.
        device: ``"cuda"``, ``"cpu"`` or None (CUDA when available).
        rtdose: also write ``RD.pred.dcm`` (DICOM RTDOSE) beside each NIfTI; always done when
            predicting straight from a DICOM-RT folder, whose study the RTDOSE then references.
        dicom_source: DICOM-RT folder the cases were converted from (RTDOSE references its UIDs).
        constraint_overrides: default what-if goals, key -> natural value (``{"rectum_V70": 0.10}``),
            replacing the case's own values (see vmat_monai.constraints); every call can pass its own.
        openkbp_submission: also write ``output_dir/submission/<case_id>.csv`` in the OpenKBP
            challenge's sparse format (dose times the case's possible-dose mask, its body.nii.gz).
        flip_tta: default of the test-time augmentation by the training flip: also predict the
            left-right mirror image (paired channels and one-sided goals swapped, as in training)
            and average the two predictions, mirrored back. Twice the inference time.
        sampler: for a diffusion model (bundle ``vmat_dose_diffusion``): the DDIM sampler (steps,
            eta, samples per member, seed); None for the regression U-Net.
        save_samples: with a sampler, also write every sample (``dose_samples.nii.gz``).
        channels_last: run the network in ``channels_last_3d`` (faster on CPUs, same results; see
            :mod:`vmat_monai.engine.numeric_formats`).
    """

    def __init__(
        self,
        network: nn.Module,
        ckpt_path: str | Path | Sequence[str | Path],
        inputs: ModelInputs,
        roi_size: Sequence[int] = (128, 128, 128),
        sw_batch_size: int = 1,
        overlap: float = 0.25,
        pixdim: Sequence[float] = (2.5, 2.5, 2.5),
        device: str | None = None,
        rtdose: bool = False,
        dicom_source: str | Path | None = None,
        constraint_overrides: Mapping[str, float] | None = None,
        openkbp_submission: bool = False,
        flip_tta: bool = False,
        sampler: DiffusionSampler | None = None,
        save_samples: bool = False,
        channels_last: bool = False,
    ) -> None:
        import copy

        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.ckpt_paths = checkpoint_list(ckpt_path)
        self.ckpt_path = self.ckpt_paths[0]
        self.members = []
        for i, path in enumerate(self.ckpt_paths):
            net = load_network_weights(network if i == 0 else copy.deepcopy(network), path)
            window = {
                "roi_size": roi_size,
                "sw_batch_size": sw_batch_size,
                "overlap": overlap,
                "channels_last": channels_last,
            }
            if sampler is not None:
                member = DiffusionDoseModule(net, sampler=sampler, val_steps=1, **window)
            elif is_denoiser(net):
                raise ValueError(
                    "the network is a diffusion denoiser but no sampler was given: use the vmat_dose_diffusion "
                    "bundle's inference.json (it defines the sampler)"
                )
            else:
                member = DosePredictionModule(net, **window)
            self.members.append(member.to(self.device).eval())
        self.module = self.members[0]
        self.sampler = sampler
        self.save_samples = bool(save_samples) and sampler is not None
        self.inputs = inputs
        self.rtdose = rtdose
        self.dicom_source = dicom_source
        self.openkbp_submission = openkbp_submission
        self.constraint_overrides = self._checked(constraint_overrides)
        self.flip_tta = bool(flip_tta)
        self.transform = inference_transforms(pixdim=pixdim, **inputs.preset_kwargs())
        self.settings = predictor_settings(self, roi_size, overlap, pixdim)
        self.reused = 0  # cases the last predict_items call found already predicted by the same request

    def request_sha256(
        self,
        item: Mapping[str, Any],
        constraint_overrides: Mapping[str, float] | None = None,
        flip_tta: bool | None = None,
    ) -> str:
        """Fingerprint of predicting ``item`` with these overrides and TTA (see prediction_record)."""
        overrides = self.constraint_overrides if constraint_overrides is None else dict(constraint_overrides)
        flip = self.flip_tta if flip_tta is None else bool(flip_tta)
        return request_fingerprint({**self.settings, "overrides": overrides, "flip_tta": flip}, item)

    def case_dir(self, item: Mapping[str, Any], output_dir: str | Path) -> Path:
        """``output_dir/<case_id>``: where ``item``'s outputs go."""
        return Path(output_dir) / str(item.get("case_id", Path(item["image"]).parent.name))

    def expected_outputs(self, item: Mapping[str, Any], output_dir: str | Path) -> list[Path]:
        """The files a finished prediction of ``item`` has (besides its record)."""
        case_dir = self.case_dir(item, output_dir)
        paths = [case_dir / PRED_NAME]
        if self.save_samples:
            paths.append(case_dir / SAMPLES_NAME)
        if self.openkbp_submission:
            paths.append(Path(output_dir) / "submission" / f"{case_dir.name}.csv")
        if self.rtdose or item.get("dicom_source", self.dicom_source) is not None:
            paths.append(case_dir / RTDOSE_NAME)
        return paths

    def _checked(self, overrides: Mapping[str, float] | None) -> dict[str, float]:
        """``overrides`` as a dict; unknown keys fail here, before any prediction."""
        for key in overrides or {}:
            spec(key, self.inputs.layout)
        return dict(overrides or {})

    @torch.no_grad()
    def predict_members(self, x: torch.Tensor, c: torch.Tensor, flip_tta: bool | None = None) -> torch.Tensor:
        """Dose / Rx of every member, (M, 1, *spatial), for a (1, channels, *spatial) network input
        and its (1, K) constraints, on the input's grid; with flip TTA each member's mean of it and
        of its left-right mirror image. With a diffusion sampler every member gives its samples:
        (M × samples, 1, *spatial)."""
        flip = self.flip_tta if flip_tta is None else flip_tta
        if flip:  # spatial axis 0 (dim 1 of one image) runs right-left after Orientationd("RAS")
            x_m = swap_entries(torch.flip(x[0], dims=[1]), self.inputs.input_pairs)[None]
            c_m = swap_entries(c.reshape(-1), self.inputs.constraint_pairs)[None]
        out = []
        for member in self.members:
            rel = member.predict_volume(x, c)
            if flip:
                rel = 0.5 * (rel + torch.flip(member.predict_volume(x_m, c_m), dims=[2]))
            out.extend(rel)
        return torch.stack(out)

    @torch.no_grad()
    def predict_relative(self, x: torch.Tensor, c: torch.Tensor, flip_tta: bool | None = None) -> torch.Tensor:
        """Dose / Rx, (1, 1, *spatial): the members' mean (see :meth:`predict_members`)."""
        return self.predict_members(x, c, flip_tta).mean(dim=0, keepdim=True)

    @torch.no_grad()
    def predict_item(
        self,
        item: Mapping[str, Any],
        constraint_overrides: Mapping[str, float] | None = None,
        flip_tta: bool | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Dose in Gy on the item's original CT grid, zero outside its body mask: (array x, y, z; RAS affine).

        ``constraint_overrides`` / ``flip_tta`` replace the predictor's defaults for this call."""
        dose, _std, affine = self.predict_item_with_std(item, constraint_overrides, flip_tta)
        return dose, affine

    @torch.no_grad()
    def predict_item_with_std(
        self,
        item: Mapping[str, Any],
        constraint_overrides: Mapping[str, float] | None = None,
        flip_tta: bool | None = None,
    ) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
        """(mean dose, members' (or samples') per-voxel standard deviation or None for one model and
        one sample, affine): Gy on the item's original CT grid, zero outside its body mask."""
        dose, std, _samples, affine = self.predict_case(item, constraint_overrides, flip_tta)
        return dose, std, affine

    @torch.no_grad()
    def predict_case(
        self,
        item: Mapping[str, Any],
        constraint_overrides: Mapping[str, float] | None = None,
        flip_tta: bool | None = None,
    ) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None, np.ndarray]:
        """(mean dose, standard deviation or None, the samples (x, y, z, S) when ``save_samples`` else
        None, affine): Gy on the item's original CT grid, zero outside its body mask."""
        overrides = self.constraint_overrides if constraint_overrides is None else self._checked(constraint_overrides)
        item = dict(item)
        if overrides:
            item["constraints"] = override_vector(item["constraints"], overrides, self.inputs.layout)
        d = self.transform(item)
        x = d["input"].unsqueeze(0).to(self.device)
        c = d["constraints"].unsqueeze(0).to(self.device)
        rel = self.predict_members(x, c, flip_tta)[:, 0].cpu()  # (M, *spatial): members or samples
        img = d["image"]
        d["pred"] = MetaTensor(rel, meta=dict(img.meta), applied_operations=list(img.applied_operations))
        back = Invertd("pred", transform=self.transform, orig_keys="image", nearest_interp=False)(d)["pred"]
        gy = np.clip(np.asarray(back, dtype=np.float32) * float(item["prescription_gy"]), 0, None)
        if item.get("body"):  # no dose outside the patient (OpenKBP: outside the possible-dose mask)
            body = np.asarray(nib.load(str(item["body"])).dataobj) > 0
            if body.shape == gy.shape[1:]:
                gy = gy * body
        # mean and sd on the CT grid, of the resampled members (the sd of an interpolated sd would not be one)
        std = gy.std(axis=0, ddof=1) if len(gy) > 1 else None
        samples = np.moveaxis(gy, 0, -1) if self.save_samples else None
        return gy.mean(axis=0), std, samples, np.asarray(back.affine, dtype=np.float64)

    def write_outputs(
        self,
        item: Mapping[str, Any],
        dose: np.ndarray,
        affine: np.ndarray,
        output_dir: str | Path,
        constraint_overrides: Mapping[str, float] | None = None,
        flip_tta: bool | None = None,
        std: np.ndarray | None = None,
        samples: np.ndarray | None = None,
    ) -> Path:
        """Every output of one predicted case (see the module docstring); returns the NIfTI's path.

        The case's record goes first (the folder is incomplete until its new record is written, last),
        and so do the outputs of an earlier request that this one does not write (an ensemble's
        ``dose_std.nii.gz`` must not outlive it)."""
        out = Path(output_dir)
        overrides = self.constraint_overrides if constraint_overrides is None else dict(constraint_overrides)
        case_dir = self.case_dir(item, out)
        (case_dir / RECORD_NAME).unlink(missing_ok=True)
        expected = self.expected_outputs(item, out)
        for name, extra in ((STD_NAME, std), (SAMPLES_NAME, samples), (RTDOSE_NAME, None)):
            if extra is None and case_dir / name not in expected:
                (case_dir / name).unlink(missing_ok=True)
        for name, extra in ((STD_NAME, std), (SAMPLES_NAME, samples)):
            if extra is not None:
                with atomic_file(case_dir / name) as tmp:
                    nib.save(nib.Nifti1Image(extra, affine), str(tmp))
        with atomic_file(case_dir / PRED_NAME) as tmp:
            nib.save(nib.Nifti1Image(dose, affine), str(tmp))
        record = {
            "case_id": case_dir.name,
            "checkpoint": str(self.ckpt_path),
            "checkpoints": [str(p) for p in self.ckpt_paths],
            "constraint_vector": override_vector(item["constraints"], overrides, self.inputs.layout),
            "constraint_overrides": overrides,
            "prescription_gy": float(item["prescription_gy"]),
            "flip_tta": self.flip_tta if flip_tta is None else bool(flip_tta),
            "request_sha256": self.request_sha256(item, overrides, flip_tta),
        }
        if self.sampler is not None:
            record["diffusion"] = {
                "samples_per_checkpoint": self.sampler.samples,
                "ddim_steps": self.sampler.steps,
                "eta": self.sampler.eta,
                "seed": self.sampler.seed,
                "dose_range": self.sampler.scale.dose_range,
                "target": diffusion_target(self.module.network, self.sampler.scale).name,
            }
        if self.openkbp_submission:
            from vmat_monai.data.openkbp import write_sparse_dose

            pdm = np.asarray(nib.load(str(item["body"])).dataobj) > 0
            write_sparse_dose(
                dose.transpose(2, 1, 0), pdm.transpose(2, 1, 0), out / "submission" / f"{case_dir.name}.csv"
            )
        source = item.get("dicom_source", self.dicom_source)
        if self.rtdose or source is not None:
            from vmat_monai.dicom.export import export_rtdose

            case_json = Path(item["image"]).parent / CASE_JSON
            export_rtdose(
                case_dir / PRED_NAME,
                case_dir / RTDOSE_NAME,
                source_dicom=source,
                case_json=case_json if case_json.is_file() else None,
            )
        write_text_atomic(case_dir / RECORD_NAME, json.dumps(record, indent=2))  # last: the case is complete
        return case_dir / PRED_NAME

    def predict_items(
        self,
        items: Sequence[Mapping[str, Any]],
        output_dir: str | Path,
        constraint_overrides: Mapping[str, float] | None = None,
        flip_tta: bool | None = None,
        on_error: CaseError | None = None,
        resume: bool = True,
    ) -> list[Path]:
        """Predict each item and write its outputs under ``output_dir/<case_id>/``; returns the dose
        NIfTIs of the cases predicted or reused.

        Args:
            on_error: called with (case id, message) for a case that cannot be predicted (unreadable
                or inconsistent input, NaNs); the other cases go on. None: the error is raised.
            resume: reuse the cases already predicted by the same request (same checkpoints,
                settings, goals, TTA and inputs; :attr:`reused` counts them); False predicts all.
        """
        done: dict[int, Path] = {}  # item index -> its dose NIfTI, in the items' order at the end
        for i, item in enumerate(items if resume else ()):
            try:
                case_dir = self.case_dir(item, output_dir)
                request = self.request_sha256(item, constraint_overrides, flip_tta)
                if is_complete(case_dir, request, self.expected_outputs(item, output_dir)):
                    done[i] = case_dir / PRED_NAME
            except (OSError, KeyError, TypeError):  # an unreadable item: predicting it reports why
                pass
        self.reused = len(done)
        if done:
            print(
                f"predict: reusing {len(done)} of {len(items)} cases in {output_dir} predicted by the same "
                "checkpoints, settings and inputs (--overwrite, bundle: resume false, predicts them again)",
                flush=True,
            )
        todo = [i for i in range(len(items)) if i not in done]
        lines = None if is_terminal() or not todo else ProgressLines("predict", len(todo))
        for n, i in enumerate(tqdm(todo, desc="predict", unit="case", disable=lines is not None or not todo)):
            item = items[i]
            if lines is not None:
                lines.update(n, str(item.get("case_id", "")))
            try:
                dose, std, samples, affine = self.predict_case(item, constraint_overrides, flip_tta)
                done[i] = self.write_outputs(
                    item, dose, affine, output_dir, constraint_overrides, flip_tta, std, samples
                )
            except (SourceInputError, OSError, ValueError, KeyError, RuntimeError) as exc:
                if on_error is None:
                    raise
                on_error(str(item.get("case_id", item.get("image", "?"))), f"{type(exc).__name__}: {exc}")
        if lines is not None:
            lines.update(len(todo))
        return [done[i] for i in sorted(done)]

    def predict(
        self,
        source: str | Path,
        output_dir: str | Path,
        split: str = "test",
        on_error: CaseError | None = None,
        resume: bool = True,
    ) -> list[Path]:
        """Predict a datalist split, one case folder, a folder of case folders (links followed), or a
        DICOM-RT folder (converted first into ``output_dir/converted``, dose optional; exports that
        fail to convert go to ``on_error``, or to a warning, named by their folder relative to
        ``source``). ``resume``: see :meth:`predict_items`.

        Raises:
            FileNotFoundError: ``source`` is none of these, or holds nothing to predict (the message
                says what was looked for).
        """
        src = Path(source)
        if src.suffix == ".json":
            items = load_datalist(src, split)
            if not items:
                raise FileNotFoundError(f"{src}: its {split!r} split is empty; pass --split naming a split with cases")
        elif (src / CASE_JSON).exists():
            items = [case_item(src)]
        elif src.is_dir():
            items = [case_item(p) for p in sorted(src.iterdir()) if (p / CASE_JSON).exists()]
            if not items:  # a DICOM-RT folder: convert it (dose optional) next to the predictions
                items = self._convert_dicom(src, Path(output_dir) / "converted", on_error)
        else:
            raise FileNotFoundError(
                f"{src}: not a datalist (.json), a case folder (with {CASE_JSON}), a folder of case folders or a "
                "DICOM-RT folder"
            )
        return self.predict_items(items, output_dir, on_error=on_error, resume=resume)

    def _convert_dicom(self, src: Path, data_dir: Path, on_error: CaseError | None) -> list[dict[str, Any]]:
        from vmat_monai.data.convert import ConvertOptions
        from vmat_monai.data.convert_tree import convert_tree

        opts = ConvertOptions(structure_set=self.inputs.structures, allow_missing_dose=True)
        try:
            summary = convert_tree(src, data_dir, opts)
        except SourceInputError as exc:  # nothing found under src
            raise FileNotFoundError(
                f"{src}: no case folder ({CASE_JSON}) in it, and as a DICOM-RT folder: {exc}"
            ) from None
        failed = {r["case_id"]: r["errors"] for r in summary["cases"] if r["status"] == "failed"}
        items = [
            case_item(p) | {"dicom_source": str(src)}
            for p in sorted(data_dir.iterdir())
            if (p / CASE_JSON).exists() and p.name in summary["sources"]
        ]
        if not items:
            errors = "; ".join(f"{summary['sources'][c]}: {e}" for c, e in failed.items())
            raise FileNotFoundError(f"{src}: nothing to predict (every study failed to convert: {errors})")
        for cid, err in failed.items():
            where = summary["sources"][cid]
            message = str(err).replace("<case folder>", where)
            if on_error is None:
                warnings.warn(f"{where} ({cid}) not predicted: {message}", stacklevel=3)
            else:
                on_error(f"{where} ({cid})", message)
        return items
