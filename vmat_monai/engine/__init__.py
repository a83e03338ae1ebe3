"""Training and inference: the model-input spec, the Lightning module and data module, the predictor,
bounded training and the bundle helpers."""

from vmat_monai.engine.datamodule import DoseDataModule
from vmat_monai.engine.inputs import ModelInputs, model_inputs
from vmat_monai.engine.module import DosePredictionModule, dose_metrics

__all__ = ["DoseDataModule", "DosePredictionModule", "ModelInputs", "dose_metrics", "model_inputs"]
