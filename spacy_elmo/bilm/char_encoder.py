"""Character encoder: char embeddings -> 1-D convolutions with max-pooling -> highway -> projection.

Gives every token, seen or not, a context-free vector from its spelling (ELMo's layer 0).
Parameters use the bilm-tf layout (x @ W) so that weight files load without transposes.
With `word_embedding` options (ELMoForManyLangs), the token's word vector is put before the
char-CNN features and both go through the projection.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .blocked import BlockedWeights, applies
from .options import CharCnnOptions, WordEmbeddingOptions
from .kernel_cache import padded_rows
from .token_cache import TokenCache


# Rows per character-CNN call when a token cache is on (see encode_in_chunks).
CHUNK_ROWS = 32
# Tokens per product of the blocked convolutions (CharEncoder.convolve_blocked): at the original
# size 128 tokens x 44 positions x 1,024 filters is 23 MB, which the allocator reuses call to call.
CONV_ROWS = 128


class Highway(nn.Module):
    """bilm-tf's highway layer: y = g * relu(x W_t + b_t) + (1 - g) * x, g = sigmoid(x W_c + b_c)."""

    def __init__(self, dim: int):
        super().__init__()
        self.W_carry = nn.Parameter(torch.empty(dim, dim))
        self.b_carry = nn.Parameter(torch.empty(dim))
        self.W_transform = nn.Parameter(torch.empty(dim, dim))
        self.b_transform = nn.Parameter(torch.empty(dim))
        self.blocked = BlockedWeights()
        self.reset_parameters()

    def reset_parameters(self) -> None:
        dim = self.W_carry.shape[0]
        nn.init.normal_(self.W_carry, std=(1.0 / dim) ** 0.5)
        nn.init.normal_(self.W_transform, std=(1.0 / dim) ** 0.5)
        # A negative carry bias starts the layer close to the identity (bilm-tf uses -2).
        nn.init.constant_(self.b_carry, -2.0)
        nn.init.zeros_(self.b_transform)

    # The two products; the int8 copy (quantized.py) overrides them and shares `forward`. At
    # inference on a CPU they run through weights blocked once for oneDNN (blocked.py).

    def carry(self, x: torch.Tensor) -> torch.Tensor:
        fast = self.blocked.product("carry", x, self.W_carry, self.b_carry)
        return fast if fast is not None else torch.addmm(self.b_carry, x, self.W_carry)

    def transform(self, x: torch.Tensor) -> torch.Tensor:
        fast = self.blocked.product("transform", x, self.W_transform, self.b_transform)
        return fast if fast is not None else torch.addmm(self.b_transform, x, self.W_transform)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: (n, dim)
        gate = torch.sigmoid(self.carry(x))
        transformed = torch.relu(self.transform(x))
        return gate * transformed + (1.0 - gate) * x


