"""Checking where the biLM runs before any work: `--device bogus` or `cuda` on a machine without a
GPU is a one-line error, not a traceback deep in torch after the model was read; so is a thread
count torch cannot start."""

from __future__ import annotations

import torch

SUPPORTED = ("cpu", "cuda", "mps")
# torch.set_num_threads(10**5) kills the process (a segfault in the OpenMP pool); 4,096 runs.
MAX_THREADS = 1024


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


def check_threads(threads: int, where: str = "threads") -> int:
    """`threads` if torch can use it (0 = torch's default, up to MAX_THREADS); ValueError if not."""
    if not 0 <= threads <= MAX_THREADS:
        raise ValueError(f"{where} must be between 0 (torch's default) and {MAX_THREADS}, got {threads}")
    return threads
