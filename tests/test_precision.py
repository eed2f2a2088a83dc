"""Inference precision: float32 exact, bfloat16 and int8 close to it and batch-invariant, clear
errors and fallbacks; the component's windowed nlp.pipe gives the same vectors as before."""

from __future__ import annotations

import itertools
from pathlib import Path
import warnings

import h5py
import numpy as np
import pytest
import spacy
import torch
from typer.testing import CliRunner

from spacy_elmo.bilm import WeightFileError, batch_to_ids, load_bilm, save_weights
from spacy_elmo.bilm import precision as precision_module
from spacy_elmo.bilm.embedder import Embedder
from spacy_elmo.bilm.precision import PrecisionFallbackWarning, native_bf16, precision_fallback, with_precision
from spacy_elmo.bilm.quantized import Int8Linear, quantize_bilm
from spacy_elmo.cli import app
from cli_output import printed

pytestmark = pytest.mark.usefixtures("single_thread")

SENTENCES = [
    ["The", "cat", "sat", "on", "the", "mat", "."],
    ["Hello", "world"],
    ["A"],
    ["Stocks", "fell", "sharply", "in", "Tokyo", "on", "Monday", "after", "the", "report", "."],
]
REDUCED = [
    pytest.param("bfloat16", marks=pytest.mark.skipif(not native_bf16("cpu"), reason="this CPU has no native bf16")),
    "int8",
]


def layers(bilm, sentences) -> list[torch.Tensor]:
    with torch.inference_mode():
        return [layer.float() for layer in bilm(batch_to_ids(sentences)).layers]


# ---- the biLM --------------------------------------------------------------------------------------


def test_float32_is_the_model_itself_and_exact(model_dir):
    bilm = load_bilm(model_dir)
    assert with_precision(bilm, "float32") is bilm and bilm.precision == "float32"
    again = load_bilm(model_dir, precision="float32")
    for a, b in zip(layers(bilm, SENTENCES), layers(again, SENTENCES)):
        assert torch.equal(a, b)


@pytest.mark.parametrize("precision", REDUCED)
def test_reduced_precision_is_close_to_float32(tiny_bilm, precision):
    reduced = with_precision(tiny_bilm, precision)
    assert reduced is not tiny_bilm and reduced.precision == precision
    assert tiny_bilm.precision == "float32" and tiny_bilm.lstm.layers[0].W_input.dtype == torch.float32  # untouched
    mask = batch_to_ids(SENTENCES).gt(0).any(-1)
    for exact, approx in zip(layers(tiny_bilm, SENTENCES), layers(reduced, SENTENCES)):
        assert float((exact - approx).abs().max()) < 0.03 * float(exact.abs().max())
        cosine = torch.nn.functional.cosine_similarity(exact[mask], approx[mask], dim=-1)
        assert float(cosine.mean()) > 0.999
        assert not torch.equal(exact, approx)  # it did run in reduced precision
        assert (approx[~mask] == 0).all()  # padding stays zero


@pytest.mark.parametrize("precision", REDUCED)
def test_reduced_precision_is_batch_invariant(tiny_bilm, precision):
    reduced = with_precision(tiny_bilm, precision)
    batched = layers(reduced, SENTENCES)
    for k, sentence in enumerate(SENTENCES):
        for alone, together in zip(layers(reduced, [sentence]), batched):
            assert torch.equal(alone[0, : len(sentence)], together[k, : len(sentence)])


