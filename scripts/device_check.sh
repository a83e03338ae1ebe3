#!/usr/bin/env bash
# GPU check (docs/BENCHMARKS.md, "GPU check"): on a CUDA machine with PyTorch, in under 10 minutes,
#   1. generate a small synthetic cohort there, train the default 128³ configuration (bf16 mixed
#      precision where the GPU has it) for DEVICE_TRAIN_MINUTES, predict and evaluate the held-out plans;
#   2. train the OpenKBP configuration (default network, native grid) on the carried OpenKBP patients;
#   3. time one training step of the default network at 128³ (bf16 autocast), its peak GPU memory, and a
#      full-volume sliding-window inference;
# and print every figure. Two phases:
#
#   bash scripts/device_check.sh prepare   # here (with network access): wheels + OpenKBP patients into build/device
#   bash scripts/device_check.sh run       # on the CUDA machine, from the repository root, carrying build/device
#
# `prepare` downloads the pure-Python dependencies a stock CUDA PyTorch image lacks (MONAI, nibabel,
# pydicom, rt-utils, fire, ...) and copies the OpenKBP patients that fit in DEVICE_DATA_MB (default 40 MB)
# from ../shared/data/openkbp. `run` installs the wheels into build/device/site (no network needed) and
# writes its logs and a summary to ${OUT:-runs/device_check}.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DEV="$HERE/build/device"
OUT="${OUT:-$HERE/runs/device_check}"
PY="${PYTHON:-python3}"
TRAIN_MIN="${DEVICE_TRAIN_MINUTES:-3}"
KBP_MIN="${DEVICE_OPENKBP_MINUTES:-2}"

prepare() {
    mkdir -p "$DEV/wheels" "$DEV/openkbp/train-pats" "$DEV/openkbp/validation-pats"
    "$HERE/.venv/bin/python" -m pip download --no-deps -d "$DEV/wheels" \
        "monai==$("$HERE/.venv/bin/python" -c 'import monai; print(monai.__version__)')" \
        "nibabel<6" "pydicom<4" "rt-utils<2" "fire" "termcolor" "einops" "dicompyler-core" >/dev/null
    local budget=$(( ${DEVICE_DATA_MB:-40} * 1024 * 1024 )) used=0 n=0
    local src="$HERE/../shared/data/openkbp"
    for split in validation-pats train-pats; do
        local k=0
        for pt in $(ls "$src/$split" | sort -t_ -k2 -n); do
            local size
            size=$(du -sb "$src/$split/$pt" | cut -f1)
            if (( used + size > budget )); then break; fi
            # two validation patients are enough to score; the rest of the budget goes to training
            if [[ $split == validation-pats ]] && (( k >= 2 )); then break; fi
            cp -r "$src/$split/$pt" "$DEV/openkbp/$split/"
            used=$(( used + size )); n=$(( n + 1 )); k=$(( k + 1 ))
        done
    done
    echo "prepared $DEV: $(ls "$DEV/wheels" | wc -l) wheels, $n OpenKBP patients ($(( used / 1048576 )) MB)"
}

run() {
    mkdir -p "$OUT"
    "$PY" -m pip install --no-deps --no-index --target "$DEV/site" "$DEV"/wheels/*.whl >"$OUT/pip.log" 2>&1
    export PYTHONPATH="$HERE:$DEV/site${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
    "$PY" - "$OUT" "$TRAIN_MIN" "$KBP_MIN" "$DEV/openkbp" <<'PYEOF'
import json, sys, time
from pathlib import Path

import torch

out, train_min, kbp_min, kbp_data = Path(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3]), Path(sys.argv[4])
assert torch.cuda.is_available(), "no CUDA device: this check is for a GPU machine"
gpu = torch.cuda.get_device_name(0)
figures = {"gpu": gpu, "torch": torch.__version__, "bf16": torch.cuda.is_bf16_supported()}

# 3 first (seconds): the default network's step and inference
from monai.inferers import SlidingWindowInferer
from vmat_monai.networks import ConditionedUNet

net = ConditionedUNet(in_channels=10).cuda()
opt = torch.optim.AdamW(net.parameters(), 2e-4)
x, c = torch.randn(2, 10, 128, 128, 128, device="cuda"), torch.rand(2, 13, device="cuda")
y = torch.rand(2, 1, 128, 128, 128, device="cuda")
torch.cuda.reset_peak_memory_stats()
times = []
for _ in range(6):
    torch.cuda.synchronize(); t0 = time.perf_counter()
    opt.zero_grad()
    with torch.autocast("cuda", dtype=torch.bfloat16):
        loss = torch.nn.functional.l1_loss(net(x, c).float(), y)
    loss.backward(); opt.step()
    torch.cuda.synchronize(); times.append(time.perf_counter() - t0)
figures["step_s_default_2x128"] = sorted(times[2:])[2]
figures["peak_gpu_gib_step"] = torch.cuda.max_memory_allocated() / 2**30
vol = torch.randn(1, 10, 164, 112, 96, device="cuda")
inferer = SlidingWindowInferer((128,) * 3, sw_batch_size=4, overlap=0.25, mode="gaussian")
net.eval()
with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16):
    inferer(vol, lambda p: net(p, c[:1].expand(p.shape[0], -1)))
    torch.cuda.synchronize(); t0 = time.perf_counter()
    inferer(vol, lambda p: net(p, c[:1].expand(p.shape[0], -1)))
    torch.cuda.synchronize()
figures["inference_s_164x112x96"] = time.perf_counter() - t0
print(json.dumps(figures), flush=True)

# 1: the demo with the default (GPU) configuration
from vmat_monai.workflows.demo import DemoOptions, run_demo

demo = run_demo(DemoOptions(workdir=out / "demo", cases=16, workers=8, train_minutes=train_min, configs="default"))
metrics = (demo.evaluation or {}).get("metrics", {})
figures["demo"] = {k: metrics[k]["mean"] for k in ("MAE_body", "gamma_pass_rate", "PTV70_D95_err") if k in metrics}
print(json.dumps(figures["demo"]), flush=True)

# 2: OpenKBP on the carried patients
from vmat_monai.workflows.openkbp import OpenKBPOptions, run_openkbp

kbp = run_openkbp(OpenKBPOptions(data_root=kbp_data, workdir=out / "openkbp", minutes=kbp_min, configs="openkbp", workers=8))
figures["openkbp"] = {"dose_score": kbp.dose_score, "dvh_score": kbp.dvh_score, "patients": kbp.n_patients,
                      "training": kbp.training_summary, "predict_s_per_patient": kbp.predict_seconds_per_patient}
(out / "figures.json").write_text(json.dumps(figures, indent=2, default=str))
print(json.dumps(figures, indent=2, default=str))
PYEOF
}

case "${1:-}" in
    prepare) prepare ;;
    run) run ;;
    *) echo "usage: $0 prepare|run" >&2; exit 2 ;;
esac
