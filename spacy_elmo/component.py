"""The `elmo` pipeline component: runs the biLM over Docs and writes `._.elmo`.

    nlp.add_pipe("elmo")                                        # the packaged default model
    nlp.add_pipe("elmo", config={"model": "path/to/model_dir"})  # options.json + weights.hdf5
    nlp.add_pipe("elmo", config={"model": "allennlp:original"})  # a published model (spacy-elmo download)
    nlp.add_pipe("elmo", config={"options_file": "options.json", "weight_file": "weights.hdf5"})

Registered through the `spacy_factories` entry point, so spaCy finds it without an import.
Downstream components use it through `spacy-elmo.ElmoListener.v1` (see layers/listener.py).
"""

from __future__ import annotations

import tempfile
import weakref
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import srsly
import torch
from spacy.attrs import ORTH
from spacy.language import Language
from spacy.pipeline import TrainablePipe
from spacy.tokens import Doc
from spacy.training import Example, validate_examples
from spacy.vocab import Vocab
from thinc.api import Model, Optimizer
from thinc.types import Floats3d

# architectures: imported for its side effect, registering spacy-elmo.* whenever spaCy loads the factory
from . import architectures, default_model  # noqa: F401
from .bilm import (
    BiLM,
    ElmoOptions,
    ModelFiles,
    load_bilm,
    resolve_model_files,
    save_model_dir,
)
from .bilm.device import DeviceError, parse_device
from .bilm.precision import PRECISIONS
from .bilm.token_cache import DEFAULT_TOKEN_CACHE
from .bilm.weights import META_NAME, OPTIONS_NAME, WEIGHTS_NAME
from .cache import LayerCache
from .hub import resolve_model_name
from .data import EXTENSION, LAYERS_EXTENSION, install_extensions, set_similarity_hooks
from .layers import ElmoBiLM, ElmoLayers, ElmoListener, clear_token_cache, get_bilm, mix_layers, set_bilm

MODEL_DIR = "model"  # the model directory inside the component's folder
OUTPUTS = ("top", "average", "mix")
# nlp.pipe reads this many biLM batches' worth of words before running them, whatever its
# batch_size: the rows are then length-sorted into full batches, as `spacy-elmo embed` does.
PIPE_WINDOW_BATCHES = 8
HOW_TO_CHOOSE = (
    "Tell the component where the weights are: nlp.add_pipe('elmo', config={'model': 'path/to/dir'}) "
    f"for a model directory ({OPTIONS_NAME} + {WEIGHTS_NAME}) or a published model's name such as "
    "'allennlp:original' (spacy-elmo models lists them), or config={'options_file': "
    "'options.json', 'weight_file': 'weights.hdf5'} for a bilm-tf / AllenNLP pair."
)

install_extensions()


def find_model_files(
    model: str | None = None,
    options_file: str | None = None,
    weight_file: str | None = None,
    allow_download: bool = False,
) -> tuple[ModelFiles, ElmoOptions]:
    """Check that the weights exist and read their options (cheap: the weights are read later).

    A published model's name resolves to its cached directory; with allow_download, a model that
    is not cached yet is downloaded first.
    """
    if model is None and options_file is None and weight_file is None:
        default = default_model.default_model_dir()
        if default is None:
            raise ValueError(
                f"spacy-elmo's default model is not installed (expected in {default_model.DEFAULT_MODEL_DIR}). "
                f"{HOW_TO_CHOOSE}"
            )
        model = str(default)
    try:
        if model is not None:  # a name: its cached directory (this setting alone decides on downloading)
            model = str(resolve_model_name(model, allow_download=allow_download) or model)
        files = resolve_model_files(model, options_file, weight_file)
        if not files.weight_file.is_file():
            raise ValueError(f"{files.weight_file}: weight file not found")
        options = ElmoOptions.from_file(files.options_file)
    except ValueError as err:  # WeightFileError and OptionsError are ValueErrors
        raise ValueError(f"elmo component: {err}. {HOW_TO_CHOOSE}") from None
    return files, options


