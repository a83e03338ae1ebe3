"""The vmat_dose_unet bundle through ``python -m monai.bundle`` with tiny overrides."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
BUNDLE = ROOT / "bundles" / "vmat_dose_unet"
CONFIGS = BUNDLE / "configs"
TRAIN = f"['{CONFIGS / 'train.json'}','{CONFIGS / 'cpu.json'}']"
TINY = ["--patch_size", "[32,32,32]", "--pixdim", "[6,6,6]", "--limit_train_batches", "2", "--val_every_n_epochs", "1"]
CONSTRAINTS = "{'constraints': [[1.0, 0.8, 0.0, 0.5, 0.35, 0.2, 1.07, 0.5, 0.35, 0.25, 0.1, 0.39, 0.64]]}"


def _bundle(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        [sys.executable, "-m", "monai.bundle", *args], cwd=cwd, capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


ALL_CONFIGS = [CONFIGS, ROOT / "bundles" / "vmat_dose_diffusion" / "configs"]


@pytest.mark.parametrize("configs", ALL_CONFIGS, ids=lambda p: p.parent.name)
def test_metadata_has_the_model_zoo_fields(configs):
    meta = json.loads((configs / "metadata.json").read_text())
    for key in (
        "schema",
        "version",
        "changelog",
        "monai_version",
        "pytorch_version",
        "numpy_version",
        "required_packages_version",
        "optional_packages_version",
        "task",
        "description",
        "authors",
        "copyright",
        "data_source",
        "data_type",
        "image_classes",
        "label_classes",
        "pred_classes",
        "eval_metrics",
        "intended_use",
        "references",
        "network_data_format",
    ):
        assert key in meta, key
    assert meta["version"] in meta["changelog"]
    # one version for the package and its bundles (README, "Development")
    import re

    pyproject = (ROOT / "pyproject.toml").read_text()
    assert re.search(r'^version = "([^"]+)"', pyproject, re.M).group(1) == meta["version"]
    assert meta["required_packages_version"]["vmat-monai"] == meta["version"]
    for section in ("inputs", "outputs"):
        for name, spec in meta["network_data_format"][section].items():
            for key in (
                "type",
                "format",
                "num_channels",
                "spatial_shape",
                "dtype",
                "value_range",
                "is_patch_data",
                "channel_def",
            ):
                assert key in spec, (section, name, key)
            assert len(spec["channel_def"]) == spec["num_channels"], name


def _strings(node):
    if isinstance(node, dict):
        for v in node.values():
            yield from _strings(v)
    elif isinstance(node, list):
        for v in node:
            yield from _strings(v)
    elif isinstance(node, str):
        yield node


@pytest.mark.parametrize("configs", ALL_CONFIGS, ids=lambda p: p.parent.name)
def test_configs_have_no_absolute_paths(configs):
    import re

    for cfg in configs.glob("*.json"):
        for s in _strings(json.loads(cfg.read_text())):
            if s.startswith("$"):  # an expression: a quoted literal may only be a suffix joined with +
                assert not re.search(r"(?<!\+ )['\"]/", s), (cfg.name, s)
            elif not s.startswith("http"):
                assert not Path(s).is_absolute(), (cfg.name, s)


# the diffusion denoiser also takes the diffusion timestep
FORWARD_ARGS = [CONSTRAINTS, CONSTRAINTS[:-1] + ", 'timesteps': [5]}"]


@pytest.mark.parametrize(
    ("configs", "forward_args"), list(zip(ALL_CONFIGS, FORWARD_ARGS, strict=True)), ids=["unet", "diffusion"]
)
def test_verify_net_in_out(configs, forward_args):
    out = _bundle(
        "verify_net_in_out",
        "network_def",
        "--meta_file",
        str(configs / "metadata.json"),
        "--config_file",
        str(configs / "train.json"),
        "--n",
        "1",
        "--extra_forward_args",
        forward_args,
    )
    assert "verified with no error" in out.stdout + out.stderr


def test_residual_override_wraps_either_network_for_training_and_inference():
    from monai.bundle import ConfigParser

    from vmat_monai.engine.bundle import config_files
    from vmat_monai.networks import PriorResidual

    def network(base: str, variant: str):
        parser = ConfigParser()
        parser.read_config(config_files(base, variant))
        return parser.get_parsed_content("network")

    for variant in ("cpu,residual", "residual"):  # the CPU network and the default one
        train, infer = network("train", variant), network("inference", variant)
        assert isinstance(train, PriorResidual) and train.network.out_activation is None
        assert train.state_dict().keys() == infer.state_dict().keys()  # a training checkpoint loads for inference
    with pytest.raises(RuntimeError, match="PriorResidual") as err:  # stacked before the network's config
        network("train", "residual,cpu")
    assert "linear output" in str(err.value.__cause__)


@pytest.mark.parametrize("bundle", ["vmat_dose_unet", "vmat_dose_diffusion"])
def test_precision_and_memory_layout_follow_the_machine(bundle, monkeypatch):
    """Both bundles train in the machine's default precision (bf16 only where the CPU or GPU has it)
    and run their networks channels_last_3d on a CPU, for training and inference; a config overrides both."""
    from monai.bundle import ConfigParser

    from vmat_monai.engine import numeric_formats as nf
    from vmat_monai.engine.bundle import config_files

    for native in (True, False):
        monkeypatch.setattr(nf, "cpu_has_native_bf16", lambda native=native: native)
        parser = ConfigParser()
        parser.read_config(config_files("train", "cpu", bundle=bundle))
        assert parser.get_parsed_content("precision") == nf.default_precision()
    module = parser.get_parsed_content("module")
    assert module.channels_last is nf.default_channels_last()
    parser = ConfigParser()
    parser.read_config(config_files("inference", "cpu", bundle=bundle))
    assert parser.get_parsed_content("channels_last") is nf.default_channels_last()
    parser = ConfigParser()
    parser.read_config(config_files("train", "cpu", bundle=bundle))
    parser["channels_last"], parser["precision"] = False, "32-true"
    assert parser.get_parsed_content("module").channels_last is False
    assert parser.get_parsed_content("precision") == "32-true"


@pytest.mark.parametrize("bundle", ["vmat_dose_unet", "vmat_dose_diffusion"])
def test_openkbp_config_gives_each_case_its_recorded_beams(bundle):
    """configs/openkbp.json builds the prior from each case's recorded arrangement (OpenKBP patients
    record the nine static fields) with the nine fields as the fallback; the arc lever restores a full
    arc for every case, as before 0.8.5."""
    from monai.bundle import ConfigParser

    from vmat_monai.engine.bundle import config_files

    def prior(configs: str) -> tuple[object, object]:
        parser = ConfigParser()
        parser.read_config(config_files("train", configs, bundle=bundle))
        kwargs = parser.get_parsed_content("inputs").preset_kwargs()
        return kwargs["prior_beams"], kwargs["prior_case_beams"]

    assert prior("cpu,openkbp") == ("openkbp_9field", True)
    assert prior(f"cpu,openkbp,{ROOT / 'scripts' / 'levers' / 'openkbp_arc.json'}") == ("arc360", False)
    assert prior("cpu") == ("arc360", True)  # DICOM cases: their RTPLAN's beams, else a full arc


@pytest.mark.parametrize("lever", sorted(p.name for p in (ROOT / "scripts" / "levers").glob("*.json")))
def test_every_lever_builds_the_module_it_documents(lever):
    """Each lever of scripts/levers (the commands of docs/EXPERIMENTS.md) stacks on the CPU and OpenKBP
    configs and builds its network, loss and training module; its keys reach the resolved config. The
    OpenKBP job and ``vmat-monai predict`` stack the same lever on the inference configs, so it must
    build the network there too (a key inside a training-only object, ``loss#weights#dvh``, is skipped there)."""
    from monai.bundle import ConfigParser
    from torch import nn

    from vmat_monai.engine.bundle import config_files, inference_parser

    path = ROOT / "scripts" / "levers" / lever
    lever_config = json.loads(path.read_text())
    parser = ConfigParser()
    parser.read_config(config_files("train", f"cpu,openkbp,{path}"))
    module = parser.get_parsed_content("module")
    assert isinstance(module.network, nn.Module) and isinstance(module.loss, nn.Module)
    for key, value in lever_config.items():
        if not isinstance(value, dict):  # objects are compared through what they build, below
            assert parser[key] == value, f"{lever}: {key}"
    if "loss" in lever_config:
        assert set(module.loss.losses) == set(lever_config["loss"]["losses"])
    inference = inference_parser(f"cpu,openkbp,{path}")
    assert isinstance(inference.get_parsed_content("network"), nn.Module)
    for key, value in lever_config.items():  # what inference has, the lever sets there too
        if key.split("#")[0] in inference and not isinstance(value, dict):
            assert inference[key] == value, f"{lever}: {key} at inference"


@pytest.mark.parametrize("bundle", ["vmat_dose_unet", "vmat_dose_diffusion"])
def test_patch_centres_in_body_reaches_the_data_module(bundle):
    """Both bundles' data modules centre the off-target patches anywhere by default and inside the
    body with the lever (the bundle key ``patch_centres_in_body``)."""
    from monai.bundle import ConfigParser

    from vmat_monai.engine.bundle import config_files

    lever = ROOT / "scripts" / "levers" / "centres_in_body.json"
    for configs, expected in (("cpu,openkbp", False), (f"cpu,openkbp,{lever}", True)):
        parser = ConfigParser()
        parser.read_config(config_files("train", configs, bundle))
        assert parser.get_parsed_content("datamodule").centres_in_body is expected, configs


def test_the_cpu_openkbp_configs_train_48_cubed_patches_centred_in_the_body():
    """``cpu,openkbp,openkbp_cpu`` (the OpenKBP job's default since 0.10.0) trains and predicts with 48³
    patches whose off-target centres lie in the body, and (since 0.11.0) predicts with windows overlapping
    by half while validation during training keeps a quarter (its cost counts against the budget); the
    OpenKBP configs without the CPU override (the GPU configuration) keep the base 128³ patches centred
    anywhere and a quarter's overlap everywhere."""
    from monai.bundle import ConfigParser

    from vmat_monai.engine.bundle import config_files, inference_parser

    cases = (("cpu,openkbp,openkbp_cpu", (48, 48, 48), True, 0.5), ("openkbp", (128,) * 3, False, 0.25))
    for configs, patch, in_body, overlap in cases:
        parser = ConfigParser()
        parser.read_config(config_files("train", configs))
        datamodule = parser.get_parsed_content("datamodule")
        assert (datamodule.patch_size, datamodule.centres_in_body) == (patch, in_body), configs
        assert parser.get_parsed_content("module").inferer.overlap == 0.25, configs  # validation
        inference = inference_parser(configs)
        assert tuple(inference.get_parsed_content("predictor#roi_size")) == patch, configs
        assert inference.get_parsed_content("predictor#overlap") == overlap, configs


@pytest.fixture(scope="module")
def trained(bundle_data, tmp_path_factory):
    """One epoch trained the model-zoo way: from the bundle's own folder, with relative config paths."""
    run = tmp_path_factory.mktemp("trained") / "run"
    _bundle(
        "run",
        "training",
        "--meta_file",
        "configs/metadata.json",
        "--config_file",
        "['configs/train.json','configs/cpu.json']",
        "--datalist",
        str(bundle_data),
        "--output_dir",
        str(run),
        "--epochs",
        "1",
        *TINY,
        cwd=BUNDLE,
    )
    return run


def test_training_ships_the_network_the_model_zoo_way(trained):
    import torch

    from vmat_monai.engine.bundle import predictor_from_bundle

    weights = torch.load(trained / "models" / "model.pt", map_location="cpu", weights_only=True)
    last = torch.load(trained / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)["state_dict"]
    assert weights.keys() == {k[len("network.") :] for k in last if k.startswith("network.")}
    assert all(torch.equal(weights[k], last[f"network.{k}"]) for k in weights)  # the trained state, nothing else
    tiny = {"patch_size": [32, 32, 32], "pixdim": [6, 6, 6]}
    for ckpt in (trained / "models" / "model.pt", trained / "checkpoints" / "last.ckpt"):  # inference takes either
        predictor = predictor_from_bundle(ckpt, "cpu", tiny, device="cpu")
        assert predictor.inputs.in_channels == 10


def test_train_resume_and_predict_through_the_bundle(trained, bundle_data, tiny_cohort, tmp_path, capsys):
    import shutil

    tiny_dicom = tiny_cohort
    run = tmp_path / "run"
    shutil.copytree(trained, run)
    common = ["--config_file", TRAIN, "--datalist", str(bundle_data), "--output_dir", str(run), *TINY]
    ckpts = run / "checkpoints"
    assert (ckpts / "last.ckpt").exists() and list(ckpts.glob("best-*.ckpt"))
    # the FiLM network standardises the goals with the training cases' statistics, kept in the checkpoint
    import torch

    state = torch.load(ckpts / "last.ckpt", map_location="cpu", weights_only=False)["state_dict"]
    train_vectors = torch.tensor([e["constraints"] for e in json.loads(bundle_data.read_text())["training"]])
    assert bool(state["network.condition_fitted"])
    torch.testing.assert_close(state["network.condition_mean"], train_vectors.mean(0))
    _bundle("run", "training", *common, "--epochs", "2", "--ckpt_path", "last", "--cache", "disk")
    assert list((run / "cache").glob("*.pt"))  # the disk cache lives in the run folder by default
    rows = (next(run.glob("csv/version_1/metrics.csv"))).read_text().splitlines()
    epochs = {line.split(",")[0] for line in rows[1:]}
    assert epochs == {"1"}  # the resumed run trained only the missing epoch
    assert "val_mae_body_gy" in rows[0]
    preds = tmp_path / "preds"
    infer = f"['{CONFIGS / 'inference.json'}','{CONFIGS / 'cpu.json'}']"
    _bundle(
        "run",
        "--config_file",
        infer,
        "--ckpt_path",
        str(run / "models" / "model.pt"),
        "--source",
        str(bundle_data),
        "--output_dir",
        str(preds),
        "--patch_size",
        "[32,32,32]",
        "--pixdim",
        "[6,6,6]",
    )
    test_case = json.loads(bundle_data.read_text())["test"][0]
    pred = nib.load(str(preds / test_case["case_id"] / "dose_pred.nii.gz"))
    ct = nib.load(test_case["image"])
    assert pred.shape == ct.shape
    np.testing.assert_allclose(pred.affine, ct.affine, atol=1e-4)
    assert np.all(np.isfinite(pred.get_fdata())) and pred.get_fdata().min() >= 0
    # the bundle's evaluate config on those predictions
    _bundle(
        "run",
        "--config_file",
        str(CONFIGS / "evaluate.json"),
        "--pred_dir",
        str(preds),
        "--ref",
        str(bundle_data),
        "--figures",
        "none",
    )
    summary = json.loads((preds / "evaluation" / "summary.json").read_text())
    assert summary["cases"] == [test_case["case_id"]] and summary["metrics"]["gamma_pass_rate"]["n"] == 1
    # straight from DICOM-RT: the study is converted (dose optional) and predicted
    from vmat_monai.engine.inputs import model_inputs
    from vmat_monai.engine.predict import DosePredictor
    from vmat_monai.networks import cpu_conditioned_unet

    dicom_case = next(p for p in tiny_dicom.iterdir() if p.is_dir())
    net = cpu_conditioned_unet(1 + 8 + 1)  # CT, 8 distances, beam dose prior
    predictor = DosePredictor(net, ckpts / "last.ckpt", model_inputs(), roi_size=(32, 32, 32), pixdim=(6, 6, 6))
    (written,) = predictor.predict(dicom_case, tmp_path / "from_dicom")
    assert written.name == "dose_pred.nii.gz" and (tmp_path / "from_dicom" / "converted").is_dir()
    # a folder of linked exports, one of them broken: the good one is predicted, the broken one named by
    # its folder; a folder with nothing in it says what it looked for
    linked = tmp_path / "linked"
    (linked / "exports").mkdir(parents=True)
    (linked / "exports" / "good").symlink_to(dicom_case, target_is_directory=True)
    shutil.copytree(dicom_case, linked / "exports" / "broken")
    next((linked / "exports" / "broken").glob("RS.*")).unlink()
    import pydicom
    from pydicom.uid import generate_uid

    uid = generate_uid()
    for f in (linked / "exports" / "broken").rglob("*.dcm"):  # another study, so it is another case
        ds = pydicom.dcmread(str(f))
        ds.StudyInstanceUID = uid
        ds.save_as(str(f))
    failures: dict[str, str] = {}
    from_links = predictor.predict(linked, tmp_path / "from_links", on_error=lambda c, m: failures.update({c: m}))
    assert len(from_links) == 1 and len(failures) == 1 and next(iter(failures)).startswith("exports/broken (case_")
    assert "no RTSTRUCT in exports/broken" in next(iter(failures.values()))
    (tmp_path / "nothing").mkdir()
    with pytest.raises(FileNotFoundError, match="no DICOM study found under"):
        predictor.predict(tmp_path / "nothing", tmp_path / "from_nothing")
    # the CLI: what-if goals change the prediction and are recorded beside it
    tiny_cfg = json.loads((CONFIGS / "cpu.json").read_text()) | {"patch_size": [32, 32, 32], "pixdim": [6, 6, 6]}
    (tmp_path / "tiny.json").write_text(json.dumps(tiny_cfg))
    from vmat_monai.cli import main as cli

    base = ["predict", "--ckpt", str(ckpts / "last.ckpt"), "--config", str(tmp_path / "tiny.json")]
    base += ["--source", str(bundle_data), "--device", "cpu"]
    # without --config: the one in the training record beside the checkpoints (as the main job writes it)
    (run / "training.json").write_text(json.dumps({"configs": str(tmp_path / "tiny.json")}))
    capsys.readouterr()
    unnamed = [b for b in base if b not in ("--config", str(tmp_path / "tiny.json"))]
    assert cli([*unnamed, "--out", str(tmp_path / "own")]) == 0
    assert f"--config {tmp_path / 'tiny.json'}" in capsys.readouterr().out
    # the same command again reuses the finished case; --overwrite predicts it again
    assert cli([*unnamed, "--out", str(tmp_path / "own")]) == 0
    assert "reusing 1 of 1 cases" in capsys.readouterr().out
    assert cli([*unnamed, "--out", str(tmp_path / "own"), "--overwrite"]) == 0
    assert "reusing" not in capsys.readouterr().out
    assert cli([*base, "--out", str(tmp_path / "tight"), "--constraint", "rectum_V70=0.01"]) == 0
    cid = test_case["case_id"]
    rec = json.loads((tmp_path / "tight" / cid / "prediction.json").read_text())
    assert rec["constraint_overrides"] == {"rectum_V70": 0.01} and rec["constraint_vector"][5] == pytest.approx(0.01)
    own = nib.load(str(tmp_path / "own" / cid / "dose_pred.nii.gz")).get_fdata()
    tight = nib.load(str(tmp_path / "tight" / cid / "dose_pred.nii.gz")).get_fdata()
    assert not np.allclose(own, tight)  # the network is conditioned on the goals (FiLM)
    # flip test-time augmentation: another prediction, recorded as such
    assert cli([*base, "--out", str(tmp_path / "tta"), "--flip-tta"]) == 0
    assert json.loads((tmp_path / "tta" / cid / "prediction.json").read_text())["flip_tta"] is True
    assert json.loads((tmp_path / "own" / cid / "prediction.json").read_text())["flip_tta"] is False
    tta = nib.load(str(tmp_path / "tta" / cid / "dose_pred.nii.gz")).get_fdata()
    assert tta.shape == own.shape and not np.allclose(own, tta) and np.all(np.isfinite(tta))
    # an ensemble: the checkpoint and a perturbed copy -> mean dose, dose_std, calibration in evaluate
    state = torch.load(str(ckpts / "last.ckpt"), map_location="cpu", weights_only=False)
    torch.manual_seed(0)
    state["state_dict"] = {
        k: v + 0.05 * torch.randn_like(v) if v.is_floating_point() and k.startswith("network.") else v
        for k, v in state["state_dict"].items()
    }
    torch.save(state, str(tmp_path / "other.ckpt"))
    ens = [b if b != str(ckpts / "last.ckpt") else f"{ckpts / 'last.ckpt'},{tmp_path / 'other.ckpt'}" for b in base]
    assert cli([*ens, "--out", str(tmp_path / "ens")]) == 0
    std = nib.load(str(tmp_path / "ens" / cid / "dose_std.nii.gz")).get_fdata()
    mean = nib.load(str(tmp_path / "ens" / cid / "dose_pred.nii.gz")).get_fdata()
    assert std.shape == own.shape and std.max() > 0 and std.min() >= 0 and not np.allclose(mean, own)
    assert len(json.loads((tmp_path / "ens" / cid / "prediction.json").read_text())["checkpoints"]) == 2
    from vmat_monai.evaluation.report import EvaluationSettings, evaluate_predictions

    summary = evaluate_predictions(tmp_path / "ens", bundle_data, settings=EvaluationSettings(figures="none"))
    cal = summary["calibration"]
    assert cal["cases"] == 1 and 0 <= cal["within_1sd_pct"] <= cal["within_2sd_pct"] <= 100
    assert cal["mean_sd_gy"] > 0
    # members trained with different configurations are refused (their training records disagree)
    (ckpts.parent / "other").mkdir(exist_ok=True)
    (ckpts.parent / "other" / "training.json").write_text(json.dumps({"configs": "cpu,residual"}))
    (ckpts.parent / "other" / "x.ckpt").write_bytes((tmp_path / "other.ckpt").read_bytes())
    mixed = [*unnamed]
    mixed[mixed.index(str(ckpts / "last.ckpt"))] = f"{ckpts / 'last.ckpt'},{ckpts.parent / 'other' / 'x.ckpt'}"
    assert cli([*mixed, "--out", str(tmp_path / "mixed")]) == 2
    assert "different configurations" in capsys.readouterr().err
    assert cli([*base, "--out", str(tmp_path / "bad"), "--constraint", "liver_V30=0.2"]) == 2
    # a checkpoint trained with the prior, predicted as if without: a clear error, nothing written
    assert cli([*base, "--out", str(tmp_path / "noprior"), "--no-dose-prior"]) == 2
    assert "--no-dose-prior" in capsys.readouterr().err and not (tmp_path / "noprior").exists()
    # ... and written as RTDOSE in the source study's frame of reference
    import pydicom

    rd = pydicom.dcmread(str(written.parent / "RD.pred.dcm"))
    ct0 = pydicom.dcmread(str(next((dicom_case / "CT").iterdir())))
    assert rd.FrameOfReferenceUID == ct0.FrameOfReferenceUID and rd.StudyInstanceUID == ct0.StudyInstanceUID


def test_training_killed_mid_epoch_resumes_from_the_last_complete_checkpoint(trained, bundle_data, tmp_path):
    """SIGKILL during training, then last.ckpt truncated (what a crash in a non-atomic write leaves):
    the re-run sets it aside with a warning and goes on from the newest readable checkpoint."""
    import shutil
    import signal
    import time

    import torch

    run = tmp_path / "run"
    shutil.copytree(trained, run)
    ckpts = run / "checkpoints"
    common = ["--config_file", TRAIN, "--datalist", str(bundle_data), "--output_dir", str(run), *TINY]
    first = (ckpts / "last.ckpt").stat().st_mtime_ns
    with (tmp_path / "killed.log").open("w") as log:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "monai.bundle",
                "run",
                "training",
                *common,
                "--epochs",
                "1000",
                "--ckpt_path",
                "last",
            ],
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            deadline = time.monotonic() + 300
            while (ckpts / "last.ckpt").stat().st_mtime_ns == first and proc.poll() is None:
                assert time.monotonic() < deadline, "no checkpoint written within 5 minutes"
                time.sleep(0.2)
            time.sleep(1.0)  # into the next epoch
        finally:  # never leave the training running, whatever happened above
            proc.send_signal(signal.SIGKILL)
            proc.wait()
    assert proc.returncode == -signal.SIGKILL, (tmp_path / "killed.log").read_text()[-3000:]
    assert torch.load(ckpts / "last.ckpt", map_location="cpu", weights_only=False)["epoch"] >= 1  # complete
    data = (ckpts / "last.ckpt").read_bytes()
    (ckpts / "last.ckpt").write_bytes(data[: len(data) // 2])
    good = max(ckpts.glob("best-*.ckpt"), key=lambda p: p.stat().st_mtime)
    good_epoch = torch.load(good, map_location="cpu", weights_only=False)["epoch"]
    versions = len(list(run.glob("csv/version_*")))
    proc = _bundle("run", "training", *common, "--epochs", str(good_epoch + 2), "--ckpt_path", "last")
    assert "set aside as last.corrupt-" in proc.stderr and f"resuming from {good}" in proc.stderr
    # a clean log (the output is a pipe, as in a log file): none of the third-party noise, progress as lines
    log = proc.stdout + proc.stderr
    for noise in ("nvImageCodec", "Orientationd", "logging.conf does not exist", "Not all config files", "litlogger"):
        assert noise not in log, noise
    assert "\r" not in log and f"epoch {good_epoch + 1} step 2/2" in log and "validation after epoch" in log
    assert len(list(ckpts.glob("last.corrupt-*.ckpt"))) == 1
    rows = (run / "csv" / f"version_{versions}" / "metrics.csv").read_text().splitlines()
    assert {line.split(",")[0] for line in rows[1:]} == {str(good_epoch + 1)}  # only the epoch after the good one
    assert torch.load(ckpts / "last.ckpt", map_location="cpu", weights_only=False)["epoch"] == good_epoch + 1


def test_ddp_with_two_cpu_processes(bundle_data, tmp_path):
    """The distributed path (Lightning DDP, gloo) on two CPU processes."""
    multi = f"['{CONFIGS / 'train.json'}','{CONFIGS / 'cpu.json'}','{CONFIGS / 'multi_gpu_train.json'}']"
    out = _bundle(
        "run",
        "training",
        "--config_file",
        multi,
        "--datalist",
        str(bundle_data),
        "--output_dir",
        str(tmp_path),
        "--epochs",
        "1",
        "--devices",
        "2",
        *TINY,
    )
    log = out.stdout + out.stderr
    assert "GLOBAL_RANK: 1" in log and "gloo" in log
    assert (tmp_path / "checkpoints" / "last.ckpt").exists()


def test_installed_package_finds_its_bundle_and_predicts(trained, bundle_data, tmp_path):
    """``pip install .`` (not editable) into a fresh folder: the bundle and the name mapping are package
    data, and ``vmat-monai predict`` runs from a folder that is not a checkout."""
    target = tmp_path / "site"
    pip = [sys.executable, "-m", "pip", "install", "--no-deps", "--no-build-isolation", "--quiet", "--target"]
    proc = subprocess.run([*pip, str(target), str(ROOT)], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    import shutil

    shutil.rmtree(ROOT / "build", ignore_errors=True)  # setuptools' build folder in the checkout
    tiny = tmp_path / "tiny.json"
    tiny.write_text(
        json.dumps(json.loads((CONFIGS / "cpu.json").read_text()) | {"patch_size": [32] * 3, "pixdim": [6] * 3})
    )
    code = (
        "import sys, vmat_monai, vmat_monai.cli as cli\n"
        "from vmat_monai.engine.bundle import bundle_dir\n"
        "from vmat_monai.structures import default_mapping_path\n"
        "print(vmat_monai.__file__, bundle_dir(), default_mapping_path())\n"
        "sys.exit(cli.main(sys.argv[1:]))\n"
    )
    args = ["predict", "--ckpt", str(trained / "models" / "model.pt"), "--config", str(tiny)]
    args += ["--source", str(bundle_data), "--out", str(tmp_path / "pred"), "--device", "cpu"]
    env = {**os.environ, "PYTHONPATH": str(target)}
    run = subprocess.run(
        [sys.executable, "-c", code, *args], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    where = run.stdout.splitlines()[0].split()
    assert all(Path(p).is_relative_to(target) for p in where), where  # nothing from the checkout
    test_case = json.loads(bundle_data.read_text())["test"][0]
    assert (tmp_path / "pred" / test_case["case_id"] / "dose_pred.nii.gz").is_file()
