"""CoNLL-2003 NER: reading, conversion to spaCy's DocBin, and span-level P/R/F1 per entity type.

File format: one token per line, `token POS chunk NER` (the NER tag is the last column; IOB2 here,
IOB1 also read correctly), a blank line between sentences, `-DOCSTART- ...` lines between documents.
Scoring is exact-match on (start, end, label) spans, as conlleval and spaCy's Scorer do.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

from ..atomic import atomic_path
from ._io import write_json

Span = tuple[int, int, str]  # (start token, end token exclusive, label)
DOCSTART = "-DOCSTART-"


@dataclass
class Sentence:
    words: list[str] = field(default_factory=list)
    tags: list[str] = field(default_factory=list)


def read_conll(path: str | Path, limit: int | None = None) -> list[list[Sentence]]:
    """Documents (split at -DOCSTART-), each a list of sentences. Files without document markers
    come back as one document. limit: only the first `limit` sentences of the file."""
    docs: list[list[Sentence]] = [[]]
    current = Sentence()

    def close_sentence() -> None:
        nonlocal current
        if current.words:
            docs[-1].append(current)
        current = Sentence()

    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            fields = line.split()
            if not fields:
                close_sentence()
                continue
            if fields[0] == DOCSTART:
                close_sentence()
                if docs[-1]:
                    docs.append([])
                continue
            if len(fields) < 2:
                raise ValueError(f"{path}:{lineno}: expected 'token ... tag', got {line.strip()!r}")
            tag = fields[-1]
            if tag != "O" and not (len(tag) > 2 and tag[:2] in ("B-", "I-")):
                raise ValueError(f"{path}:{lineno}: {tag!r} is not an IOB tag (O, B-X, I-X)")
            current.words.append(fields[0])
            current.tags.append(tag)
    close_sentence()
    docs = [doc for doc in docs if doc]
    if limit is None:
        return docs
    kept: list[list[Sentence]] = []
    for doc in docs:
        if limit <= 0:
            break
        kept.append(doc[:limit])
        limit -= len(kept[-1])
    return kept


def iob_to_spans(tags: Sequence[str]) -> list[Span]:
    """Entity spans of an IOB1 or IOB2 tag sequence.

    An I-X that does not continue an X entity starts a new one (conlleval's reading), so IOB1
    and slightly broken IOB2 both give sensible spans.
    """
    spans: list[Span] = []
    start, label = None, None
    for i, tag in enumerate(list(tags) + ["O"]):
        prefix, _, kind = tag.partition("-")
        continues = prefix == "I" and kind == label
        if start is not None and not continues:
            spans.append((start, i, label))
            start, label = None, None
        if prefix in ("B", "I") and not continues:
            start, label = i, kind
    return spans


def _read_groups(path: str | Path, n_sents: int, limit: int | None) -> list[list[Sentence]]:
    """Consecutive runs of `n_sents` sentences within each document of a CoNLL file (0 = each
    whole document): the Docs of conll_to_docbin and the lines of conll_to_text."""
    if n_sents < 0:
        raise ValueError(f"n_sents must be >= 0 (0 = whole documents), got {n_sents}")
    groups = []
    for document in read_conll(path, limit):
        step = n_sents or len(document)
        groups.extend(document[first : first + step] for first in range(0, len(document), step))
    return groups


def conll_to_docbin(path: str | Path, output: str | Path, n_sents: int = 1, limit: int | None = None) -> dict:
    """Write a DocBin with one Doc per `n_sents` consecutive sentences of a document (0: one Doc
    per whole document, as between -DOCSTART- lines).

    Sentence starts are set, so a component that works per sentence sees the original sentences.
    limit: keep the first `limit` sentences (small demo corpora). Returns counts.
    """
    from spacy.tokens import Doc, DocBin
    from spacy.tokens import Span as SpacySpan
    from spacy.vocab import Vocab

    vocab = Vocab()  # strings only: the DocBin stores text, not lexeme attributes
    db = DocBin(store_user_data=False)
    n_sentences = n_tokens = n_docs = 0
    entities: Counter[str] = Counter()
    for group in _read_groups(path, n_sents, limit):
        words = [w for s in group for w in s.words]
        sent_starts = [k == 0 for s in group for k in range(len(s.words))]
        doc = Doc(vocab, words=words, sent_starts=sent_starts)
        offset, ents = 0, []
        for sentence in group:
            for start, end, label in iob_to_spans(sentence.tags):
                ents.append(SpacySpan(doc, offset + start, offset + end, label=label))
                entities[label] += 1
            offset += len(sentence.words)
        doc.ents = ents
        db.add(doc)
        n_docs += 1
        n_sentences += len(group)
        n_tokens += len(words)
    Path(output).parent.mkdir(parents=True, exist_ok=True)
    db.to_disk(output)
    return {"docs": n_docs, "sentences": n_sentences, "tokens": n_tokens, "entities": dict(sorted(entities.items()))}


def conll_to_text(path: str | Path, output: str | Path, limit: int | None = None, n_sents: int = 1) -> dict:
    """Write the words of a CoNLL file as unlabelled text to fine-tune the biLM on (`spacy-elmo
    pretrain --init-from ... --corpus.tokenizer whitespace`), tokenized exactly as the NER Docs
    are: one line per `n_sents` sentences of a document (0: per whole document), grouped as
    conll_to_docbin groups its Docs, tokens joined by spaces. The write is atomic. Returns counts."""
    groups = _read_groups(path, n_sents, limit)
    lines = [" ".join(w for sentence in group for w in sentence.words) for group in groups]
    with atomic_path(output) as tmp:
        tmp.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return {
        "lines": len(lines),
        "sentences": sum(map(len, groups)),
        "tokens": sum(len(sentence.words) for group in groups for sentence in group),
    }


def _prf(tp: int, fp: int, fn: int) -> dict:
    # 0 when undefined (no predictions / no gold), as spaCy's PRFScore does.
    p = tp / (tp + fp) if tp + fp else 0.0
    r = tp / (tp + fn) if tp + fn else 0.0
    f = 2 * p * r / (p + r) if p + r else 0.0
    return {"p": p, "r": r, "f": f, "tp": tp, "fp": fp, "fn": fn}


def span_prf(gold: Iterable[Iterable[Span]], predicted: Iterable[Iterable[Span]]) -> dict:
    """Exact-match span P/R/F1, overall (micro) and per entity type.

    gold, predicted: one collection of (start, end, label) spans per document, same order.
    Returns {'overall': {p, r, f, tp, fp, fn}, 'per_type': {label: {...}}}, values as fractions.
    """
    tp: Counter[str] = Counter()
    fp: Counter[str] = Counter()
    fn: Counter[str] = Counter()
    gold, predicted = list(gold), list(predicted)
    if len(gold) != len(predicted):
        raise ValueError(f"span_prf: {len(gold)} gold documents but {len(predicted)} predicted")
    for g_doc, p_doc in zip(gold, predicted):
        g, p = set(g_doc), set(p_doc)
        for span in g & p:
            tp[span[2]] += 1
        for span in p - g:
            fp[span[2]] += 1
        for span in g - p:
            fn[span[2]] += 1
    labels = sorted(set(tp) | set(fp) | set(fn))
    return {
        "overall": _prf(sum(tp.values()), sum(fp.values()), sum(fn.values())),
        "per_type": {label: _prf(tp[label], fp[label], fn[label]) for label in labels},
    }


def doc_spans(doc) -> list[Span]:
    """(start, end, label) of a spaCy Doc's entities."""
    return [(ent.start, ent.end, ent.label_) for ent in doc.ents]


def from_spacy_evaluate(data: dict) -> dict:
    """Our NER metrics schema from the JSON that `spacy evaluate --output` writes.

    spaCy writes fractions: ents_p/ents_r/ents_f, ents_per_type {label: {p, r, f}}, speed (words/s).
    A missing figure stays None; nothing is filled in.
    """
    per_type = data.get("ents_per_type") or {}
    return {
        "overall": {k: data.get(f"ents_{k}") for k in ("p", "r", "f")},
        "per_type": {label: {k: scores.get(k) for k in ("p", "r", "f")} for label, scores in sorted(per_type.items())},
        "words_per_second": data.get("speed"),
    }


def training_settings(model: str | Path | None) -> dict | None:
    """{'max_steps', 'seed'} a trained pipeline was made with (its config.cfg: [training] max_steps,
    [system] seed), so the report can tell runs of other settings apart; None without a config."""
    from spacy.util import load_config

    config_path = None if model is None else Path(model) / "config.cfg"
    if config_path is None or not config_path.is_file():
        return None
    config = load_config(config_path, interpolate=False)
    values = {"max_steps": config.get("training", {}).get("max_steps"), "seed": config.get("system", {}).get("seed")}
    return {k: v if isinstance(v, int) and not isinstance(v, bool) else None for k, v in values.items()}


def write_ner_metrics(spacy_eval_json: str | Path, output: str | Path, name: str, model: str | None = None,
                      environment_json: str | Path | None = None) -> dict:
    """Convert one `spacy evaluate` output into metrics/<name>.json. `environment_json`: the file
    scripts/record_environment.py wrote when the model was trained; its environment is copied in
    (None when not given or not there: a model trained before training recorded it). `model`: the
    evaluated pipeline; its training budget and seed are copied in ('training', training_settings)."""
    from ._io import read_json

    environment = None
    if environment_json is not None and Path(environment_json).is_file():
        environment = (read_json(environment_json) or {}).get("environment")
    data = {"task": "ner", "name": name, "model": model, "metric": "f1", "environment": environment,
            "training": training_settings(model), **from_spacy_evaluate(read_json(spacy_eval_json))}
    write_json(output, data)
    return data
