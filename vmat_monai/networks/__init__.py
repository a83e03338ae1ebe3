"""Dose prediction networks built from MONAI blocks."""

from vmat_monai.networks.conditioned_unet import ConditionedUNet, FiLM, cpu_conditioned_unet
from vmat_monai.networks.prior_residual import PriorResidual

__all__ = ["ConditionedUNet", "FiLM", "PriorResidual", "cpu_conditioned_unet"]
