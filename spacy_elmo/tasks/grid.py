"""A grid of spaCy training runs (arms x training sets x seeds), each evaluated on a test set.

Used for the evidence the report gives beyond the main NER runs: text classification with and
without ELMo, the learning curve (nested subsets of the NER training data) and the static-vector
arms. Each run is `spacy train` (in-process) with a few overrides of a shipped config, then
`nlp.evaluate` on the test set; a run whose scores file exists, made with the same settings
(run.json: config text, overrides, data, seed, budget, and the content of the biLM and static
vectors it read), is skipped, so a step killed half-way continues where it stopped and a changed
setting retrains. With a record folder, each finished run's run.json + test_scores.json are also
kept there (a few hundred bytes, meant for git), so a grid longer than one sitting continues on a
fresh machine whose training folders are gone.

    arms = [Arm.parse("baseline=configs/ner_baseline.cfg"), Arm.parse("elmo_vectors=configs/ner_elmo.cfg+vectors")]
    run_grid(arms, train_sets, seeds, "training/ner_curve", dev=..., test=..., max_steps=20000, jobs=2)
"""

from __future__ import annotations

import functools
import gc
import hashlib
import math
import multiprocessing
import os
import random
from contextlib import contextmanager, redirect_stderr, redirect_stdout
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

from ._io import read_json, write_json

MULTI_HASH_EMBED = "spacy.MultiHashEmbed.v2"
VECTORS_SUFFIX = "+vectors"


# ---- nested training subsets -------------------------------------------------------------------


def nested_subsets(n_items: int, fractions: Iterable[float], seed: int) -> dict[float, list[int]]:
    """{fraction: sorted indices}: the first ceil(fraction * n) items of one seeded permutation,
    so the smaller subsets of a seed lie inside the larger ones (1% inside 5% inside 25%)."""
    order = list(range(n_items))
    random.Random(seed).shuffle(order)
    out = {}
    for fraction in sorted(set(fractions)):
        if not 0 < fraction <= 1:
            raise ValueError(f"subset fractions must be in (0, 1], got {fraction}")
        out[fraction] = sorted(order[: max(1, math.ceil(fraction * n_items))])
    return out


def subset_plan(fractions: Iterable[float], seeds: Iterable[int], all_seeds_up_to: float) -> list[tuple[float, int]]:
    """(fraction, seed) pairs: every seed for fractions <= all_seeds_up_to (where a single draw
    varies most), the first seed only above it."""
    seeds = list(seeds)
    if not seeds:
        raise ValueError("at least one seed is needed")
    return [(f, s) for f in sorted(set(fractions)) for s in (seeds if f <= all_seeds_up_to else seeds[:1])]


def write_subsets(
    train: str | Path, output_dir: str | Path, fractions: Iterable[float], seeds: Iterable[int], all_seeds_up_to: float
) -> dict:
    """Write output_dir/f{fraction}_s{seed}.spacy for each planned subset of a DocBin (one Doc
    per sentence for CoNLL) and output_dir/subsets.json, the manifest run_grid reads."""
    from spacy.tokens import DocBin
    from spacy.vocab import Vocab

    docs = list(DocBin().from_disk(train).get_docs(Vocab()))
    if not docs:
        raise ValueError(f"{train}: no documents; run the corpus step that writes it first")
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    plan = subset_plan(fractions, seeds, all_seeds_up_to)
    subsets = []
    for seed in sorted({s for _, s in plan}):
        chosen = nested_subsets(len(docs), [f for f, s in plan if s == seed], seed)
        for fraction, indices in chosen.items():
            path = output_dir / f"f{fraction:g}_s{seed}.spacy"
            DocBin(docs=[docs[i] for i in indices], store_user_data=False).to_disk(path)
            subsets.append({"fraction": fraction, "seed": seed, "docs": len(indices), "path": str(path)})
    subsets.sort(key=lambda s: (s["fraction"], s["seed"]))
    manifest = {"source": str(train), "total_docs": len(docs), "subsets": subsets}
    write_json(output_dir / "subsets.json", manifest)
    return manifest