def test_int8_products_use_one_scale_per_output_column_and_per_input_row():
    generator = torch.Generator().manual_seed(0)
    weight = torch.randn(32, 6, generator=generator)
    big = weight.clone()
    big[:, 0] *= 1000.0  # one loud column must not coarsen the others (per-channel scales)
    x = torch.randn(5, 32, generator=generator)
    for w in (weight, big):
        y = Int8Linear(w)(x)
        assert y.dtype == torch.float32 and y.shape == (5, 6)
        relative = ((y - x @ w).abs() / (x @ w).abs().amax(0)).max()
        assert float(relative) < 0.02
    assert torch.equal(Int8Linear(big)(x)[:, 1:], Int8Linear(weight)(x)[:, 1:])
    # A loud row in the same batch changes nothing for the others (per-row activation scales).
    loud = torch.cat([x, 1000.0 * torch.randn(1, 32, generator=generator)])
    assert torch.equal(Int8Linear(weight)(loud)[:5], Int8Linear(weight)(x))
    assert Int8Linear(weight).weight.dtype == torch.int8


def test_int8_products_agree_with_and_without_onednn_prepacking(tiny_bilm, monkeypatch):
    """oneDNN's prepacked int8 linear and torch._int_mm give the same exact integer sums; with
    fixed input scales oneDNN also scales and adds in its output pass (one rounding less), so the
    model's vectors agree to float rounding whichever kernel path torch has."""
    from spacy_elmo.bilm import quantized

    if not quantized.torch_has_onednn_int8():
        pytest.skip("this torch has no oneDNN int8 linear: only the torch._int_mm path exists")
    # The oneDNN path is taken only on CPUs with AMX; force it here (tiny products: fast anywhere).
    monkeypatch.setattr(quantized, "use_onednn_int8", lambda: True)
    weight = torch.randn(16, 8, generator=torch.Generator().manual_seed(1))
    x = torch.randn(5, 16, generator=torch.Generator().manual_seed(3))
    packed_layers, packed_product = layers(with_precision(tiny_bilm, "int8"), SENTENCES), Int8Linear(weight)(x)
    assert Int8Linear(weight).packed() is not None
    monkeypatch.setattr(quantized, "use_onednn_int8", lambda: False)
    plain_layers, plain_product = layers(with_precision(tiny_bilm, "int8"), SENTENCES), Int8Linear(weight)(x)
    assert torch.equal(packed_product, plain_product)  # per-row scales: exact sums, same epilogue
    for a, b in zip(packed_layers, plain_layers):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
    # Bounded inputs use a fixed scale: no per-row reduction, the bound folded into the column scales.
    weight = torch.randn(16, 8, generator=torch.Generator().manual_seed(1))
    bounded, free = Int8Linear(weight, input_bound=3.0), Int8Linear(weight)
    x = torch.rand(4, 16, generator=torch.Generator().manual_seed(2)) * 6 - 3
    assert torch.allclose(bounded(x), x @ weight, atol=0.15) and torch.allclose(free(x), x @ weight, atol=0.15)
    with pytest.raises(ValueError, match="input_bound must be a positive number"):
        Int8Linear(weight, input_bound=0.0)


def test_onednn_int8_path_on_cpus_with_amx_or_vnni_signed_only_with_amx(monkeypatch):
    """oneDNN's int8 linear with signed activations fell to a path ~3,000x slower than torch._int_mm
    on an AVX-512 VNNI CPU without AMX; with unsigned ones (+128, zero point 128) it is fast there.
    Without VNNI the plain path runs. Every way gives the same exact sums."""
    from spacy_elmo.bilm import quantized

    weight = torch.randn(16, 8, generator=torch.Generator().manual_seed(1))
    x = torch.randn(5, 16, generator=torch.Generator().manual_seed(3))
    products = []
    for has_amx, has_vnni in itertools.product((False, True), repeat=2):
        monkeypatch.setattr(quantized, "_cpu_has_amx", lambda: has_amx)
        monkeypatch.setattr(quantized, "_cpu_has_vnni", lambda: has_vnni)
        quantized.use_onednn_int8.cache_clear()
        try:
            expected = (has_amx or has_vnni) and quantized.torch_has_onednn_int8()
            assert quantized.use_onednn_int8() == expected
            layer = Int8Linear(weight)
            assert (layer.packed() is not None) == expected
            if expected:
                assert layer.packed().input_zero_point == (0 if has_amx else 128)
            products.append(layer(x))
        finally:
            quantized.use_onednn_int8.cache_clear()
    assert all(torch.equal(p, products[0]) for p in products)


