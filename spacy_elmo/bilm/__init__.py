"""ELMo's bidirectional language model in plain PyTorch (no spaCy import).

    from spacy_elmo.bilm import batch_to_ids, load_bilm, ScalarMix
    bilm = load_bilm("path/to/model_dir")            # or options_file=..., weight_file=...
    fast = load_bilm("path/to/model_dir", precision="int8")   # or "bfloat16" (docs/inference.md)
    out = bilm(bilm.batch_to_ids([["Hello", "world", "."]]))  # the model's own ids (bytes or vocabulary)
    out.layers   # n_layers + 1 tensors (batch, tokens, dim);  out.mask  (batch, tokens)
"""

from .char_encoder import CharEncoder
from .char_ids import BOS_TOKEN, EOS_TOKEN, batch_to_ids, token_to_char_ids
from .lstm import BiLstmStack
from .model import BiLM, BiLMOutput
from .options import CharCnnOptions, CharVocabularyOptions, ElmoOptions, LstmOptions, OptionsError, WordEmbeddingOptions
from .precision import PRECISIONS, PrecisionFallbackWarning, with_precision
from .scalar_mix import ScalarMix, masked_layer_norm
from .vocab import TokenIds, VocabularyError
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
from .efml import EfmlError, convert_efml
from .efml_catalog import efml_catalog, efml_entry

__all__ = [
    "BOS_TOKEN", "EOS_TOKEN", "BiLM", "BiLMOutput", "BiLstmStack", "CharCnnOptions", "CharEncoder",
    "CharVocabularyOptions", "EfmlError", "ElmoOptions", "LstmOptions", "ModelFiles", "OptionsError", "PRECISIONS",
    "PrecisionFallbackWarning", "ScalarMix", "TokenIds", "VocabularyError", "WeightFileError", "WordEmbeddingOptions",
    "convert_efml", "efml_catalog", "efml_entry",
    "batch_to_ids", "expected_shapes", "load_bilm", "load_weights", "masked_layer_norm",
    "resolve_model_files", "save_model_dir", "save_weights", "token_to_char_ids", "with_precision",
]
