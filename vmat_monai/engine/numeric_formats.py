"""How the network computes: the training precision and the memory layout each machine gets by default.

Measured in ``scripts/benchmark.py --only speed`` (docs/BENCHMARKS.md) and on OpenKBP (docs/EXPERIMENTS.md,
2026-12-03: training steps in 3 minutes on a 2-core Intel Xeon with AMX, against float32: channels_last_3d
1.09×, bf16 mixed 1.35×, both 1.55×; a 20-minute bf16 run scored as float32 runs of the same step count;
2026-12-07, a 2-core AMD EPYC with AVX512-BF16 and no AMX: step time against float32 0.67× with
channels_last_3d, 0.59× with bf16 mixed, 0.50× with both):

- **Precision.** On CUDA, bf16 mixed precision where the GPU has it, else fp16 mixed. On a CPU with
  native bf16 instructions (Intel AMX or AVX512-BF16: Xeon since Cooper/Sapphire Rapids, AMD since
  Zen 4), bf16 mixed precision; on any other CPU, float32: there bf16 is emulated and a training
  step was 42 times slower (AMD EPYC without AVX512-BF16). The loss and the validation metrics are
  computed in float32 either way (:meth:`~vmat_monai.engine.module.DosePredictionModule._loss`), and
  prediction runs in float32.
- **Memory layout.** On a CPU, ``channels_last_3d`` (the oneDNN convolutions' native layout: the
  same operations in another order, 10–27 % faster per training step on the two CPUs measured); on
  CUDA the default layout (not measured here).
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
from torch import nn

__all__ = ["cpu_has_native_bf16", "default_channels_last", "default_precision", "to_channels_last"]

_BF16_FLAGS = ("amx_bf16", "avx512_bf16")


def cpu_has_native_bf16(cpuinfo: str | Path = "/proc/cpuinfo") -> bool:
    """Whether the CPU computes bf16 natively (AMX or AVX512-BF16 in the Linux CPU flags).

    False where the flags cannot be read (other systems): bf16 is then not assumed."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        text = Path(cpuinfo).read_text(errors="replace")
    except OSError:
        return False
    flags = {f for line in text.splitlines() if line.startswith("flags") for f in line.split(":", 1)[-1].split()}
    return any(f in flags for f in _BF16_FLAGS)


def default_precision(accelerator: str | None = None) -> str:
    """Lightning ``precision`` for this machine: ``"bf16-mixed"`` / ``"16-mixed"`` on CUDA,
    ``"bf16-mixed"`` on a CPU with native bf16, ``"32-true"`` otherwise.

    Args:
        accelerator: ``"cuda"`` or ``"cpu"``; None: CUDA when available.
    """
    cuda = torch.cuda.is_available() if accelerator is None else accelerator == "cuda"
    if cuda:
        return "bf16-mixed" if torch.cuda.is_bf16_supported() else "16-mixed"
    return "bf16-mixed" if cpu_has_native_bf16() else "32-true"


def default_channels_last(accelerator: str | None = None) -> bool:
    """Whether to run the network in ``channels_last_3d``: on a CPU (measured faster), not on CUDA.

    Args:
        accelerator: ``"cuda"`` or ``"cpu"``; None: CUDA when available.
    """
    cuda = torch.cuda.is_available() if accelerator is None else accelerator == "cuda"
    return not cuda


def to_channels_last(network: nn.Module) -> nn.Module:
    """Store the 5-D weights (3-D convolutions) of ``network`` in ``channels_last_3d``, in place.

    Parameters keep their identity (optimisers built later see the same tensors); other tensors are
    unchanged. Returns ``network``."""
    with torch.no_grad():
        for p in network.parameters():
            if p.dim() == 5:
                p.data = p.data.contiguous(memory_format=torch.channels_last_3d)
    return network