def _restoring(nlp: Language, name: str) -> bool:
    """True while spacy.load rebuilds a saved pipeline that has this component.

    Its weights then come from the pipeline's own folder (from_disk), so the paths in its config
    (where the weights were when it was built) need not exist any more. spacy.load passes the
    saved meta.json to the new Language, whose "components" lists what is being restored.
    """
    return name in (getattr(nlp, "_meta", None) or {}).get("components", ())


@Language.factory(
    "elmo",
    default_config={
        "model": None,
        "options_file": None,
        "weight_file": None,
        "output": "top",
        "mix_weights": None,
        "gamma": 1.0,
        "all_layers": False,
        "set_doc_tensor": False,
        "similarity_hooks": True,
        "words_per_batch": 2000,
        "window_size": 256,
        "context": "auto",
        "device": "auto",
        "cache_mb": 0,
        "allow_download": False,
        "threads": 0,
        "precision": "float32",
        "token_cache": DEFAULT_TOKEN_CACHE,
    },
    assigns=["doc._.elmo", "token._.elmo", "span._.elmo"],
    default_score_weights={},
)
def make_elmo(
    nlp: Language,
    name: str,
    model: str | None,
    options_file: str | None,
    weight_file: str | None,
    output: str | int,
    mix_weights: list[float] | None,
    gamma: float,
    all_layers: bool,
    set_doc_tensor: bool,
    similarity_hooks: bool,
    words_per_batch: int,
    window_size: int,
    context: str,
    device: str,
    cache_mb: float,
    allow_download: bool,
    threads: int,
    precision: str,
    token_cache: int,
) -> Elmo:
    """Create the `elmo` component.

    model (str | None): a model directory (options.json + weights.hdf5 [+ meta.json]), or a
        published model's name such as "allennlp:original" (`spacy-elmo models` lists them; used
        from the cache, see allow_download). With model, options_file and weight_file all null:
        the default model that ships in spacy_elmo/default_model/.
    options_file (str | None): a bilm-tf / AllenNLP options.json (with weight_file, instead of model).
    weight_file (str | None): the matching HDF5 weight file.
    output (str | int): what `doc._.elmo` holds: the "top" layer (the default: chosen on WiC dev,
        docs/component.md), "average" of all layers,
        "mix" (fixed weights mix_weights and scale gamma), or a layer index (0 = the context-free
        character encoding; -1 = top).
    mix_weights (list[float] | None): with output="mix": one un-normalised weight per layer
        (softmax-normalised, as AllenNLP's scalar_mix_parameters); null = equal weights.
    gamma (float): with output="mix": the scale applied to the mix.
    all_layers (bool): also keep every layer in `doc._.elmo_layers` (n_layers + 1 times the memory).
    set_doc_tensor (bool): also set `doc.tensor` to `doc._.elmo` (the same array, no extra memory).
    similarity_hooks (bool): make doc/span/token `.vector`, `.similarity()` and `.has_vector` use ELMo.
    words_per_batch (int): largest padded batch of tokens the biLM runs at once (memory vs speed).
    window_size (int): most tokens the biLM reads at once; longer sentences and docs are split
        into windows (of whole sentences where possible). Nothing is ever truncated.
    context (str): what the biLM reads at once. "sentence": each sentence alone. "doc": the whole
        doc, or windows of whole consecutive sentences up to window_size tokens, so a word's vector
        also depends on the sentences around it. "auto": "sentence" when the doc has sentence
        boundaries, else "doc". Boundaries a doc lacks are guessed without annotating it.
    device (str): "auto" (follow spaCy: GPU after spacy.require_gpu()), "cpu", "cuda" or "cuda:N".
    cache_mb (float): keep up to this many MB of layers of docs already read and reuse them when
        the same tokens come again: training epochs and dev evaluations then run the biLM once per
        doc (CoNLL-2003's train set takes ~620 MB). Only while the biLM is frozen; 0 = off.
    allow_download (bool): when `model` names a published model that is not cached yet, download
        it while the pipeline is built (never while a saved pipeline is loaded: its weights are
        in its own folder). False: the error says to run `spacy-elmo download NAME`.
    threads (int): torch threads while the biLM runs, 0-1024; 0 = torch's default (all cores; one
        in a process started by multiprocessing, such as a worker of nlp.pipe(n_process>1)). In a
        forked process (fork workers, pre-forking servers) it is one thread whatever this says: a
        forked child that enters its parent's OpenMP pool can hang. On a busy machine 1 can be
        several times faster. Torch's thread count is process-wide, so this also applies to other
        torch code.
    precision (str): how the biLM runs at prediction: "float32" (exact), "bfloat16" (CPUs with
        AVX-512 BF16 / AMX, GPUs from compute capability 8.0; float32 with a warning elsewhere) or
        "int8" (CPU only). Both are approximate and faster; see docs/inference.md for their error.
        The float32 weights are still what is saved; fine-tuning the biLM needs "float32".
    token_cache (int): keep the layer-0 vectors of this many recently read distinct words (512
        bytes each for the default model, 2 kB at the original size) so the character CNN runs only on spellings not
        seen lately; the vectors are the same either way. Used at prediction, and in training
        while the biLM is frozen; 0 = off.
    """
    files = options = None
    try:
        files, options = find_model_files(
            model, options_file, weight_file, allow_download=allow_download and not _restoring(nlp, name)
        )
    except ValueError:
        if not _restoring(nlp, name):
            raise
    return Elmo(
        nlp.vocab,
        ElmoBiLM(
            words_per_batch=words_per_batch, window_size=window_size, context=context, threads=threads,
            token_cache=token_cache,
        ),
        name,
        files=files,
        options=options,
        output=output,
        mix_weights=mix_weights,
        gamma=gamma,
        all_layers=all_layers,
        set_doc_tensor=set_doc_tensor,
        similarity_hooks=similarity_hooks,
        device=device,
        cache_mb=cache_mb,
        precision=precision,
    )


