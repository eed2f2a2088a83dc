"""ELMo's bidirectional language model in plain PyTorch (no spaCy import).

    from spacy_elmo.bilm import batch_to_ids, load_bilm, ScalarMix
    bilm = load_bilm("path/to/model_dir")            # or options_file=..., weight_file=...
    fast = load_bilm("path/to/model_dir", precision="int8")   # or "bfloat16" (docs/inference.md)
    out = bilm(batch_to_ids([["Hello", "world", "."]]))
    out.layers   # n_layers + 1 tensors (batch, tokens, dim);  out.mask  (batch, tokens)
"""

from .char_encoder import CharEncoder
from .char_ids import BOS_TOKEN, EOS_TOKEN, batch_to_ids, token_to_char_ids
from .lstm import BiLstmStack
from .model import BiLM, BiLMOutput
from .options import CharCnnOptions, ElmoOptions, LstmOptions, OptionsError
from .precision import PRECISIONS, PrecisionFallbackWarning, with_precision
from .scalar_mix import ScalarMix, masked_layer_norm
from .weights import (
    ModelFiles,
    WeightFileError,
    expected_shapes,
    load_bilm,
    load_weights,
    resolve_model_files,
    save_model_dir,
    save_weights,
)

__all__ = [
    "BOS_TOKEN", "EOS_TOKEN", "BiLM", "BiLMOutput", "BiLstmStack", "CharCnnOptions", "CharEncoder",
    "ElmoOptions", "LstmOptions", "ModelFiles", "OptionsError", "PRECISIONS", "PrecisionFallbackWarning",
    "ScalarMix", "WeightFileError",
    "batch_to_ids", "expected_shapes", "load_bilm", "load_weights", "masked_layer_norm",
    "resolve_model_files", "save_model_dir", "save_weights", "token_to_char_ids", "with_precision",
]
