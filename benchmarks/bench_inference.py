"""Words/second of the biLM at inference, against a straightforward per-time-step baseline.

    python benchmarks/bench_inference.py                      # original + fixture sizes
    python benchmarks/bench_inference.py --sizes original --sentences 128 --threads 2
    python benchmarks/bench_inference.py --device cuda --sentences 2048 --batch-size 256

The baseline is kept here on purpose: it is how AllenNLP runs ELMo (one direction at a time, one
time step at a time, the input-to-hidden product inside the loop, batches in input order, every
token through the char CNN). Both use the same random weights; outputs are checked equal (1e-5).
"""

from __future__ import annotations

import argparse
import random
import time

import torch

from spacy_elmo.bilm import BiLM, ElmoOptions, batch_to_ids
from spacy_elmo.bilm.embedder import Embedder
from spacy_elmo.bilm.model import add_sentence_boundaries

SIZES = {
    # The released "Original" model: 2048 char filters, 2 highway layers, 4096 cells, 512 projection.
    "original": ElmoOptions(),
    # The AllenNLP test fixture's architecture.
    "fixture": ElmoOptions.from_dict(
        {
            "lstm": {"n_layers": 2, "dim": 64, "projection_dim": 16, "cell_clip": 3, "proj_clip": 3,
                     "use_skip_connections": True},
            "char_cnn": {"embedding": {"dim": 4}, "filters": [[1, 4], [2, 8], [3, 16], [4, 32], [5, 64]],
                         "n_highway": 2, "n_characters": 262, "activation": "relu"},
        }
    ),
}


# ---- the baseline: per-time-step, per-direction, as AllenNLP's LstmCellWithProjection -------------


@torch.inference_mode()
def baseline_forward(bilm: BiLM, char_ids: torch.Tensor) -> list[torch.Tensor]:
    """Same maths as BiLM.forward, written the straightforward way. Returns n_layers + 1 layers."""
    enc = bilm.char_encoder
    framed, lengths = add_sentence_boundaries(char_ids)
    batch, time_steps, n_chars = framed.shape
    tokens = enc.encode_unique(framed.reshape(-1, n_chars)).reshape(batch, time_steps, -1)
    tokens = tokens * (framed > 0).any(-1, keepdim=True)
    lstm = bilm.options.lstm
    layer_outputs = []
    inputs = [tokens, tokens]  # per direction
    for k, layer in enumerate(bilm.lstm.layers):
        outs = []
        for d in range(2):
            x = inputs[d]
            W = torch.cat([layer.W_input[d], layer.W_hidden[d]], dim=0)  # (in + proj, 4 cell)
            h = x.new_zeros(batch, lstm.projection_dim)
            c = x.new_zeros(batch, lstm.dim)
            out = x.new_zeros(batch, time_steps, lstm.projection_dim)
            steps = range(time_steps) if d == 0 else range(time_steps - 1, -1, -1)
            for t in steps:
                valid = (lengths > t).unsqueeze(1)  # (batch, 1)
                gates = torch.cat([x[:, t], h], dim=1) @ W + layer.gate_bias()[d]
                i, j, f, o = gates.chunk(4, dim=1)
                c_new = (torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(j)).clamp(-lstm.cell_clip, lstm.cell_clip)
                h_new = ((torch.sigmoid(o) * torch.tanh(c_new)) @ layer.W_proj[d]).clamp(-lstm.proj_clip, lstm.proj_clip)
                c = torch.where(valid, c_new, c)
                h = torch.where(valid, h_new, h)
                out[:, t] = h_new * valid
            if k > 0 and lstm.use_skip_connections:
                out = out + x
            outs.append(out)
        inputs = outs
        layer_outputs.append(torch.cat(outs, dim=-1)[:, 1:-1])
    layers = [torch.cat([tokens, tokens], dim=-1)[:, 1:-1], *layer_outputs]
    mask = (char_ids > 0).any(-1, keepdim=True)
    return [layer * mask for layer in layers]


def baseline_embed(bilm: BiLM, sentences, batch_size: int) -> list[torch.Tensor]:
    results = []
    device = next(bilm.parameters()).device
    for start in range(0, len(sentences), batch_size):
        chunk = sentences[start : start + batch_size]
        layers = torch.stack(baseline_forward(bilm, batch_to_ids(chunk).to(device)), dim=1).cpu()
        results.extend(layers[k, :, : len(s)] for k, s in enumerate(chunk))
    return results


# ---- data ---------------------------------------------------------------------------------------


def make_sentences(n: int, seed: int = 0) -> list[list[str]]:
    """Sentences of 3-60 tokens over a Zipf-like vocabulary of made-up words."""
    rng = random.Random(seed)
    vocab = ["".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(1, 12))) for _ in range(5000)]
    weights = [1.0 / (rank + 1) for rank in range(len(vocab))]
    return [rng.choices(vocab, weights, k=rng.randint(3, 60)) for _ in range(n)]


def run(size: str, n_sentences: int, batch_size: int, repeats: int, device: str = "cpu") -> dict:
    torch.manual_seed(0)
    bilm = BiLM(SIZES[size]).eval().to(device)
    sentences = make_sentences(n_sentences)
    n_words = sum(len(s) for s in sentences)
    embedder = Embedder(bilm, batch_size=batch_size, max_batch_tokens=1 << 30)

    def timed(fn):
        best, result = float("inf"), None
        for _ in range(repeats):
            start = time.perf_counter()
            result = fn()
            if device.startswith("cuda"):
                torch.cuda.synchronize()
            best = min(best, time.perf_counter() - start)
        return best, result

    fast_s, fast = timed(lambda: embedder.embed_sentences(sentences))
    base_s, base = timed(lambda: baseline_embed(bilm, sentences, batch_size))
    max_diff = max(float((torch.from_numpy(a) - b).abs().max()) for a, b in zip(fast, base) if b.numel())
    return {
        "size": size,
        "words": n_words,
        "baseline_wps": n_words / base_s,
        "ours_wps": n_words / fast_s,
        "speedup": base_s / fast_s,
        "max_abs_diff": max_diff,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", nargs="+", default=["original", "fixture"], choices=sorted(SIZES))
    parser.add_argument("--sentences", type=int, default=64, help="sentences per size (3-60 tokens each)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=2, help="best of N timings")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (both arms run there)")
    parser.add_argument("--tolerance", type=float, default=1e-5, help="largest allowed |ours - baseline|")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    where = torch.cuda.get_device_name(args.device) if args.device.startswith("cuda") else f"{torch.get_num_threads()} threads"
    print(f"torch {torch.__version__}, {where}, batch size {args.batch_size}")
    print(f"{'size':<10}{'words':>8}{'baseline w/s':>15}{'ours w/s':>12}{'speedup':>10}{'max |diff|':>13}")
    for size in args.sizes:
        r = run(size, args.sentences, args.batch_size, args.repeats, args.device)
        print(f"{r['size']:<10}{r['words']:>8}{r['baseline_wps']:>15.1f}{r['ours_wps']:>12.1f}"
              f"{r['speedup']:>9.2f}x{r['max_abs_diff']:>13.2e}")
        if r["max_abs_diff"] > args.tolerance:
            raise SystemExit(f"outputs differ by {r['max_abs_diff']:.2e} > {args.tolerance:g}")


if __name__ == "__main__":
    main()
