"""Find the learned scalar-mix weights inside a trained spaCy pipeline.

A downstream component (e.g. `ner` with an ELMo listener) owns its mix as a Thinc layer named
MIX_LAYER_NAME (spacy_elmo/layers/mix.py) with params `w` and `gamma`; a mix may also be a
`spacy_elmo.bilm.ScalarMix` torch module behind a PyTorch shim. We walk every component's model
and report softmax(w) and gamma of each mix found.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

MIX_LAYER_NAME = "elmo_scalar_mix"  # the name ElmoScalarMix gives its thinc Model


def _torch_modules(obj: Any):
    """Torch modules reachable from a pipeline component: its thinc model's shims, and plain
    attributes that are torch modules themselves."""
    import torch

    model = getattr(obj, "model", None)
    if model is not None and hasattr(model, "walk"):
        for node in model.walk():
            for shim in getattr(node, "shims", []):
                module = getattr(shim, "_model", None)
                if isinstance(module, torch.nn.Module):
                    yield f"{node.name}", module
    for name, value in getattr(obj, "__dict__", {}).items():  # Cython components have none
        if isinstance(value, torch.nn.Module):
            yield name, value


def scalar_mixes(nlp) -> dict[str, dict]:
    """{name: {'weights': softmax(w) list, 'gamma': float}} for every mix found.

    name: the component's name for a Thinc mix ('<component> #k' when it has several), or
    '<component>/<where>' for a torch ScalarMix. A mix reached twice is reported once.
    """
    from ..bilm import ScalarMix

    found: dict[str, dict] = {}
    seen: set[int] = set()
    for pipe_name, proc in nlp.pipeline:
        model = getattr(proc, "model", None)
        nodes = list(model.walk()) if model is not None and hasattr(model, "walk") else []
        for node in nodes:
            if node.name == MIX_LAYER_NAME and node.has_param("w") and id(node) not in seen:
                seen.add(id(node))
                w = np.asarray(node.ops.to_numpy(node.get_param("w")), dtype=np.float64)  # (n_layers,)
                s = np.exp(w - w.max())
                key = pipe_name if pipe_name not in found else f"{pipe_name} #{len(seen)}"
                found[key] = {
                    "weights": (s / s.sum()).tolist(),
                    "gamma": float(np.asarray(node.ops.to_numpy(node.get_param("gamma"))).reshape(-1)[0]),
                }
        for where, module in _torch_modules(proc):
            for sub_name, sub in module.named_modules():
                if isinstance(sub, ScalarMix) and id(sub) not in seen:
                    seen.add(id(sub))
                    key = "/".join(x for x in (pipe_name, where, sub_name) if x)
                    found[key] = {
                        "weights": [float(w) for w in sub.normalized_weights().detach().cpu()],
                        "gamma": float(sub.gamma.detach().cpu().reshape(-1)[0]),
                    }
    return found


def pipeline_mixes(path: str | Path) -> tuple[dict[str, dict], str | None]:
    """(mixes, None) from a pipeline directory, or ({}, reason) when it cannot be read."""
    path = Path(path)
    if not path.exists():
        return {}, f"{path} does not exist"
    try:
        import spacy

        nlp = spacy.load(path)
    except Exception as err:  # noqa: BLE001 - any failure to load is reported, not raised
        return {}, f"could not load {path}: {type(err).__name__}: {err}"
    mixes = scalar_mixes(nlp)
    if not mixes:
        return {}, f"no ScalarMix module found in {path}"
    return mixes, None
