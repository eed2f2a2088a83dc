"""Words/second and latency of the biLM at inference: every precision, `embed`'s path and the
`elmo` component, against a straightforward per-time-step baseline, with the machine's matrix-
multiply ceiling measured in the same run.

    python benchmarks/bench_inference.py                                  # original + fixture sizes
    python benchmarks/bench_inference.py --sizes original --sentences 256 --repeats 5 --threads 2
    python benchmarks/bench_inference.py --device cuda --sentences 2048 --batch-size 256

Arms run interleaved: every round runs each arm once, in alternating order (forward, then
backward), so slow drifts of the machine (heat, other load) hit all arms alike. Each ratio is the
median over rounds of that round's ratio. Arms:
    baseline              how AllenNLP runs ELMo: one direction and one time step at a time, the
                          input-to-hidden product inside the loop, batches in input order, every
                          token through the char CNN (kept here on purpose; same random weights)
    embed/<precision>     `spacy-elmo embed`'s path (Embedder): length-sorted batches
    component/<precision> nlp.pipe over one-sentence Docs with --pipe-batch-size docs per call
The ceiling is the best of several square torch.mm (float32, bfloat16) and torch._int_mm (int8)
products, and for float32 and bfloat16 also of the oneDNN product with a blocked weight that the
biLM itself uses on the CPU (bilm/blocked.py); "% peak" is the model's own FLOPs per second (the
char CNN counted for every token, as if nothing were de-duplicated) over the ceiling of that arm's
number format. Latency: median time
of one 13-word sentence alone, per precision. Outputs of embed/float32 and the baseline must agree
within --tolerance; the reduced precisions' largest difference is printed, not checked.
The embed and component arms use the token cache (--token-cache; 0 = off), emptied before every
timed call and every latency sentence: a call reuses the layer-0 vectors of words it read itself
in earlier batches, as a first pass over that much text would, never those of earlier rounds.
Timings mean something only on a quiet machine.
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
import warnings
from typing import Callable

import torch

from spacy_elmo.bilm import BiLM, ElmoOptions, batch_to_ids
from spacy_elmo.bilm.blocked import BlockedWeights
from spacy_elmo.bilm.embedder import Embedder
from spacy_elmo.bilm.model import add_sentence_boundaries
from spacy_elmo.bilm.precision import PRECISIONS, precision_fallback, with_precision
from spacy_elmo.bilm.token_cache import DEFAULT_TOKEN_CACHE

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
LATENCY_SENTENCE = "The company said on Tuesday that its profits rose in the quarter .".split()
assert len(LATENCY_SENTENCE) == 13


# ---- the baseline: per-time-step, per-direction, as AllenNLP's LstmCellWithProjection -------------


def baseline_char_encoder(enc, char_ids: torch.Tensor) -> torch.Tensor:
    """The character encoder as AllenNLP runs it: torch's conv1d and plain products, every token
    (not the biLM's blocked products). (n, chars) -> (n, output_dim)."""
    x = enc.char_embed(char_ids).transpose(1, 2)  # (n, char_dim, chars)
    h = enc.activation(torch.cat([conv(x).max(dim=-1).values for conv in enc.convolutions], dim=-1))
    for highway in enc.highways:
        gate = torch.sigmoid(torch.addmm(highway.b_carry, h, highway.W_carry))
        h = gate * torch.relu(torch.addmm(highway.b_transform, h, highway.W_transform)) + (1.0 - gate) * h
    return torch.addmm(enc.b_proj, h, enc.W_proj)


@torch.inference_mode()
def baseline_forward(bilm: BiLM, char_ids: torch.Tensor) -> list[torch.Tensor]:
    """Same maths as BiLM.forward, written the straightforward way. Returns n_layers + 1 layers."""
    framed, lengths = add_sentence_boundaries(char_ids)
    batch, time_steps, n_chars = framed.shape
    tokens = baseline_char_encoder(bilm.char_encoder, framed.reshape(-1, n_chars)).reshape(batch, time_steps, -1)
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


# ---- data, FLOPs, the machine's ceiling ----------------------------------------------------------


def make_sentences(n: int, seed: int = 0) -> list[list[str]]:
    """Sentences of 3-60 tokens over a Zipf-like vocabulary of made-up words."""
    rng = random.Random(seed)
    vocab = ["".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(1, 12))) for _ in range(5000)]
    weights = [1.0 / (rank + 1) for rank in range(len(vocab))]
    return [rng.choices(vocab, weights, k=rng.randint(3, 60)) for _ in range(n)]


def flops_per_position(options: ElmoOptions) -> int:
    """Multiply-adds x 2 of one token position (<S> and </S> are positions too)."""
    c, l = options.char_cnn, options.lstm
    chars = c.max_characters_per_token
    cnn = sum(2 * (chars - width + 1) * width * c.embedding_dim * n for width, n in c.filters)
    cnn += c.n_highway * 2 * 2 * c.n_filters**2 + 2 * c.n_filters * l.projection_dim
    lstm = 0
    for layer in range(l.n_layers):
        inputs = l.projection_dim  # layer 0 reads the char encoder's projection, same width
        lstm += 2 * 2 * (inputs * 4 * l.dim + l.projection_dim * 4 * l.dim + l.dim * l.projection_dim)
    return cnn + lstm


