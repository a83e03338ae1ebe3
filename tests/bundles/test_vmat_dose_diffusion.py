"""The vmat_dose_diffusion bundle through ``python -m monai.bundle`` and ``vmat-monai predict``, with
tiny overrides: training, sampled prediction with its uncertainty, evaluation, and the errors for a
checkpoint of the other model family."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = ROOT / "bundles" / "vmat_dose_diffusion" / "configs"
UNET_CONFIGS = ROOT / "bundles" / "vmat_dose_unet" / "configs"
TRAIN = f"['{CONFIGS / 'train.json'}','{CONFIGS / 'cpu.json'}']"
TINY = [
    "--patch_size",
    "[32,32,32]",
    "--pixdim",
    "[6,6,6]",
    "--limit_train_batches",
    "2",
    "--val_every_n_epochs",
    "1",
    "--val_steps",
    "2",
]
CONSTRAINTS = (
    "{'constraints': [[1.0, 0.8, 0.0, 0.5, 0.35, 0.2, 1.07, 0.5, 0.35, 0.25, 0.1, 0.39, 0.64]], 'timesteps': [5]}"
)


def _run(*args: str, ok: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=600)
    if ok:
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


def test_both_denoisers_build_from_the_configs():
    """The default denoiser (ConditionedUNet with a timestep embedding) and MONAI's DiffusionModelUNet
    (configs/monai_unet.json) both take the noisy dose, the conditions and the constraints, also as
    denoisers of the residual to the beam dose prior (configs/residual.json)."""
    import torch
    from monai.bundle import ConfigParser

    from vmat_monai.engine.bundle import config_files
    from vmat_monai.engine.diffusion_sampling import denoise

    for variant in ("cpu", "cpu,monai_unet", "cpu,residual", "cpu,monai_unet,residual"):
        parser = ConfigParser()
        parser.read_config(config_files("train", variant, "vmat_dose_diffusion"))
        net, inputs = parser.get_parsed_content("network"), parser.get_parsed_content("inputs")
        x = torch.zeros(1, 1 + inputs.in_channels, 32, 32, 32)
        out = denoise(net, x, torch.zeros(1, inputs.n_constraints), torch.tensor([10]))
        assert out.shape == (1, 1, 32, 32, 32), variant
        assert ("prior_residual" in net.state_dict()) == variant.endswith("residual"), variant


def test_the_dose_losses_config_gives_the_module_the_unet_loss():
    """configs/dose_losses.json gives the diffusion module the U-Net's dose loss (its terms on the
    bundle's target and organ channels) with weight `dose_loss_weight`; without it there is none;
    prediction takes the same config list."""
    import torch
    from monai.bundle import ConfigParser

    from vmat_monai.engine.bundle import config_files
    from vmat_monai.losses import CombinedDoseLoss

    parser = ConfigParser()
    parser.read_config(config_files("train", "cpu,residual,dose_losses", "vmat_dose_diffusion"))
    parser["dose_loss_weight"] = 0.5
    module, inputs = parser.get_parsed_content("module"), parser.get_parsed_content("inputs")
    assert isinstance(module.loss, CombinedDoseLoss) and module.hparams.loss_weight == 0.5
    assert set(module.loss.weights) == {"mae", "gradient", "asymmetric_ptv", "dvh"}
    n = 16
    batch = {
        "input": torch.rand(1, inputs.in_channels, n, n, n),
        "dose": torch.rand(1, 1, n, n, n),
        "constraints": torch.rand(1, inputs.n_constraints),
        "masks": (torch.rand(1, inputs.n_structures, n, n, n) > 0.7).float(),
        "body": torch.ones(1, 1, n, n, n),
        "prescription_gy": torch.tensor([70.0]),
    }
    assert torch.isfinite(module.training_step(batch, 0))
    assert set(module.loss.last_terms) == {"mae", "gradient", "asymmetric_ptv", "dvh"}
    plain = ConfigParser()
    plain.read_config(config_files("train", "cpu", "vmat_dose_diffusion"))
    assert plain.get_parsed_content("module").loss is None
    infer = ConfigParser()
    infer.read_config(config_files("inference", "cpu,residual,dose_losses", "vmat_dose_diffusion"))
    assert "prior_residual" in infer.get_parsed_content("network").state_dict()


@pytest.fixture(scope="module")
def trained_diffusion(bundle_data, tmp_path_factory):
    run = tmp_path_factory.mktemp("diffusion") / "run"
    common = ["--config_file", TRAIN, "--datalist", str(bundle_data), "--output_dir", str(run), *TINY]
    _run("-m", "monai.bundle", "run", "training", *common, "--epochs", "2")
    return run


def test_train_sample_and_evaluate_through_the_bundle(trained_diffusion, bundle_data, tmp_path):
    run = trained_diffusion
    assert (run / "checkpoints" / "last.ckpt").is_file() and (run / "models" / "model.pt").is_file()
    rows = next(run.glob("csv/version_0/metrics.csv")).read_text().splitlines()
    assert "val_mae_body_gy" in rows[0] and "train_loss" in rows[0]
    preds = tmp_path / "preds"
    infer = f"['{CONFIGS / 'inference.json'}','{CONFIGS / 'cpu.json'}']"
    args = ["--config_file", infer, "--ckpt_path", str(run / "models" / "model.pt"), "--source", str(bundle_data)]
    window = ["--patch_size", "[32,32,32]", "--pixdim", "[6,6,6]", "--ddim_steps", "3"]
    _run(
        "-m",
        "monai.bundle",
        "run",
        *args,
        *window,
        "--output_dir",
        str(preds),
        "--samples",
        "3",
        "--save_samples",
        "true",
    )
    case = next(p for p in preds.iterdir() if (p / "dose_pred.nii.gz").exists())
    mean = np.asarray(nib.load(str(case / "dose_pred.nii.gz")).dataobj)
    std = np.asarray(nib.load(str(case / "dose_std.nii.gz")).dataobj)
    samples = np.asarray(nib.load(str(case / "dose_samples.nii.gz")).dataobj)
    assert samples.shape == (*mean.shape, 3) and np.isfinite(samples).all()
    inside = mean > 0  # the body (outside it everything is 0)
    np.testing.assert_allclose(samples.mean(-1)[inside], mean[inside], rtol=1e-3, atol=1e-3)
    np.testing.assert_allclose(samples.std(-1, ddof=1)[inside], std[inside], rtol=1e-3, atol=1e-3)
    assert std[inside].mean() > 0  # samples differ
    record = json.loads((case / "prediction.json").read_text())["diffusion"]
    assert record == {
        "samples_per_checkpoint": 3,
        "ddim_steps": 3,
        "eta": 0.0,
        "seed": 0,
        "dose_range": 1.25,
        "target": "dose",
    }
    # the same seed reproduces the same prediction
    again = tmp_path / "again"
    _run("-m", "monai.bundle", "run", *args, *window, "--output_dir", str(again), "--samples", "3")
    np.testing.assert_array_equal(np.asarray(nib.load(str(again / case.name / "dose_pred.nii.gz")).dataobj), mean)
    # evaluation: the same report as for a U-Net ensemble, with the calibration of the samples' sd
    evaluate = f"['{CONFIGS / 'evaluate.json'}']"
    _run(
        "-m",
        "monai.bundle",
        "run",
        "--config_file",
        evaluate,
        "--pred_dir",
        str(preds),
        "--ref",
        str(bundle_data),
        "--figures",
        "none",
    )
    calibration = json.loads((preds / "evaluation" / "summary.json").read_text())["calibration"]
    assert calibration["cases"] == 1 and 0 <= calibration["within_1sd_pct"] <= calibration["within_2sd_pct"] <= 100
    assert "within_2sd_pct" in (preds / "evaluation" / "metrics.csv").read_text().splitlines()[0]


def test_a_checkpoint_of_the_other_family_is_refused_with_the_bundle_named(trained_diffusion, bundle_data, tmp_path):
    ckpt = trained_diffusion / "checkpoints" / "last.ckpt"
    unet = f"['{UNET_CONFIGS / 'inference.json'}','{UNET_CONFIGS / 'cpu.json'}']"
    proc = _run(
        "-m",
        "monai.bundle",
        "run",
        "--config_file",
        unet,
        "--ckpt_path",
        str(ckpt),
        "--source",
        str(bundle_data),
        "--output_dir",
        str(tmp_path / "x"),
        ok=False,
    )
    assert proc.returncode != 0 and "vmat_dose_diffusion bundle's inference.json" in proc.stderr
    # the command line picks the bundle from the checkpoint, and checks the sampling options
    cli = ["-m", "vmat_monai.cli", "predict", "--ckpt", str(ckpt), "--source", str(bundle_data)]
    proc = _run(*cli, "--out", str(tmp_path / "y"), "--config", "cpu", "--samples", "0", ok=False)
    assert proc.returncode == 2 and "--samples 1 or more" in proc.stderr, proc.stderr[-2000:]
    proc = _run(*cli, "--out", str(tmp_path / "y"), "--config", "cpu", "--ddim-steps", "5000", ok=False)
    assert proc.returncode == 2 and "at most 1000" in proc.stderr, proc.stderr[-2000:]
    proc = _run(*cli, "--out", str(tmp_path / "y"), "--config", "cpu", "--bundle", "vmat_dose_unet", ok=False)
    assert proc.returncode == 2 and "vmat_dose_diffusion" in proc.stderr, proc.stderr[-2000:]


def test_a_residual_denoiser_predicts_around_the_prior(bundle_data, tmp_path):
    """configs/residual.json through `vmat-monai predict`: a denoiser whose output is 0 (residual 0)
    predicts the beam dose prior itself, where the dose denoiser would predict a uniform 62.5 % of
    the prescription; its models/model.pt needs `residual` in --config, and the error says so."""
    import torch
    from monai.bundle import ConfigParser

    from vmat_monai.engine.bundle import config_files, save_model_weights

    paths = {}
    for variant in ("cpu", "cpu,residual"):
        parser = ConfigParser()
        parser.read_config(config_files("inference", variant, "vmat_dose_diffusion"))
        net = parser.get_parsed_content("network")
        with torch.no_grad():
            for p in net.parameters():
                p.zero_()
        paths[variant] = save_model_weights(None, net, tmp_path / variant.replace(",", "-") / "model.pt")
    window = ["--ddim-steps", "2", "--source", str(bundle_data), "--split", "validation"]
    doses = {}
    for variant, ckpt in paths.items():
        out = tmp_path / f"pred-{variant.replace(',', '-')}"
        _run("-m", "vmat_monai.cli", "predict", "--ckpt", str(ckpt), "--config", variant, "--out", str(out), *window)
        case = next(p for p in out.iterdir() if (p / "dose_pred.nii.gz").exists())
        doses[variant] = np.asarray(nib.load(str(case / "dose_pred.nii.gz")).dataobj)
        record = json.loads((case / "prediction.json").read_text())
        rx = record["prescription_gy"]
    target = json.loads((case / "prediction.json").read_text())["diffusion"]["target"]
    assert target == "prior_residual"
    body = doses["cpu"] > 0
    np.testing.assert_allclose(doses["cpu"][body], 0.625 * rx, rtol=1e-3)  # uniform: the dose target's middle
    prior = doses["cpu,residual"][body]
    assert prior.std() > 0.1 * rx and 0.8 * rx < prior.max() < 1.3 * rx  # the beams' dose, peaking at the target
    proc = _run(
        "-m",
        "vmat_monai.cli",
        "predict",
        "--ckpt",
        str(paths["cpu,residual"]),
        "--config",
        "cpu",
        "--out",
        str(tmp_path / "x"),
        *window,
        ok=False,
    )
    assert proc.returncode == 2 and "add `residual` to --config" in proc.stderr, proc.stderr[-2000:]


def test_ddp_with_two_cpu_processes(bundle_data, tmp_path):
    """The distributed path (Lightning DDP, gloo) on two CPU processes, DDIM validation included:
    each rank samples its own validation cases and the metric is reduced over both."""
    multi = f"['{CONFIGS / 'train.json'}','{CONFIGS / 'cpu.json'}','{CONFIGS / 'multi_gpu_train.json'}']"
    common = ["--config_file", multi, "--datalist", str(bundle_data), "--output_dir", str(tmp_path), *TINY]
    out = _run("-m", "monai.bundle", "run", "training", *common, "--epochs", "1", "--devices", "2")
    log = out.stdout + out.stderr
    assert "GLOBAL_RANK: 1" in log and "gloo" in log
    assert (tmp_path / "checkpoints" / "last.ckpt").exists()
    rows = next((tmp_path / "csv").glob("version_*/metrics.csv")).read_text().splitlines()
    header = rows[0].split(",")
    assert any(r.split(",")[header.index("val_mae_body_gy")] for r in rows[1:])