# ---- arms and runs -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Arm:
    """One configuration of the comparison: a shipped config, with spaCy's static-vector input
    switched on or not."""

    name: str
    config: Path
    static_vectors: bool = False

    @classmethod
    def parse(cls, spec: str) -> "Arm":
        """NAME=CONFIG or NAME=CONFIG+vectors."""
        name, sep, config = spec.partition("=")
        if not sep or not name or not config:
            raise ValueError(f"arm {spec!r}: expected NAME=CONFIG or NAME=CONFIG{VECTORS_SUFFIX}")
        vectors = config.endswith(VECTORS_SUFFIX)
        return cls(name, Path(config.removesuffix(VECTORS_SUFFIX)), vectors)


def static_vector_overrides(config: dict, prefix: str = "") -> dict[str, Any]:
    """{'<section>.include_static_vectors': True} for every spacy.MultiHashEmbed.v2 in a config:
    the task's own embeddings then also read the vectors loaded by [initialize] vectors."""
    out: dict[str, Any] = {}
    for key, value in config.items():
        if isinstance(value, dict):
            path = f"{prefix}{key}"
            if value.get("@architectures") == MULTI_HASH_EMBED:
                out[f"{path}.include_static_vectors"] = True
            out.update(static_vector_overrides(value, path + "."))
    return out


def arm_overrides(arm: Arm, elmo_model: str | Path | None, vectors: str | Path | None) -> dict[str, Any]:
    """The overrides that make `arm` from its config: the biLM for configs that have
    paths.elmo_model, the static vectors for a +vectors arm."""
    from spacy.util import load_config

    if not arm.config.is_file():
        raise FileNotFoundError(f"arm {arm.name}: config {arm.config} not found; give NAME=CONFIG with an existing .cfg")
    config = load_config(arm.config, interpolate=False)
    out: dict[str, Any] = {}
    if elmo_model is not None and "elmo_model" in config["paths"]:
        out["paths.elmo_model"] = str(elmo_model)
    if arm.static_vectors:
        if vectors is None:
            raise ValueError(f"arm {arm.name}: a {VECTORS_SUFFIX} arm needs --vectors (a `spacy init vectors` output)")
        if config["initialize"].get("vectors") != "${paths.vectors}":
            raise ValueError(f"{arm.config}: [initialize] vectors must be ${{paths.vectors}} for a {VECTORS_SUFFIX} arm")
        found = static_vector_overrides(config)
        if not found:
            raise ValueError(f"{arm.config}: no {MULTI_HASH_EMBED} to give static vectors to")
        out.update(found)
        out["paths.vectors"] = str(vectors)
    return out


@dataclass(frozen=True)
class TrainSet:
    path: Path
    fraction: float = 1.0
    seed: int | None = None  # the subset's seed (None: the whole set, any training seed)
    docs: int | None = None


def train_sets(train: str | Path) -> tuple[list[TrainSet], int | None]:
    """The training sets of a grid and the size of the full set: a subsets.json manifest
    (write_subsets), or one .spacy file used whole."""
    train = Path(train)
    if not train.exists():
        raise FileNotFoundError(f"{train} not found; run the step that writes it first")
    if train.suffix != ".json":
        return [TrainSet(train)], None
    manifest = read_json(train)
    sets = [TrainSet(Path(s["path"]), s["fraction"], s["seed"], s["docs"]) for s in manifest["subsets"]]
    return sets, manifest.get("total_docs")


def run_name(train_set: TrainSet, seed: int) -> str:
    return f"f{train_set.fraction:g}_s{seed}"


def train_and_evaluate(config: Path, output: Path, test: Path, overrides: dict[str, Any], gpu_id: int = -1,
                       inputs: dict[str, str] | None = None) -> dict:
    """`spacy train` into output/ (overrides: data paths, seed, budget and the arm's), then the
    best model's scores on the test set, written to output/test_scores.json last (the run's
    completion mark, next to run.json, the settings it was made with)."""
    from spacy.cli.train import train as spacy_train
    from spacy.training import Corpus
    from spacy.util import load_model

    (output / "test_scores.json").unlink(missing_ok=True)  # a stale mark must not outlive new settings
    inputs = input_fingerprints(overrides) if inputs is None else inputs  # run_grid hashes each arm's once
    write_json(output / "run.json", run_record(config, test, overrides, inputs))
    spacy_train(config, output, use_gpu=gpu_id, overrides=overrides)
    nlp = load_model(output / "model-best")
    scores = nlp.evaluate(list(Corpus(test)(nlp)))
    write_json(output / "test_scores.json", _plain(scores))
    del nlp
    gc.collect()  # the ELMo layer cache of the run
    return scores