@torch.no_grad()
def matmul_ceiling(precision: str, size: int, device: str, repeats: int = 5) -> float:
    """Best FLOP/s of a (size x size) @ (size x size) product in this number format, over the
    ways torch runs it: torch.mm (MKL for float32 on the CPU) and, where the biLM uses it, oneDNN's
    product with a blocked weight (bilm/blocked.py), which runs float32 at twice MKL's speed on
    some CPUs: a ceiling from torch.mm alone would then be below what the model itself reaches."""
    if precision == "int8":
        a = torch.randint(-127, 127, (size, size), dtype=torch.int8, device=device)
        products: list[Callable[[], torch.Tensor]] = [lambda: torch._int_mm(a, a)]
    else:
        dtype = torch.float32 if precision == "float32" else torch.bfloat16
        a = torch.randn(size, size, device=device).to(dtype)
        products = [lambda: torch.mm(a, a)]
        blocked = BlockedWeights()
        if blocked.product("square", a, a) is not None:  # the model's own path runs here
            products.append(lambda: blocked.product("square", a, a))
    best = float("inf")
    for product in products:
        product()  # warm-up
        for _ in range(repeats):
            start = time.perf_counter()
            product()
            sync(device)
            best = min(best, time.perf_counter() - start)
    return 2 * size**3 / best


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


# ---- the arms -------------------------------------------------------------------------------------


def make_component(bilm: BiLM, precision: str, device: str, token_cache: int):
    """A blank English pipeline whose `elmo` component runs `bilm` in `precision`."""
    import spacy

    nlp = spacy.blank("en")
    elmo = nlp.add_pipe("elmo", config={"precision": precision, "similarity_hooks": False, "token_cache": token_cache,
                                         "device": "cpu" if device == "cpu" else device})
    elmo._set_bilm(bilm, {})  # the benchmark's random weights instead of the shipped model
    return nlp


def run(size: str, args) -> dict:
    torch.manual_seed(0)
    bilm = BiLM(SIZES[size]).eval().to(args.device)
    sentences = make_sentences(args.sentences)
    n_words = sum(len(s) for s in sentences)
    model_flops = flops_per_position(SIZES[size]) * sum(len(s) + 2 for s in sentences)
    precisions = [p for p in args.precisions if precision_fallback(p, args.device) is None]
    skipped = sorted(set(args.precisions) - set(precisions))
    models = {p: with_precision(bilm, p, args.device) for p in precisions}
    outputs: dict[str, list] = {}

    arms: dict[str, Callable[[], object]] = {}
    if not args.no_baseline:
        arms["baseline"] = lambda: outputs.__setitem__("baseline", baseline_embed(bilm, sentences, args.batch_size))
    for p in precisions:
        embedder = Embedder(models[p], batch_size=args.batch_size, max_batch_tokens=1 << 30, token_cache=args.token_cache)
        arms[f"embed/{p}"] = lambda e=embedder, p=p: outputs.__setitem__(p, e.embed_sentences(sentences))
    component_models: list[BiLM] = []

    def empty_token_caches() -> None:
        for model in [bilm, *models.values(), *component_models]:
            if model.char_encoder.token_cache is not None:
                model.char_encoder.token_cache.clear()

    if not args.no_component:
        from spacy.tokens import Doc

        for p in precisions:
            nlp = make_component(bilm, p, args.device, args.token_cache)
            component_models.append(nlp.get_pipe("elmo").model.shims[-1]._model)
            arms[f"component/{p}"] = lambda nlp=nlp: list(
                nlp.pipe((Doc(nlp.vocab, words=s) for s in sentences), batch_size=args.pipe_batch_size)
            )

    for arm in arms.values():  # warm-up: first calls allocate and pick kernels
        arm()
    ceilings: dict[str, list[float]] = {p: [] for p in precisions}
    seconds: dict[str, list[float]] = {name: [] for name in arms}
    latency: dict[str, list[float]] = {p: [] for p in precisions}
    latency_ids = batch_to_ids([LATENCY_SENTENCE]).to(args.device)
    for round_ in range(args.repeats):
        order = list(arms) if round_ % 2 == 0 else list(reversed(arms))
        for name in order:
            empty_token_caches()
            start = time.perf_counter()
            arms[name]()
            sync(args.device)
            seconds[name].append(time.perf_counter() - start)
        for p in precisions if round_ % 2 == 0 else reversed(precisions):
            ceilings[p].append(matmul_ceiling(p, args.peak_size, args.device))
            with torch.inference_mode():
                for _ in range(args.latency_repeats):
                    empty_token_caches()
                    start = time.perf_counter()
                    models[p](latency_ids)
                    sync(args.device)
                    latency[p].append(time.perf_counter() - start)

    def median_ratio(reference: str, name: str) -> float | None:
        if reference not in seconds:
            return None
        return statistics.median(r / s for r, s in zip(seconds[reference], seconds[name]))

    rows = []
    for name in arms:
        precision = "float32" if name == "baseline" else name.split("/")[1]
        median_s = statistics.median(seconds[name])
        peak = max(ceilings[precision]) if ceilings.get(precision) else None
        rows.append({
            "arm": name,
            "words_per_s": n_words / median_s,
            "vs_embed_float32": median_ratio("embed/float32", name),
            "vs_baseline": median_ratio("baseline", name),
            "gflops": model_flops / median_s / 1e9,
            "fraction_of_peak": None if peak is None else model_flops / median_s / peak,
        })
    exact = outputs.get("float32")
    differences = {}
    for name, result in outputs.items():
        reference = outputs.get("baseline") if name == "float32" else exact
        if reference is None or name == "baseline":
            continue
        differences[name] = max(
            float((torch.as_tensor(a) - torch.as_tensor(b)).abs().max()) for a, b in zip(result, reference) if len(b)
        )
    return {
        "size": size,
        "words": n_words,
        "mflop_per_word": model_flops / n_words / 1e6,
        "rows": rows,
        "ceiling_gflops": {p: max(v) / 1e9 for p, v in ceilings.items()},
        "latency_ms": {p: 1e3 * statistics.median(v) for p, v in latency.items()},
        "max_abs_diff": differences,
        "skipped": skipped,
    }


