"""Which reduced-precision number formats a device runs natively.

bfloat16 halves the memory traffic of every matrix product, and CPUs with AVX-512 BF16 or AMX
run bf16 products natively (measured here: 841 GFLOP/s against 201-210 in float32). Elsewhere
torch emulates bf16 on the CPU, slower than float32, so callers fall back to float32 there.

`with_precision` turns a float32 biLM into its inference copy for precision "float32" (itself),
"bfloat16" or "int8" (see docs/inference.md for the speed and error of each).
"""

from __future__ import annotations

import warnings
from copy import deepcopy

import torch


def cpu_supports(*checks: str) -> bool:
    """True when any of torch's own CPU feature checks (`torch.cpu._is_..._supported`) says yes;
    a check this torch does not have counts as no."""
    return any(bool(getattr(torch.cpu, name, lambda: False)()) for name in checks)


def cpu_has_native_bf16() -> bool:
    """True when this CPU has AVX-512 BF16 or AMX tiles (torch's own detection)."""
    return cpu_supports("_is_avx512_bf16_supported", "_is_amx_tile_supported")


def native_bf16(device: torch.device | str) -> bool:
    """True when `device` computes bfloat16 natively (a CUDA GPU of compute capability >= 8.0,
    or a CPU with AVX-512 BF16 / AMX)."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        return cpu_has_native_bf16()
    return False


# ---- inference precision: "float32" (exact), "bfloat16", "int8" ------------------------------------

PRECISIONS = ("float32", "bfloat16", "int8")


class PrecisionFallbackWarning(UserWarning):
    """A reduced precision was asked for where it does not run natively; float32 runs instead."""


def check_precision(precision: str) -> str:
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    return precision


def precision_fallback(precision: str, device: torch.device | str) -> str | None:
    """Why `precision` cannot run on `device` (float32 then runs instead), or None when it can."""
    device = torch.device(device)
    if check_precision(precision) == "bfloat16" and not native_bf16(device):
        where = "this CPU has no AVX-512 BF16 / AMX" if device.type == "cpu" else f"{device} has no native bf16"
        return f"precision 'bfloat16': {where} (emulated bf16 is slower than float32); running in float32"
    if precision == "int8" and device.type != "cpu":
        return f"precision 'int8' runs on the CPU only; running in float32 on {device}"
    return None


def resolve_precision(precision: str, device: torch.device | str) -> str:
    """The precision that will run on `device`: `precision`, or float32 with a one-line warning."""
    reason = precision_fallback(precision, device)
    if reason is not None:
        warnings.warn(reason, PrecisionFallbackWarning, stacklevel=2)
        return "float32"
    return precision


def with_precision(bilm, precision: str, device: torch.device | str | None = None, copy: bool = True):
    """`bilm` (float32, eval) set up to run inference in `precision` on `device` (default: where
    its weights are). float32 returns `bilm` itself. bfloat16 casts every weight (the LSTM cell
    state stays float32, see lstm.py); int8 builds an inference-only copy (quantized.py). With
    copy=False the bf16 cast happens in place (for a model nobody else holds). The result is
    marked with `.precision`; it cannot be trained or saved."""
    from .quantized import quantize_bilm  # quantized imports the model modules

    if device is None:
        device = bilm.char_encoder.char_embed.weight.device
    precision = resolve_precision(precision, device)
    if precision == "float32":
        return bilm
    if precision == "int8":
        reduced = quantize_bilm(bilm)
    else:
        reduced = (deepcopy(bilm) if copy else bilm).to(torch.bfloat16)
    reduced.precision = precision
    return reduced.eval().requires_grad_(False)
