"""vmat-monai: MONAI-based 3D dose prediction for prostate VMAT radiotherapy."""

__version__ = "0.1.0"