class CharEncoder(nn.Module):
    """Maps (batch, tokens, 50) character ids to (batch, tokens, output_dim) token vectors.

    With word vectors each token row has one more id at the end: its word id.
    Rows whose ids are all 0 (batch padding) come out as zeros. Each distinct token in the batch
    is encoded once: repeated words ("the", ",") cost nothing extra and the output is unchanged.
    """

    def __init__(self, options: CharCnnOptions, output_dim: int, words: WordEmbeddingOptions | None = None):
        super().__init__()
        self.options = options
        self.output_dim = output_dim
        # Row 0 is batch padding and stays zero; then the shifted character ids. For UTF-8 bytes
        # always 262 rows: bilm-tf writes n_characters = 261 during training for the same 261 characters.
        self.char_embed = nn.Embedding(options.embedding_rows, options.embedding_dim, padding_idx=0)
        self.word_embed = None if words is None else nn.Embedding(words.n_words + 1, words.dim, padding_idx=0)
        features = options.n_filters + (0 if words is None else words.dim)
        self.convolutions = nn.ModuleList(
            nn.Conv1d(options.embedding_dim, n_filters, kernel_size=width)
            for width, n_filters in options.filters
        )
        self.highways = nn.ModuleList(Highway(options.n_filters) for _ in range(options.n_highway))
        self.W_proj = nn.Parameter(torch.empty(features, output_dim))
        self.b_proj = nn.Parameter(torch.zeros(output_dim))
        self.blocked = BlockedWeights()  # inference: W_proj and the filters in oneDNN's layout (blocked.py)
        nn.init.normal_(self.W_proj, std=(1.0 / features) ** 0.5)
        self.activation = {"relu": torch.relu, "tanh": torch.tanh}[options.activation]
        # Layer-0 vectors of tokens already read, for frozen inference (token_cache.py); None = off.
        self.token_cache: TokenCache | None = None

    def encode_unique(self, char_ids: torch.Tensor) -> torch.Tensor:
        """(n, 50) ids of n tokens -> (n, output_dim). No de-duplication, no padding handling.

        With word vectors: (n, max_chars + 1) ids, the last one the word id.
        """
        n_chars = self.options.max_characters_per_token
        x = self.char_embed(char_ids[:, :n_chars]).transpose(1, 2)  # (n, char_dim, 50)
        # Max over character positions first, then the activation (as bilm-tf does).
        h = self.activation(self.convolve(x))  # (n, n_filters)
        for highway in self.highways:
            h = highway(h)
        if self.word_embed is not None:
            h = torch.cat([self.word_embed(char_ids[:, n_chars]), h], dim=-1)  # (n, word_dim + n_filters)
        return self.project(h)  # (n, output_dim)

    def convolve(self, x: torch.Tensor) -> torch.Tensor:
        """Every convolution, max-pooled over character positions: (n, char_dim, chars) -> (n, n_filters)."""
        fast = self.convolve_blocked(x)
        if fast is not None:
            return fast
        return torch.cat([conv(x).max(dim=-1).values for conv in self.convolutions], dim=-1)

    def convolve_blocked(self, x: torch.Tensor) -> torch.Tensor | None:
        """Inference on a CPU (blocked.py): each convolution as one product of the characters'
        windows (n x positions, char_dim x width) with its filters blocked for oneDNN, 3.5-4x faster
        than conv1d for these shapes (docs/inference.md), CONV_ROWS tokens at a time so that the
        (tokens x positions x filters) products stay small. None where blocked weights do not apply."""
        convolutions = list(self.convolutions)
        if not applies(x, convolutions[0].weight):
            return None
        n, dim, chars = x.shape
        if n == 0:
            return x.new_zeros(0, self.options.n_filters)
        chunks = []
        for rows in x.split(CONV_ROWS):
            pooled = []
            for k, conv in enumerate(convolutions):
                width = conv.kernel_size[0]
                windows = rows.unfold(2, width, 1).transpose(1, 2).reshape(-1, dim * width)  # (m x positions, dim x width)
                filters = conv.weight.reshape(conv.out_channels, dim * width).t()  # (dim x width, n_filters_k)
                y = self.blocked.product(f"conv{k}", windows, filters, conv.bias)  # (m x positions, n_filters_k)
                pooled.append(y.view(rows.shape[0], chars - width + 1, -1).amax(dim=1))
            chunks.append(torch.cat(pooled, dim=-1))
        return torch.cat(chunks)

    def encode_padded(self, char_ids: torch.Tensor) -> torch.Tensor:
        """encode_unique on zero rows added up to a fixed size: a bounded set of shapes for oneDNN's
        kernel cache (kernel_cache.py). (n, ids) -> (n, output_dim)."""
        n = char_ids.shape[0]
        return self.encode_unique(F.pad(char_ids, (0, 0, 0, padded_rows(n) - n)))[:n]

    def encode_in_chunks(self, char_ids: torch.Tensor) -> torch.Tensor:
        """encode_unique in chunks of exactly CHUNK_ROWS rows (the last one padded), so that every
        vector comes out of the same kernels whatever else is encoded with it: bit-identical across
        batches, which the token cache needs (a kernel chosen for another row count may round
        differently). (n, ids) -> (n, output_dim)."""
        n = char_ids.shape[0]
        padded = F.pad(char_ids, (0, 0, 0, -n % CHUNK_ROWS))
        return torch.cat([self.encode_unique(chunk) for chunk in padded.split(CHUNK_ROWS)])[:n]

    def project(self, h: torch.Tensor) -> torch.Tensor:
        """(n, features) -> (n, output_dim); the int8 copy (quantized.py) overrides it."""
        fast = self.blocked.product("projection", h, self.W_proj, self.b_proj)
        return fast if fast is not None else torch.addmm(self.b_proj, h, self.W_proj)

    def forward(self, char_ids: torch.Tensor) -> torch.Tensor:
        batch, n_tokens, n_chars = char_ids.shape
        flat = char_ids.reshape(-1, n_chars)
        present = (flat > 0).any(dim=-1)
        if not bool(present.any()):
            out = flat.new_zeros((flat.shape[0], self.output_dim), dtype=self.char_embed.weight.dtype)
            return out.reshape(batch, n_tokens, self.output_dim)
        unique, inverse = torch.unique(flat[present], dim=0, return_inverse=True)  # (n, n_chars)
        cache = self.token_cache
        if cache is not None and cache.enabled_now(unique):
            encoded = cache.encode(unique, self.encode_in_chunks, self.parameters())
        else:
            encoded = self.encode_padded(unique)  # float32, or bf16 under autocast
        out = flat.new_zeros((flat.shape[0], self.output_dim), dtype=encoded.dtype)
        out[present] = encoded[inverse]
        return out.reshape(batch, n_tokens, self.output_dim)
