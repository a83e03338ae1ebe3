"""Lightning training: the module and the data module."""

from vmat_monai.engine.datamodule import DoseDataModule
from vmat_monai.engine.module import DosePredictionModule, dose_metrics

__all__ = ["DoseDataModule", "DosePredictionModule", "dose_metrics"]