def run_settings(config: Path, test: Path, overrides: dict[str, Any], inputs: dict[str, str] | None = None) -> dict:
    """What a finished run's scores depend on: reused only when all of it is unchanged. `inputs`:
    input_fingerprints(overrides), so a retrained biLM under the same path retrains the runs."""
    digest = hashlib.sha256(Path(config).read_bytes()).hexdigest()
    return {"config": str(config), "config_sha256": digest, "test": str(test),
            "overrides": {k: overrides[k] for k in sorted(overrides)}, "inputs": dict(sorted((inputs or {}).items()))}


# The files a run's features are made of: a biLM's architecture and weights (not its softmax or
# meta.json, which a rerun of the same training rewrites with new timings), and the tables of a
# `spacy init vectors` output.
ELMO_MODEL_FILES = ("options.json", "weights.hdf5")
VECTORS_FOLDER = "vocab"


def input_fingerprints(overrides: dict[str, Any]) -> dict[str, str]:
    """{'elmo_model': sha256, 'vectors': sha256} of the biLM and static vectors an arm reads (only
    those its overrides name). A biLM given by name rather than as a folder is fingerprinted by
    its name."""
    out = {}
    if "paths.elmo_model" in overrides:
        model = Path(overrides["paths.elmo_model"])
        files = [model / name for name in ELMO_MODEL_FILES if (model / name).is_file()]
        out["elmo_model"] = _digest(files, model) if files else "name:" + str(overrides["paths.elmo_model"])
    if "paths.vectors" in overrides:
        folder = Path(overrides["paths.vectors"]) / VECTORS_FOLDER
        files = sorted(p for p in folder.rglob("*") if p.is_file()) if folder.is_dir() else []
        if not files:
            raise FileNotFoundError(f"{folder}: no vector tables; run the static-vectors step first")
        out["vectors"] = _digest(files, folder)
    return out


def _digest(files: list[Path], root: Path) -> str:
    """One sha256 over the files' names (relative to root) and their own sha256."""
    from ..hub.fetch import sha256_of

    lines = "".join(f"{path.relative_to(root).as_posix()}\t{sha256_of(path)}\n" for path in files)
    return hashlib.sha256(lines.encode()).hexdigest()


# The packages whose float sums a run's scores come from. The same settings trained with other
# versions (or on another kind of CPU) follow another trajectory: NER seed 0 of configs/ner_baseline.cfg
# gave test F1 81.40 on one machine and 82.03 on another (docs/evidence.md).
ENVIRONMENT_PACKAGES = ("torch", "spacy", "thinc", "numpy", "blis")


def run_record(config: Path, test: Path, overrides: dict[str, Any], inputs: dict[str, str] | None = None) -> dict:
    """What a run's run.json holds: its settings (run_settings) and the environment it is made in."""
    return {**run_settings(config, test, overrides, inputs), "environment": run_environment()}


def run_environment() -> dict:
    """Where a run is made: {'cpu': the CPU's model name, 'versions': {package: version}}. A record
    is reused only with the same versions (pin them to reuse records); the CPU is written down and
    shown by the report, not compared, so a sitting on another kind of machine reuses the runs
    already made rather than starting over."""
    return {"cpu": cpu_model_name(), "versions": package_versions()}


@functools.cache  # asked for every run a grid plans; fixed for the life of the process
def package_versions() -> dict[str, str | None]:
    """{package: installed version or None} for ENVIRONMENT_PACKAGES."""
    from importlib.metadata import PackageNotFoundError, version

    versions = {}
    for name in ENVIRONMENT_PACKAGES:
        try:
            versions[name] = version(name)
        except PackageNotFoundError:
            versions[name] = None
    return versions


@functools.cache
def cpu_model_name() -> str:
    """The CPU's model name ('AMD EPYC', 'Intel(R) Xeon(R) ...'), or the platform's machine type."""
    import platform

    try:
        for line in Path("/proc/cpuinfo").read_text(errors="replace").splitlines():
            if line.lower().startswith("model name") and ":" in line:
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def finished_scores(output: Path, config: Path, test: Path, overrides: dict[str, Any],
                    inputs: dict[str, str] | None = None) -> dict | None:
    """The test scores of a run made with these settings, or None (not run, killed, or changed).
    A run.json without an environment (written before runs recorded one) is matched on its
    settings alone; one with an environment also needs the same package versions."""
    done, settings_file = output / "test_scores.json", output / "run.json"
    if not (done.is_file() and settings_file.is_file()):
        return None
    settings = read_json(settings_file)
    environment = settings.pop("environment", None)
    if settings != run_settings(config, test, overrides, inputs):
        return None
    if environment is not None and environment.get("versions") != package_versions():
        return None
    return read_json(done)