def fmt(value: float | None, spec: str) -> str:
    return "n/a" if value is None else format(value, spec)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", nargs="+", default=["original", "fixture"], choices=sorted(SIZES))
    parser.add_argument("--sentences", type=int, default=256, help="sentences per size (3-60 tokens each)")
    parser.add_argument("--batch-size", type=int, default=32, help="sentences per batch (baseline and embed)")
    parser.add_argument("--pipe-batch-size", type=int, default=32, help="docs per nlp.pipe call (component)")
    parser.add_argument("--precisions", nargs="+", default=list(PRECISIONS), choices=PRECISIONS)
    parser.add_argument("--repeats", type=int, default=5, help="rounds; ratios are medians over rounds")
    parser.add_argument("--latency-repeats", type=int, default=5, help="13-word sentences timed per round")
    parser.add_argument("--peak-size", type=int, default=2048, help="side of the square products of the ceiling")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (every arm runs there)")
    parser.add_argument("--tolerance", type=float, default=1e-5, help="largest allowed |embed float32 - baseline|")
    parser.add_argument("--no-baseline", action="store_true", help="skip the (slow) per-time-step baseline")
    parser.add_argument("--no-component", action="store_true", help="skip the spaCy component arms")
    parser.add_argument("--token-cache", type=int, default=DEFAULT_TOKEN_CACHE,
                        help="token cache size of the embed and component arms (emptied before each timed call); 0 = off")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    warnings.simplefilter("ignore", UserWarning)  # e.g. spaCy's notes on blank pipelines
    where = torch.cuda.get_device_name(args.device) if args.device.startswith("cuda") else f"{torch.get_num_threads()} threads"
    print(f"torch {torch.__version__}, {where}, batch size {args.batch_size}, nlp.pipe batch size "
          f"{args.pipe_batch_size}, {args.repeats} interleaved rounds")
    for size in args.sizes:
        r = run(size, args)
        ceilings = ", ".join(f"{p} {v:.0f}" for p, v in r["ceiling_gflops"].items())
        print(f"\n{size}: {r['words']} words, {r['mflop_per_word']:.1f} MFLOP/word; matmul ceiling GFLOP/s: {ceilings}")
        if r["skipped"]:
            print(f"  skipped (not native here): {', '.join(r['skipped'])}")
        print(f"{'arm':<22}{'words/s':>10}{'x embed f32':>13}{'x baseline':>12}{'GFLOP/s':>10}{'% peak':>8}")
        for row in r["rows"]:
            peak = None if row["fraction_of_peak"] is None else 100 * row["fraction_of_peak"]
            print(f"{row['arm']:<22}{row['words_per_s']:>10.1f}{fmt(row['vs_embed_float32'], '.2f'):>13}"
                  f"{fmt(row['vs_baseline'], '.2f'):>12}{row['gflops']:>10.1f}{fmt(peak, '.0f'):>8}")
        latency = ", ".join(f"{p} {v:.1f} ms" for p, v in r["latency_ms"].items())
        print(f"latency, one {len(LATENCY_SENTENCE)}-word sentence (median): {latency}")
        print("max |diff| (float32 vs baseline; reduced vs float32): "
              + ", ".join(f"{p} {v:.2e}" for p, v in r["max_abs_diff"].items()))
        if r["max_abs_diff"].get("float32", 0.0) > args.tolerance:
            raise SystemExit(f"float32 outputs differ from the baseline by {r['max_abs_diff']['float32']:.2e} > {args.tolerance:g}")


if __name__ == "__main__":
    main()