def _parse_output(output: str | int) -> str | int:
    if isinstance(output, str):
        text = output.strip().lower()
        if text.lstrip("-").isdigit():  # config validation may turn `output = 2` into "2"
            return int(text)
        if text in OUTPUTS:
            return text
    elif isinstance(output, int) and not isinstance(output, bool):
        return output
    raise ValueError(f"elmo component: output must be one of {', '.join(OUTPUTS)} or a layer index, got {output!r}")


def _windows_of_words(docs: Iterable[Doc], n_words: int) -> Iterator[list[Doc]]:
    """Consecutive docs, in order, grouped until a group has at least n_words tokens."""
    window: list[Doc] = []
    size = 0
    for doc in docs:
        window.append(doc)
        size += len(doc)
        if size >= n_words:
            yield window
            window, size = [], 0
    if window:
        yield window


def _torch_device(device: str) -> torch.device | None:
    """None = let Thinc pick (GPU when spaCy's require_gpu/prefer_gpu is active)."""
    if device == "auto":
        return None
    try:
        return parse_device("cuda" if device == "gpu" else device)
    except DeviceError as error:  # a device torch does not know, or one this machine lacks
        raise ValueError(f"elmo component: {error} (or auto)") from None


class PendingLayers(weakref.WeakKeyDictionary):
    """doc -> [layers, reads left, token ids]. A pickled copy (nlp.pipe(n_process>1) under spawn or
    forkserver) starts empty: the layers belong to this process's docs."""

    def __reduce__(self):
        return (PendingLayers, ())


