"""Where inference time goes: the biLM's `embed` path under torch.profiler, per kind of operation.

    python benchmarks/profile_inference.py --precision float32 --sentences 128 --threads 2
    python benchmarks/profile_inference.py --precision int8 --latency   # one 13-word sentence

`bench_inference.py` says how fast each mode is; this says why. It runs the same model (original
size, random weights) over the same made-up sentences once to warm up, then once under the
profiler, and sums each operation's own CPU time (not counting the operations it calls) into:
    products     matrix products and convolutions (what the FLOP count and the ceiling are about)
    elementwise  gate non-linearities, the cell update, clipping, scaling, quantizing
    copies       casts, concatenations, gathers, index_put, new tensors
    other        everything else (views, the Python side of torch ops, ...)
It then times the LSTM's hidden-to-gates product alone at the batch shape the run used, against
the square-matrix ceiling, to tell a slow shape from slow glue. Timings mean something only on a
quiet machine. Own times under the profiler add up to more than the unprofiled run (its own cost
lands on some operations: `aten::cat`, which `torch.stack` calls, read 0.7-1.0 s here where timing
the same calls directly gave 0.07 s), so read the shares and the operations, not the seconds.
"""

from __future__ import annotations

import argparse
import time
from collections import defaultdict

import torch
from torch.profiler import ProfilerActivity, profile

from spacy_elmo.bilm import BiLM
from spacy_elmo.bilm.blocked import BlockedWeights
from spacy_elmo.bilm.embedder import Embedder
from spacy_elmo.bilm.precision import with_precision

from bench_inference import LATENCY_SENTENCE, SIZES, flops_per_position, make_sentences, matmul_ceiling

KINDS = {
    "products": ("mm", "bmm", "addmm", "baddbmm", "_int_mm", "convolution", "conv1d", "mkldnn_convolution",
                 "_convolution", "linear", "matmul"),
    "elementwise": ("sigmoid", "tanh", "mul", "mul_", "add", "add_", "addcmul", "addcmul_", "clamp", "clamp_",
                    "relu", "max", "amax", "abs", "div", "round", "sub", "rsub", "where", "sigmoid_", "tanh_",
                    "clamp_min", "maximum", "softmax", "exp"),
    "copies": ("cat", "copy_", "to", "_to_copy", "index_put", "index_put_", "_index_put_impl_", "gather",
               "index", "contiguous", "clone", "empty", "zeros", "new_zeros", "zero_", "fill_", "stack",
               "empty_like", "empty_strided", "new_empty", "masked_fill", "reshape", "unique"),
}


def kind_of(name: str) -> str:
    if name.startswith(("onednn::", "quantized::", "mkldnn::")):
        return "products"  # oneDNN's linear: int8, and float32 with a blocked weight
    op = name.removeprefix("aten::")
    for kind, ops in KINDS.items():
        if op in ops:
            return kind
    return "other"


def time_best(fn, repeats: int = 5) -> float:
    fn()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--precision", default="float32", choices=["float32", "bfloat16", "int8"])
    parser.add_argument("--size", default="original", choices=sorted(SIZES))
    parser.add_argument("--sentences", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=64, help="most sentences per batch (embed's default)")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--latency", action="store_true", help="profile one 13-word sentence instead")
    parser.add_argument("--top", type=int, default=15, help="operations listed by own time")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    options = SIZES[args.size]
    bilm = with_precision(BiLM(options).eval(), args.precision, "cpu")
    embedder = Embedder(bilm, batch_size=args.batch_size)
    sentences = [LATENCY_SENTENCE] if args.latency else make_sentences(args.sentences)
    positions = sum(len(s) + 2 for s in sentences)
    with torch.inference_mode():
        embedder.embed_sentences(sentences)  # warm-up: oneDNN primitives, allocator
        start = time.perf_counter()
        embedder.embed_sentences(sentences)
        plain = time.perf_counter() - start
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            embedder.embed_sentences(sentences)
    events = [e for e in prof.key_averages() if e.key.startswith(("aten::", "onednn::", "quantized::", "mkldnn::"))]
    by_kind: dict[str, float] = defaultdict(float)
    for e in events:
        by_kind[kind_of(e.key)] += e.self_cpu_time_total / 1e6
    profiled = sum(by_kind.values())
    words = sum(len(s) for s in sentences)
    print(f"{args.size} size, {args.precision}, {len(sentences)} sentences ({words:,} words), "
          f"{torch.get_num_threads()} threads: {plain * 1e3:,.1f} ms unprofiled ({words / plain:,.0f} words/s)")
    flops = flops_per_position(options) * positions
    print(f"model FLOPs {flops / 1e9:.1f} G -> {flops / plain / 1e9:,.1f} GFLOP/s")
    print(f"\n{'kind':<12} {'seconds':>8} {'share':>6}")
    for kind in ("products", "elementwise", "copies", "other"):
        print(f"{kind:<12} {by_kind[kind]:>8.3f} {by_kind[kind] / profiled:>6.1%}")
    print(f"\n{'operation':<28} {'calls':>7} {'self s':>8} {'share':>6}")
    for e in sorted(events, key=lambda e: -e.self_cpu_time_total)[: args.top]:
        print(f"{e.key:<28} {e.count:>7} {e.self_cpu_time_total / 1e6:>8.3f} {e.self_cpu_time_total / 1e6 / profiled:>6.1%}")

    # The recurrent product alone at this run's batch shape, against the square ceiling.
    if args.precision == "float32":
        lstm = options.lstm
        rows = 1 if args.latency else args.batch_size
        h = torch.randn(2, rows, lstm.projection_dim)
        W = torch.randn(2, lstm.projection_dim, 4 * lstm.dim)
        gates = torch.randn(2, rows, 4 * lstm.dim)
        blocked = BlockedWeights()  # the model's own path for this product where it applies

        @torch.no_grad()
        def hidden_product() -> torch.Tensor:
            fast = blocked.product("hidden", h, W, add=gates)
            return fast if fast is not None else torch.baddbmm(gates, h, W)

        seconds = time_best(hidden_product, repeats=20)
        shape_rate = 2 * 2 * rows * lstm.projection_dim * 4 * lstm.dim / seconds / 1e9
        ceiling = matmul_ceiling("float32", 2048, "cpu") / 1e9
        print(f"\nhidden product (2, {rows}, {lstm.projection_dim}) @ (2, {lstm.projection_dim}, {4 * lstm.dim}): "
              f"{seconds * 1e3:.2f} ms = {shape_rate:,.0f} GFLOP/s; square float32 ceiling {ceiling:,.0f} GFLOP/s")


if __name__ == "__main__":
    main()
