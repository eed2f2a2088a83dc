"""One LSTM step's matrix products at the biLM's shapes, in every way torch can run them on the CPU.

    python benchmarks/bench_products.py --threads 2                  # original size, rows 1..256
    python benchmarks/bench_products.py --rows 1 16 64 --repeats 50

At inference the biLM's time goes into two products per layer and time step and direction:
h (rows, proj) @ W_hidden (proj, 4 cell) and m (rows, cell) @ W_proj (cell, proj), where rows is
the number of sentences still running at that step (the batch shrinks as sentences end; a single
sentence has one row). Few rows make a product read its whole weight matrix for little work, so
speed there depends on the weights' bytes; many rows make it depend on arithmetic. This times, per
number of rows, both products of one step (both directions) written as:
    float32      torch.bmm, float32 weights (what precision="float32" runs)
    bfloat16     torch.bmm, bf16 weights and activations (precision="bfloat16")
    int8 w8a8    per-row activation quantization + torch._int_mm + rescale
    int8 w8a8 fixed  the same with a fixed activation scale (inputs bounded by the model's clips)
    int8 w8a32   weight-only int8: torch._weight_int8pack_mm, float32 activations
    int8 w8a16   weight-only int8 with bf16 activations
and reports the median milliseconds of each and its speed-up over float32. Timings mean something
only on a quiet machine.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from spacy_elmo.bilm.precision import cpu_has_native_bf16
from spacy_elmo.bilm.quantized import quantize_rows


def median_ms(fn, repeats: int) -> float:
    for _ in range(3):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1e3 * statistics.median(times)


def arms(rows: int, proj: int, cell: int) -> dict:
    torch.manual_seed(0)
    shapes = [(proj, 4 * cell), (cell, proj)]  # the hidden and the projection product
    weights = [torch.randn(2, k, n) / k**0.5 for k, n in shapes]  # (2, in, out) per direction
    inputs = [torch.randn(2, rows, k) for k, _ in shapes]

    def float_step(ws, xs):
        return lambda: [torch.bmm(x, w) for x, w in zip(xs, ws)]

    w8 = [[quantize_rows(w[d].t().contiguous()) for d in range(2)] for w in weights]  # (out, in) int8, scales

    def w8a8():
        for x, per_direction in zip(inputs, w8):
            for d, (w_q, w_scale) in enumerate(per_direction):
                x_q, x_scale = quantize_rows(x[d])
                torch._int_mm(x_q, w_q.t()).float().mul_(x_scale).mul_(w_scale.squeeze(1))

    def w8a8_fixed():  # inputs in a known range (|h| <= proj_clip = 3, |m| < 1): a fixed scale
        for x, per_direction, bound in zip(inputs, w8, (3.0, 1.0)):
            for d, (w_q, w_scale) in enumerate(per_direction):
                x_q = x[d].mul(127 / bound).round_().clamp_(-127, 127).to(torch.int8)
                torch.mul(torch._int_mm(x_q, w_q.t()), w_scale.squeeze(1))

    def weight_only(dtype):
        xs = [x.to(dtype) for x in inputs]
        scales = [[s.squeeze(1).to(dtype) for _, s in per_direction] for per_direction in w8]
        return lambda: [
            torch._weight_int8pack_mm(x[d], w8[i][d][0], scales[i][d]) for i, x in enumerate(xs) for d in range(2)
        ]

    result = {"float32": float_step(weights, inputs), "int8 w8a32": weight_only(torch.float32)}
    result["int8 w8a8"] = w8a8
    result["int8 w8a8 fixed"] = w8a8_fixed
    if cpu_has_native_bf16():
        result["bfloat16"] = float_step([w.bfloat16() for w in weights], [x.bfloat16() for x in inputs])
        result["int8 w8a16"] = weight_only(torch.bfloat16)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, nargs="+", default=[1, 4, 16, 32, 64, 128, 256])
    parser.add_argument("--cell", type=int, default=4096, help="LSTM cells (original size: 4096)")
    parser.add_argument("--proj", type=int, default=512, help="projection (original size: 512)")
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    names = ["float32", "bfloat16", "int8 w8a8", "int8 w8a8 fixed", "int8 w8a32", "int8 w8a16"]
    print(f"one step's hidden + projection products, both directions, cell {args.cell}, projection "
          f"{args.proj}, {torch.get_num_threads()} threads: median ms (x float32)")
    print(f"{'rows':>5} " + " ".join(f"{name:>18}" for name in names))
    for rows in args.rows:
        timings = {name: median_ms(fn, args.repeats) for name, fn in arms(rows, args.proj, args.cell).items()}
        cells = []
        for name in names:
            ms = timings.get(name)
            cells.append(f"{'-':>18}" if ms is None else f"{ms:>9.2f} ({timings['float32'] / ms:>4.1f}x)")
        print(f"{rows:>5} " + " ".join(f"{cell:>18}" for cell in cells))


if __name__ == "__main__":
    main()