def recorded_environment(output: Path) -> dict | None:
    """The environment a finished run's run.json names (None for runs made before it was recorded)."""
    settings = output / "run.json"
    return read_json(settings).get("environment") if settings.is_file() else None


def keep_record(output: Path, record: Path) -> None:
    """Copy a finished run's run.json and test_scores.json into its record folder (scores last:
    they mark the record complete, as in the run's own folder). An older record's scores go
    first: killed between the two files, the record must not pair new settings with old scores."""
    (record / "test_scores.json").unlink(missing_ok=True)
    for name in ("run.json", "test_scores.json"):
        write_json(record / name, read_json(output / name))


def _plain(value: Any) -> Any:
    """JSON-safe scores: NaN and infinities (e.g. an undefined AUC) become None."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def headline(scores: dict) -> dict[str, float | None]:
    """The figures the report shows (fractions): NER P/R/F1 and F1 per entity type ('f_LOC', ...),
    or textcat accuracy and macro F1."""
    from .textcat import textcat_figures

    if "ents_f" in scores:
        per_type = {f"f_{label}": (figures or {}).get("f") for label, figures in (scores.get("ents_per_type") or {}).items()}
        return {**{k: scores.get(f"ents_{k}") for k in ("f", "p", "r")}, **dict(sorted(per_type.items()))}
    return textcat_figures(scores)


def run_grid(
    arms: list[Arm], train: str | Path, seeds: list[int], output_dir: str | Path, dev: str | Path, test: str | Path,
    max_steps: int, elmo_model: str | Path | None = None, vectors: str | Path | None = None, gpu_id: int = -1,
    jobs: int = 1, record_dir: str | Path | None = None,
) -> dict:
    """Train and evaluate every arm on every training set; subsets of a manifest train with their
    own seed, a single .spacy file once per seed. jobs > 1 trains that many runs at once, each in
    its own process with an equal share of the CPU cores (CPU only). record_dir: where finished
    runs are recorded (RECORD/ARM/RUN/) and found again when their own folder is gone. Returns
    {'runs': [...], 'total_docs': n} with the runs in planned order, however many ran at once."""
    if jobs < 1:
        raise ValueError(f"jobs must be at least 1, got {jobs}")
    if jobs > 1 and gpu_id >= 0:
        raise ValueError("jobs > 1 trains on the CPU only; use jobs = 1 with a GPU")
    # Runs are folders RUNS/ARM/f<fraction>_s<seed>: a name or seed given twice would train two
    # runs into one folder (at once, with jobs > 1) and average them as one arm.
    for what, values in (("arm name", [arm.name for arm in arms]), ("seed", list(seeds))):
        twice = sorted({str(v) for v in values if values.count(v) > 1})
        if twice:
            raise ValueError(f"{what} given more than once: {', '.join(twice)}")
    sets, total = train_sets(train)
    overrides = {arm.name: arm_overrides(arm, elmo_model, vectors) for arm in arms}  # fail before training
    inputs = {name: input_fingerprints(values) for name, values in overrides.items()}
    planned = []  # (arm, train set, seed, output folder, settings)
    for train_set in sets:
        for seed in [train_set.seed] if train_set.seed is not None else seeds:
            for arm in arms:
                settings = {"paths.train": str(train_set.path), "paths.dev": str(dev), "system.seed": seed,
                            "training.max_steps": max_steps, **overrides[arm.name]}
                planned.append((arm, train_set, seed, Path(output_dir) / arm.name / run_name(train_set, seed), settings))
    def record_of(output: Path) -> Path | None:
        return None if record_dir is None else Path(record_dir) / output.relative_to(Path(output_dir))

    scores, sources = [], []
    for arm, _, _, output, settings in planned:
        found = finished_scores(output, arm.config, Path(test), settings, inputs[arm.name])
        record = record_of(output)
        if found is not None and record is not None:
            keep_record(output, record)  # finished before the record existed
        recorded = None if found is not None or record is None else finished_scores(
            record, arm.config, Path(test), settings, inputs[arm.name])
        scores.append(found if recorded is None else recorded)
        sources.append("trained" if recorded is None else "record")
    pending = {i: (planned[i][0].config, planned[i][3], Path(test), planned[i][4], gpu_id, inputs[planned[i][0].name])
               for i, found in enumerate(scores) if found is None}
    for i, found in _train_all(pending, jobs):
        scores[i] = found
        if (record := record_of(planned[i][3])) is not None:
            keep_record(planned[i][3], record)  # as each run finishes: a killed step loses only the runs in flight
    runs = [
        {"arm": arm.name, "config": str(arm.config), "static_vectors": arm.static_vectors,
         "fraction": train_set.fraction, "seed": seed, "train_docs": train_set.docs,
         "model": str(output / "model-best") if source == "trained" else None, "source": source,
         "environment": recorded_environment(record_of(output) if source == "record" else output),
         "scores": headline(found)}
        for (arm, train_set, seed, output, _), found, source in zip(planned, scores, sources)
    ]
    return {"total_docs": total, "max_steps": max_steps, "runs": runs}


def _train_all(
    pending: dict[int, tuple], jobs: int, worker: Callable[..., dict] | None = None
) -> Iterator[tuple[int, dict]]:
    """(index, test scores) of each pending run (train_and_evaluate arguments), as each finishes;
    with jobs > 1, `worker` (default _train_logged) runs each in a process of a pool."""
    if jobs == 1 or len(pending) <= 1:
        for i, args in pending.items():
            yield i, train_and_evaluate(*args)
        return
    from concurrent.futures import ProcessPoolExecutor, as_completed
    from concurrent.futures.process import BrokenProcessPool

    jobs = min(jobs, len(pending))
    threads = max(1, len(os.sched_getaffinity(0)) // jobs)
    # Fresh interpreters (spawn) that start with the thread limit in their environment, so torch
    # and the BLAS libraries never run more threads than their share of the cores.
    context = multiprocessing.get_context("spawn")
    with _environment({name: str(threads) for name in THREAD_VARIABLES}):
        with ProcessPoolExecutor(jobs, mp_context=context, initializer=_limit_threads, initargs=(threads,)) as pool:
            futures = {pool.submit(worker or _train_logged, *args): i for i, args in pending.items()}
            try:
                for future in as_completed(futures):
                    yield futures[future], future.result()
            except BrokenProcessPool:
                raise RuntimeError(
                    "a training process died without a Python error (killed, or out of memory?); finished runs "
                    "are kept: rerun to continue, with fewer --jobs if memory is short"
                ) from None
            except BaseException:
                for future in futures:
                    future.cancel()  # runs not started yet; those running finish and keep their scores
                raise


THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


def _train_logged(config: Path, output: Path, *args) -> dict:
    """train_and_evaluate in a worker, its training log in output/train.log (runs side by side
    would interleave theirs)."""
    output.mkdir(parents=True, exist_ok=True)
    with open(output / "train.log", "w", encoding="utf-8") as log:
        with redirect_stdout(log), redirect_stderr(log):
            scores = train_and_evaluate(config, output, *args)
    print(f"{output}: trained and scored (log: {output / 'train.log'})", flush=True)
    return scores


@contextmanager
def _environment(values: dict[str, str]) -> Iterator[None]:
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _limit_threads(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)


def summarize(runs: list[dict]) -> dict[str, list[dict]]:
    """{arm: [{'fraction', 'train_docs', 'n_runs', 'mean': {figure: x}, 'sd': {figure: x}}]}
    over seeds (sd: sample standard deviation, None for a single run)."""
    from statistics import mean, stdev

    groups: dict[tuple[str, float], list[dict]] = {}
    for run in runs:
        groups.setdefault((run["arm"], run["fraction"]), []).append(run)
    out: dict[str, list[dict]] = {}
    for (arm, fraction), group in sorted(groups.items()):
        figures = {k for run in group for k, v in run["scores"].items() if v is not None}
        values = {k: [run["scores"][k] for run in group if run["scores"].get(k) is not None] for k in sorted(figures)}
        out.setdefault(arm, []).append({
            "fraction": fraction, "train_docs": group[0]["train_docs"], "n_runs": len(group),
            "mean": {k: mean(v) for k, v in values.items()},
            "sd": {k: stdev(v) if len(v) > 1 else None for k, v in values.items()},
        })
    return out
