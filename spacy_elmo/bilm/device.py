"""Checking a device name before any work: `--device bogus` or `cuda` on a machine without a GPU
is a one-line error, not a traceback deep in torch after the model was read."""

from __future__ import annotations

import torch

SUPPORTED = ("cpu", "cuda", "mps")


class DeviceError(ValueError):
    """A device name torch does not know, or a device this machine does not have."""


def parse_device(name: str) -> torch.device:
    """`name` as a torch.device that exists here; DeviceError saying what to use instead."""
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError, TypeError):
        raise DeviceError(f"unknown device {name!r}: use cpu, cuda or cuda:N") from None
    if device.type not in SUPPORTED:
        raise DeviceError(f"device {name!r}: spacy-elmo runs on {', '.join(SUPPORTED)}")
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise DeviceError(
                f"device {name!r} asked for, but PyTorch sees no CUDA GPU (torch {torch.__version__}, "
                f"CUDA build: {torch.version.cuda or 'none'}): use cpu"
            )
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise DeviceError(f"device {name!r}: this machine has {torch.cuda.device_count()} CUDA GPU(s)")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise DeviceError(f"device {name!r} asked for, but PyTorch sees no Apple GPU (MPS): use cpu")
    return device
