"""vmat-monai: MONAI-based 3D dose prediction for prostate VMAT radiotherapy."""

from importlib.metadata import PackageNotFoundError, version

try:  # one version for the package and its bundles: pyproject.toml, read from the installed metadata
    __version__ = version("vmat-monai")
except PackageNotFoundError:  # a source tree on the path without an installation
    __version__ = "unknown"
