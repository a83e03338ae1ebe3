"""Reading checkpoints: which model family one holds, its network's weights loaded into a network
(with errors that name the bundle or config to use), and the comma-separated list of an ensemble.

A checkpoint is either a Lightning checkpoint (``last.ckpt``, ``best-*.ckpt``: the network is the
module's ``network`` attribute, its keys under ``state_dict`` prefixed ``network.``) or the
network's own state dict (``models/model.pt``), whose keys may themselves start with ``network.``
when the network is a wrapper (``PriorResidual``, ``PriorResidualDenoiser``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from vmat_monai.engine.bundle import FAMILY_BUNDLE
from vmat_monai.engine.denoiser import is_denoiser

__all__ = ["checkpoint_family", "checkpoint_family_of", "checkpoint_list", "load_network_weights", "network_state"]


def network_state(ckpt: Mapping[str, Any]) -> Mapping[str, Any]:
    """The network's state dict in a loaded checkpoint: a Lightning checkpoint's ``state_dict``
    entries under ``network.`` with that prefix removed, or a plain state dict as it is."""
    if "state_dict" in ckpt:
        return {k[len("network.") :]: v for k, v in ckpt["state_dict"].items() if k.startswith("network.")}
    return ckpt


def checkpoint_family(state: Mapping[str, Any]) -> str:
    """``"diffusion"`` for the state dict of a diffusion denoiser (a ConditionedUNet with a timestep
    embedding, a MONAI DiffusionModelUNet), else ``"unet"`` (the regression network)."""
    keys = [k.removeprefix("network.") for k in state]  # a PriorResidualDenoiser's denoiser is under network.
    return "diffusion" if any(k.endswith("diffusion_n_time") or k.startswith("time_embed.") for k in keys) else "unet"


def checkpoint_family_of(ckpt_path: str | Path) -> str:
    """:func:`checkpoint_family` of a checkpoint file (Lightning checkpoint or ``models/model.pt``)."""
    path = Path(ckpt_path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} not found: train first or pass --ckpt")
    return checkpoint_family(network_state(torch.load(str(path), map_location="cpu", weights_only=True, mmap=True)))


def load_network_weights(network: nn.Module, ckpt_path: str | Path) -> nn.Module:
    """Load a Lightning checkpoint (or a plain state dict) into ``network`` (``weights_only`` loading)."""
    path = Path(ckpt_path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} not found: train first or pass --ckpt_path")
    net_state = network_state(torch.load(str(path), map_location="cpu", weights_only=True))
    family, wanted = checkpoint_family(net_state), ("diffusion" if is_denoiser(network) else "unet")
    if family != wanted:
        raise RuntimeError(
            f"checkpoint {path} holds a {family} model ({FAMILY_BUNDLE[family]} bundle), but this predictor builds "
            f"the {wanted} model: predict with the {FAMILY_BUNDLE[family]} bundle's inference.json, or with "
            f"`vmat-monai predict --bundle {FAMILY_BUNDLE[family]}`"
        )
    try:
        network.load_state_dict(net_state)
    except RuntimeError as err:
        residual_ckpt, residual_net = "gate" in net_state, "gate" in network.state_dict()
        hint = ""
        diffused_ckpt, diffused_net = "prior_residual" in net_state, "prior_residual" in network.state_dict()
        if diffused_ckpt != diffused_net:
            hint = (
                "It holds a denoiser of the residual to the beam dose prior: add `residual` to --config (bundle: "
                "stack configs/residual.json). "
                if diffused_ckpt
                else "It holds a denoiser of the dose itself, not of the residual to the prior: drop `residual` "
                "from --config. "
            )
        elif residual_ckpt != residual_net:
            hint = (
                "It holds a PriorResidual network (correction to the beam dose prior): add `residual` to --config "
                "(bundle: stack configs/residual.json). "
                if residual_ckpt
                else "It holds a plain network, not a PriorResidual one: drop `residual` from --config. "
            )
        raise RuntimeError(
            f"checkpoint {path} does not fit the network: {str(err).splitlines()[0]} ... {hint}Use the "
            "configuration it was trained with (network variant and channels, structure set, and `prior_channels`: "
            "a network trained with the beam dose prior has 1 or 3 input channels more; for a checkpoint trained "
            "without it pass `--prior_channels 0` to the bundle or `--no-dose-prior` to `vmat-monai predict`)"
        ) from err
    return network


def checkpoint_list(ckpt_path: str | Path | Sequence[str | Path]) -> list[Path]:
    """One checkpoint, a comma-separated string of them, or a sequence: a list of paths (at least one)."""
    if isinstance(ckpt_path, (str, Path)):
        parts = [p.strip() for p in str(ckpt_path).split(",") if p.strip()]
    else:
        parts = [str(p) for p in ckpt_path]
    if not parts:
        raise ValueError("no checkpoint given: pass one path, or several separated by commas for an ensemble")
    return [Path(p) for p in parts]
