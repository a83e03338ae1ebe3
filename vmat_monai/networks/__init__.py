"""Dose prediction networks built from MONAI blocks."""

from vmat_monai.networks.conditioned_unet import ConditionedUNet, FiLM, cpu_conditioned_unet

__all__ = ["ConditionedUNet", "FiLM", "cpu_conditioned_unet"]