def test_int8_accumulate_adds_in_place_with_the_numbers_of_forward(tiny_bilm, monkeypatch):
    """The LSTM's per-step hidden product adds into the step's input gates in place (oneDNN's "sum"
    post-op): bit for bit what forward(x, add=target) gives, on either zero point and on the
    fallbacks, and the int8 model's layers do not change with it."""
    from spacy_elmo.bilm import quantized

    generator = torch.Generator().manual_seed(4)
    weight, x = torch.randn(16, 24, generator=generator), torch.rand(5, 16, generator=generator) * 6 - 3
    target = torch.randn(5, 24, generator=generator)
    cases = [(True, True), (True, False), (False, True)] if quantized.torch_has_onednn_int8() else [(False, True)]
    for onednn, has_amx in cases:
        monkeypatch.setattr(quantized, "use_onednn_int8", lambda onednn=onednn: onednn)
        monkeypatch.setattr(quantized, "_cpu_has_amx", lambda has_amx=has_amx: has_amx)
        for linear in (Int8Linear(weight, input_bound=3.0), Int8Linear(weight), Int8Linear(weight, torch.ones(24), 3.0)):
            expected = linear(x, add=target.clone())
            into = target.clone()
            result = linear.accumulate(x, into)
            assert result.data_ptr() == into.data_ptr() and torch.equal(into, expected), (onednn, has_amx)
        strided = target.clone().t().contiguous().t()  # not contiguous: through forward
        assert torch.equal(Int8Linear(weight, input_bound=3.0).accumulate(x, strided), Int8Linear(weight, input_bound=3.0)(x, add=target))
    monkeypatch.undo()
    in_place = layers(with_precision(tiny_bilm, "int8"), SENTENCES)
    monkeypatch.setattr(Int8Linear, "accumulate", lambda self, x, target: target.copy_(self(x, add=target)))
    through_forward = layers(with_precision(tiny_bilm, "int8"), SENTENCES)
    assert all(torch.equal(a, b) for a, b in zip(in_place, through_forward))


def test_int8_copy_holds_int8_weights_and_refuses_stateful(make_bilm):
    quantized = quantize_bilm(make_bilm())
    kinds = {name.rsplit(".", 1)[-1]: t.dtype for name, t in quantized.state_dict().items()}
    assert kinds["weight"] in (torch.int8, torch.float32)  # int8 products; float embedding and CNN
    int8 = [n for n, t in quantized.state_dict().items() if t.dtype == torch.int8]
    assert len(int8) == 2 * 3 * 2 + 2 * 1 + 1  # LSTM 2 layers x 3 products x 2 directions, highway, projection
    with pytest.raises(ValueError, match="stateless"):
        quantize_bilm(make_bilm(stateful=True))


def test_bf16_where_unsupported_falls_back_to_float32_with_one_warning(tiny_bilm, monkeypatch):
    monkeypatch.setattr(precision_module, "native_bf16", lambda device: False)
    with pytest.warns(PrecisionFallbackWarning, match="no AVX-512 BF16"):
        assert with_precision(tiny_bilm, "bfloat16") is tiny_bilm
    assert "CPU only" in precision_fallback("int8", "cuda")
    assert precision_fallback("float32", "cuda") is None


def test_unknown_precision_and_saving_a_reduced_copy_are_clear_errors(model_dir, tiny_bilm, tmp_path):
    with pytest.raises(ValueError, match="precision must be one of float32, bfloat16, int8"):
        load_bilm(model_dir, precision="fp8")
    with pytest.raises(WeightFileError, match="int8 inference copy; save the float32 model"):
        save_weights(with_precision(tiny_bilm, "int8"), tmp_path / "w.hdf5")
    assert not (tmp_path / "w.hdf5").exists()


# ---- embed --precision ------------------------------------------------------------------------------


