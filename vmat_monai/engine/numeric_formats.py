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
- **A guard for one wrong kernel.** On the AMD EPYC with AVX512-BF16 (PyTorch 2.13 CPU, oneDNN), the
  weight gradient of a bf16 3-D convolution with a 3-voxel kernel is wrong (NaN, or finite and far off)
  whenever the input is 2 voxels deep: the deepest level of a network given 32³ patches. Every
  ``Conv3d`` of a trained network therefore computes in float32 when, on a CPU in bf16, an input side is
  2 voxels or less (:func:`guard_small_bf16_conv3d`; the levels it touches hold a few hundred voxels, so
  it costs nothing measurable). The 48³ and larger patches of the shipped configurations never reach it.
- **Memory layout.** On a CPU, ``channels_last_3d`` (the oneDNN convolutions' native layout: the
  same operations in another order, 10–27 % faster per training step on the two CPUs measured); on
  CUDA the default layout (not measured here).
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
from torch import nn

__all__ = [
    "cpu_has_native_bf16",
    "default_channels_last",
    "default_precision",
    "guard_small_bf16_conv3d",
    "to_channels_last",
]

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


SMALL_SIDE = 2
"""Input side (voxels) at or below which a CPU bf16 ``Conv3d`` computes in float32 instead."""


def _bf16_on_cpu(x: torch.Tensor) -> bool:
    if x.device.type != "cpu":
        return False
    if x.dtype == torch.bfloat16:
        return True
    return torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu") == torch.bfloat16


class SmallInputFloat32Conv3d(nn.Conv3d):
    """A ``Conv3d`` that computes in float32 where a CPU bf16 kernel is wrong: an input of 5 dimensions
    with a side of :data:`SMALL_SIDE` voxels or less, on a CPU, in bf16 (autocast or bf16 tensors).
    Elsewhere it is ``nn.Conv3d`` unchanged; its parameters and state dict are those of ``nn.Conv3d``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 5 or min(x.shape[2:]) > SMALL_SIDE or not _bf16_on_cpu(x):
            return super().forward(x)
        bias = None if self.bias is None else self.bias.float()
        with torch.autocast("cpu", enabled=False):
            out = self._conv_forward(x.float(), self.weight.float(), bias)
        # under autocast float32 is what the next operation expects; a bf16 network gets bf16 back
        return out if torch.is_autocast_enabled("cpu") else out.to(x.dtype)


def guard_small_bf16_conv3d(network: nn.Module) -> nn.Module:
    """Make every ``nn.Conv3d`` of ``network`` a :class:`SmallInputFloat32Conv3d`, in place.

    Why: on a CPU with AVX512-BF16 (AMD EPYC, PyTorch 2.13), the bf16 weight gradient of a 3×3×3
    convolution of an input 2 voxels deep is NaN or wrong, so training in ``bf16-mixed`` with 32³ patches
    diverged or learned from garbage at the deepest level. The classes change, not the modules: parameters
    keep their identity and the state dict its keys. Returns ``network``."""
    for module in network.modules():
        if type(module) is nn.Conv3d:
            module.__class__ = SmallInputFloat32Conv3d
    return network