class Elmo(TrainablePipe):
    """Runs ELMo's biLM over Docs; writes `doc._.elmo` and serves the layers to listeners."""

    def __init__(
        self,
        vocab: Vocab,
        model: Model[list[Doc], ElmoLayers],
        name: str = "elmo",
        *,
        files: ModelFiles | None = None,
        options: ElmoOptions | None = None,
        output: str | int = "top",
        mix_weights: Sequence[float] | None = None,
        gamma: float = 1.0,
        all_layers: bool = False,
        set_doc_tensor: bool = False,
        similarity_hooks: bool = True,
        device: str = "auto",
        cache_mb: float = 0,
        precision: str = "float32",
    ) -> None:
        self.vocab = vocab
        self.model = model
        self.name = name
        self.output = _parse_output(output)
        if self.output != "mix" and (mix_weights is not None or gamma != 1.0):
            raise ValueError("elmo component: mix_weights and gamma only apply to output='mix'")
        self.mix_weights = None if mix_weights is None else [float(w) for w in mix_weights]
        self.gamma = float(gamma)
        self.all_layers = all_layers
        self.set_doc_tensor = set_doc_tensor
        self.similarity_hooks = similarity_hooks
        self.device = _torch_device(device)
        if precision not in PRECISIONS:
            raise ValueError(f"elmo component: precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
        self.precision = precision
        self.cache = LayerCache(cache_mb)
        self.cfg: dict[str, Any] = {}
        self.listener_map: dict[str, list[ElmoListener]] = {}
        self._files = files
        self._meta: dict[str, Any] = {}
        # Layers kept for listeners at prediction time: doc -> [layers, reads left]. Weak keys, so
        # an entry never outlives its doc; it goes as soon as every listener has read it.
        self._pending = PendingLayers()
        if options is not None:
            self._check_layers(options.n_layers)
            model.set_dim("nL", options.n_layers)
            model.set_dim("nO", options.output_dim)

    # ---- weights -------------------------------------------------------------------------------

    def get_bilm(self) -> BiLM:
        """The torch biLM, read from the configured files on first use."""
        bilm = get_bilm(self.model)
        if bilm is None:
            if self._files is None:
                raise ValueError(f"elmo component '{self.name}' has no weights. {HOW_TO_CHOOSE}")
            bilm = load_bilm(options_file=self._files.options_file, weight_file=self._files.weight_file)
            self._set_bilm(bilm, self._files.meta())
        return bilm

    def _set_bilm(self, bilm: BiLM, meta: dict[str, Any]) -> None:
        self._check_layers(bilm.n_layers)
        set_bilm(self.model, bilm, self.device, precision=self.precision)
        self.cache.clear()  # its layers came from the old weights
        self._meta = dict(meta)
        for listener in self.listeners:  # they may have been linked before the weights were read
            listener.attach(self)

    def _check_layers(self, n_layers: int) -> None:
        if isinstance(self.output, int) and not -n_layers <= self.output < n_layers:
            raise ValueError(f"elmo component: output={self.output}, but the biLM has layers 0..{n_layers - 1}")
        if self.mix_weights is not None and len(self.mix_weights) != n_layers:
            raise ValueError(
                f"elmo component: mix_weights has {len(self.mix_weights)} values, the biLM has {n_layers} layers"
            )

    def initialize(self, get_examples: Callable[[], Iterable[Example]] | None = None, *, nlp=None) -> None:
        """Read the weights (pretrained: nothing is learned from the examples)."""
        self.get_bilm()

    # ---- prediction ----------------------------------------------------------------------------

    def predict(self, docs: Iterable[Doc]) -> ElmoLayers:
        """Every layer for every token: one (n_layers + 1, len(doc), dim) array per doc."""
        docs = list(docs)
        self.get_bilm()
        return self.cache.layers(docs, self.model.predict)

    def pipe(self, stream: Iterable[Doc], *, batch_size: int = 128) -> Iterator[Doc]:
        """Annotate a stream of docs, yielded in order. Reads the stream in windows of
        PIPE_WINDOW_BATCHES x words_per_batch words rather than `batch_size` docs, so the biLM gets
        full, length-sorted batches whatever the caller's batch size (vectors are the same)."""
        error_handler = self.get_error_handler()
        for docs in _windows_of_words(stream, PIPE_WINDOW_BATCHES * self.model.attrs["words_per_batch"]):
            try:
                self.set_annotations(docs, self.predict(docs))
                yield from docs
            except Exception as e:
                error_handler(self.name, self, docs, e)

    def set_annotations(self, docs: Iterable[Doc], layers: ElmoLayers) -> None:
        n_readers = len(self.listeners)
        for doc, x in zip(docs, layers):
            x_cpu = self.model.ops.to_numpy(x)
            vectors = self._select(x_cpu)  # a copy: it must not keep all layers alive
            doc._.set(EXTENSION, vectors)
            doc._.set(LAYERS_EXTENSION, x_cpu if self.all_layers else None)
            if self.set_doc_tensor:
                doc.tensor = vectors
            if self.similarity_hooks:
                set_similarity_hooks(doc)
            if n_readers:  # with the tokens, to tell whether a later component retokenized the doc
                self._pending[doc] = [x, n_readers, doc.to_array(ORTH)]

    def _select(self, x: np.ndarray) -> np.ndarray:
        """The configured output from all layers x (nL, n, dim): (n, dim), a new array."""
        if self.output == "top":
            return x[-1].copy()
        if self.output == "average":
            return x.mean(axis=0)
        if self.output == "mix":
            w = np.asarray(self.mix_weights if self.mix_weights is not None else [0.0] * x.shape[0], dtype="f")
            s = np.exp(w - w.max())
            return mix_layers(np, x, (s / s.sum()).astype("f"), self.gamma).astype("f")
        return x[self.output].copy()

    def layers_for(self, docs: list[Doc]) -> ElmoLayers:
        """What a listener asks at prediction time: the kept layers, or a fresh run of the biLM."""
        found: dict[int, Floats3d] = {}
        retokenized: dict[int, int] = {}  # doc index -> the listeners still to read it
        for i, doc in enumerate(docs):
            entry = self._pending.get(doc)
            if entry is not None and not np.array_equal(entry[2], doc.to_array(ORTH)):
                # Retokenized since (merge_entities, ...): no longer its layers. The fresh ones are
                # kept for the listeners after this one, so the biLM reads the doc once more, not
                # once per listener.
                del self._pending[doc]
                retokenized[i] = entry[1] - 1
            elif entry is not None:
                found[i] = entry[0]
                entry[1] -= 1
                if entry[1] <= 0:
                    del self._pending[doc]
        missing = [i for i in range(len(docs)) if i not in found]
        if missing:
            found.update(zip(missing, self.predict([docs[i] for i in missing])))
        for i, readers in retokenized.items():
            if readers > 0:
                self._pending[docs[i]] = [found[i], readers, docs[i].to_array(ORTH)]
        return [found[i] for i in range(len(docs))]

    # ---- training ------------------------------------------------------------------------------

    def update(
        self,
        examples: Iterable[Example],
        *,
        drop: float = 0.0,
        sgd: Optimizer | None = None,
        losses: dict[str, float] | None = None,
    ) -> dict[str, float]:
        """Run the biLM once over the batch and hand all layers to every listener.

        The biLM stays frozen unless a listener has grad_factor != 0; then the listeners' gradients
        go back into it (applied by finish_update, like spaCy's tok2vec).
        """
        if losses is None:
            losses = {}
        losses.setdefault(self.name, 0.0)
        examples = list(examples)
        validate_examples(examples, "Elmo.update")
        listeners = self.listeners
        if not listeners:
            return losses
        docs = [eg.predicted for eg in examples]
        self.get_bilm()
        finetune = any(listener.grad_factor != 0 for listener in listeners)
        if not finetune:
            layers = self.cache.layers(docs, self.model.predict)
            for listener in listeners:
                listener.receive(docs, layers, None)
            return losses
        if self.precision != "float32":
            raise ValueError(
                f"elmo component: precision={self.precision!r} runs a frozen copy of the biLM; "
                "fine-tuning it (a listener with grad_factor != 0) needs precision='float32'"
            )
        self.cache.clear()  # the weights are about to change
        clear_token_cache(self.model)
        layers, backprop_bilm = self.model.begin_update(docs)
        position = {id(doc): i for i, doc in enumerate(docs)}

        def backprop(pairs: list[tuple[Doc, Floats3d]]) -> None:
            grads = [self.model.ops.alloc3f(*x.shape) for x in layers]
            for doc, d in pairs:
                grads[position[id(doc)]] += d
            backprop_bilm(grads)

        for listener in listeners:
            listener.receive(docs, layers, backprop)
        return losses

    def get_loss(self, examples, scores):  # nothing to predict against: listeners hold the losses
        return 0.0, None

    # ---- listeners (spaCy links them through _link_components) ---------------------------------

    @property
    def listeners(self) -> list[ElmoListener]:
        return [m for c in self.listening_components for m in self.listener_map[c]]

    @property
    def listening_components(self) -> list[str]:
        return list(self.listener_map.keys())

    def add_listener(self, listener: ElmoListener, component_name: str) -> None:
        self.listener_map.setdefault(component_name, [])
        if listener not in self.listener_map[component_name]:
            self.listener_map[component_name].append(listener)
        listener.attach(self)

    def remove_listener(self, listener: ElmoListener, component_name: str) -> bool:
        if listener in self.listener_map.get(component_name, []):
            self.listener_map[component_name].remove(listener)
            if not self.listener_map[component_name]:
                del self.listener_map[component_name]
            return True
        return False

    def find_listeners(self, component: Any) -> None:
        """Link the ElmoListeners in a downstream component's model whose upstream is '*' or us."""
        names = ("*", self.name)
        if isinstance(getattr(component, "model", None), Model):
            for node in component.model.walk():
                if isinstance(node, ElmoListener) and node.upstream_name in names:
                    self.add_listener(node, component.name)

    # ---- serialisation: the weights travel with the pipeline ---------------------------------

    def to_disk(self, path: str | Path, *, exclude: Iterable[str] = ()) -> None:
        """Write <path>/model/ (options.json, weights.hdf5, meta.json): no link to the original files."""
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        save_model_dir(self.get_bilm(), path / MODEL_DIR, meta=self._meta or None)

    def from_disk(self, path: str | Path, *, exclude: Iterable[str] = ()) -> Elmo:
        directory = Path(path) / MODEL_DIR
        files = resolve_model_files(model=directory)
        self._set_bilm(load_bilm(model=directory), files.meta())
        self._files = files
        return self

    def to_bytes(self, *, exclude: Iterable[str] = ()) -> bytes:
        with tempfile.TemporaryDirectory() as tmp:
            self.to_disk(tmp)
            folder = Path(tmp) / MODEL_DIR
            keep = (OPTIONS_NAME, WEIGHTS_NAME, META_NAME, *self.get_bilm().options.vocabulary_files)
            files = {p.name: p.read_bytes() for p in folder.iterdir() if p.name in keep}
        return srsly.msgpack_dumps({MODEL_DIR: files})

    def from_bytes(self, bytes_data: bytes, *, exclude: Iterable[str] = ()) -> Elmo:
        files = srsly.msgpack_loads(bytes_data)[MODEL_DIR]
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp) / MODEL_DIR
            folder.mkdir()
            for name, data in files.items():
                (folder / Path(name).name).write_bytes(data)
            self.from_disk(tmp)
        self._files = None  # the temporary folder is gone; the weights are in memory
        return self