def test_embed_precision_int8(model_dir, tmp_path):
    source = tmp_path / "in.txt"
    source.write_text("\n".join(" ".join(s) for s in SENTENCES) + "\n", encoding="utf-8")
    outputs = {}
    for precision in ("float32", "int8"):
        outputs[precision] = tmp_path / f"{precision}.hdf5"
        args = ["embed", str(source), str(outputs[precision]), "--model", model_dir, "--precision", precision, "--no-progress"]
        result = CliRunner().invoke(app, args)
        assert result.exit_code == 0, result.output
    with h5py.File(outputs["float32"], "r") as exact, h5py.File(outputs["int8"], "r") as approx:
        for k in range(len(SENTENCES)):
            a, b = exact[str(k)][...], approx[str(k)][...]
            assert a.shape == b.shape and b.dtype == np.float32 and not np.array_equal(a, b)
            np.testing.assert_allclose(a, b, atol=0.03 * np.abs(a).max())
    result = CliRunner().invoke(app, ["embed", str(source), str(tmp_path / "x.hdf5"), "--model", model_dir, "--precision", "fp16"])
    assert result.exit_code == 1 and "--precision fp16: use one of float32, bfloat16, int8" in printed(result)


# ---- the component ---------------------------------------------------------------------------------


def make_nlp(model_dir: str, **config) -> spacy.Language:
    nlp = spacy.blank("en")
    nlp.add_pipe("elmo", config={"model": model_dir, "output": "top", "all_layers": True, **config})
    nlp.initialize()
    return nlp


TEXTS = [" ".join(["word"] * n + ["."]) if n % 3 else f"Sentence {n} is here . And another one ." for n in range(1, 30)]


def test_component_vectors_do_not_depend_on_the_pipe_batch_size(model_dir):
    """float32 through the windowed nlp.pipe: the same vectors for every caller batch size (before,
    each batch size packed the biLM's batches differently, which moved the last bits), and today's
    values: a doc alone through the component is bit-identical to the biLM run on its sentence."""
    nlp = make_nlp(model_dir, words_per_batch=40, context="doc")
    embedder = Embedder(nlp.get_pipe("elmo").get_bilm(), batch_size=1)
    alone = [embedder.embed_sentences([[t.text for t in nlp.make_doc(text)]])[0] for text in TEXTS]
    for text, expected in zip(TEXTS[:3], alone):
        np.testing.assert_array_equal(nlp(text)._.elmo_layers, expected)
    first = None
    for batch_size in (1, 7, 1000):
        docs = list(nlp.pipe(TEXTS, batch_size=batch_size))
        assert [d.text for d in docs] == TEXTS
        first = first or [d._.elmo_layers for d in docs]
        for doc, same, expected in zip(docs, first, alone):
            np.testing.assert_array_equal(doc._.elmo_layers, same)
            np.testing.assert_allclose(doc._.elmo_layers, expected, atol=1e-6)  # other batches, same values


def test_component_runs_full_batches_across_small_pipe_batches(model_dir):
    nlp = make_nlp(model_dir, words_per_batch=50)
    calls = []
    nlp.get_pipe("elmo").get_bilm().register_forward_hook(lambda *args: calls.append(args[1][0].shape))
    texts = [f"Short text number {i} ." for i in range(40)]  # 5 words each: 200 words
    list(nlp.pipe(texts, batch_size=2))
    # One window of 400 words holds them all: 200 words in batches of 50 (padded) tokens, not 20
    # half-empty batches of 2 docs.
    assert len(calls) == 4 and all(shape[0] == 10 for shape in calls)


@pytest.mark.parametrize("precision", REDUCED)
def test_component_precision_is_close_and_saves_the_float32_weights(model_dir, precision, tmp_path):
    exact = make_nlp(model_dir)
    approx = make_nlp(model_dir, precision=precision)
    for a, b in zip(exact.pipe(TEXTS[:6]), approx.pipe(TEXTS[:6])):
        assert not np.array_equal(a._.elmo_layers, b._.elmo_layers)
        np.testing.assert_allclose(a._.elmo_layers, b._.elmo_layers, atol=0.03 * np.abs(a._.elmo_layers).max())
        assert b._.elmo_layers.dtype == np.float32
    approx.to_disk(tmp_path / "pipeline")
    saved = load_bilm(tmp_path / "pipeline" / "elmo" / "model").state_dict()
    for name, tensor in load_bilm(model_dir).state_dict().items():
        assert torch.equal(saved[name], tensor), name
    restored = spacy.load(tmp_path / "pipeline")
    assert restored.get_pipe("elmo").precision == precision
    doc = restored(TEXTS[0])
    np.testing.assert_array_equal(doc._.elmo_layers, approx(TEXTS[0])._.elmo_layers)


def test_component_bad_precision_is_a_clear_error(model_dir):
    with pytest.raises(ValueError, match="precision must be one of float32, bfloat16, int8, got 'fp16'"):
        make_nlp(model_dir, precision="fp16")


def test_component_reduced_precision_refuses_to_fine_tune(model_dir):
    from spacy.training import Example

    from elmo_pipelines import listener, ner_model

    nlp = spacy.blank("en")
    nlp.add_pipe("elmo", config={"model": model_dir, "precision": "int8", "similarity_hooks": False})
    nlp.add_pipe("ner", config={"model": ner_model(listener(grad_factor=1.0))})
    doc = nlp.make_doc("Alice met Bob .")
    examples = [Example.from_dict(doc, {"entities": [(0, 5, "PER")]})]
    nlp.initialize(lambda: examples)
    with warnings.catch_warnings(), pytest.raises(ValueError, match="fine-tuning it .* needs precision='float32'"):
        warnings.simplefilter("ignore")
        nlp.update(examples)


def test_pipe_still_streams_an_endless_input(model_dir):
    nlp = make_nlp(model_dir, words_per_batch=10)
    endless = (f"Text number {i} ." for i in itertools.count())
    assert [d.text for d in itertools.islice(nlp.pipe(endless), 2)] == ["Text number 0 .", "Text number 1 ."]


def test_ner_precision_script_evaluates_one_pipeline_in_every_precision(model_dir, tmp_path):
    import importlib.util

    from spacy.tokens import DocBin
    from spacy.training import Example

    from elmo_pipelines import listener, ner_model

    nlp = spacy.blank("en")
    nlp.add_pipe("elmo", config={"model": model_dir, "similarity_hooks": False})
    nlp.add_pipe("ner", config={"model": ner_model(listener())})
    docs = [nlp.make_doc(t) for t in ("Alice met Bob in Paris .", "Carol flew to Rome .")]
    spans = [[(0, 5, "PER"), (10, 13, "PER"), (17, 22, "LOC")], [(0, 5, "PER"), (14, 18, "LOC")]]
    examples = [Example.from_dict(d, {"entities": s}) for d, s in zip(docs, spans)]
    nlp.initialize(lambda: examples)
    nlp.to_disk(tmp_path / "pipeline")
    gold = DocBin(docs=[eg.reference for eg in examples])
    gold.to_disk(tmp_path / "gold.spacy")
    script = Path(__file__).resolve().parents[1] / "scripts" / "ner_precision.py"
    spec = importlib.util.spec_from_file_location("ner_precision", script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    f1 = {p: module.evaluate(tmp_path / "pipeline", tmp_path / "gold.spacy", p) for p in ("float32", "int8")}
    expected = 100 * nlp.evaluate(examples)["ents_f"]
    assert f1["float32"] == pytest.approx(expected) and 0 <= f1["int8"] <= 100
    # what the report compares with its settings (an older run's rows read n/a)
    assert module.training_settings(tmp_path / "pipeline") == {
        "max_steps": nlp.config["training"]["max_steps"], "seed": nlp.config["system"]["seed"]}
