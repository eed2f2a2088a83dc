"""Workflow step: ELMo in a non-English spaCy pipeline, from a model pretrained here and from a
converted ELMoForManyLangs model.

    python scripts/language_pipeline.py OUTPUT_JSON --lang fr --model training/languages/bilm_fr/model
        [--efml-model training/languages/efml_fixture] [--save training/languages/pipeline_fr]

Builds `spacy.blank(lang)` + the `elmo` component on --model, embeds a few sentences, and records
what a user sees: vector widths, and how similar "the same word in two senses" and "the same word
in the same sense" come out (contextual vectors tell them apart; static ones cannot). The same for
--efml-model (in a spacy.blank pipeline of its meta.json language, "xx" if none). --save writes the
pipeline to disk (the biLM travels with it) and checks that it loads back with the same vectors.
"""

import json
from pathlib import Path
from typing import Optional

import numpy as np
import spacy
import typer

EXAMPLES = {
    # (sentence, word): the word in two senses (a, b) and again in the sense of a (c).
    "fr": [
        ("L'avocat a plaidé longuement devant le tribunal.", "avocat"),
        ("J'ai mangé un avocat bien mûr avec du sel.", "avocat"),
        ("Le client a appelé son avocat avant le procès.", "avocat"),
    ],
}


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b) + 1e-12))


def summarize(nlp: spacy.Language, sentences: list[tuple[str, str]]) -> dict:
    docs = [nlp(text) for text, _ in sentences]
    # the first token holding the word (a tokenizer without elision rules keeps "L'avocat" whole)
    vectors = [next(t for t in doc if word in t.text)._.elmo for doc, (_, word) in zip(docs, sentences)]
    result = {"lang": nlp.lang, "width": int(docs[0]._.elmo.shape[1]), "tokens": [len(d) for d in docs]}
    if len(vectors) == 3:
        result["cosine_same_sense"] = cosine(vectors[0], vectors[2])
        result["cosine_other_sense"] = cosine(vectors[0], vectors[1])
    return result


def main(
    output: Path = typer.Argument(..., help="JSON summary to write."),
    lang: str = typer.Option(..., "--lang", help="spaCy language code of --model."),
    model: Path = typer.Option(..., "--model", help="Model directory pretrained on the language."),
    efml_model: Optional[Path] = typer.Option(None, "--efml-model", help="A converted ELMoForManyLangs model directory."),
    save: Optional[Path] = typer.Option(None, "--save", help="Write the --model pipeline here and check it loads back."),
) -> None:
    sentences = EXAMPLES.get(lang) or [("ELMo .", "ELMo")]
    nlp = spacy.blank(lang)
    nlp.add_pipe("elmo", config={"model": str(model)})
    report = {"model": summarize(nlp, sentences)}
    if save is not None:
        nlp.to_disk(save)
        again = spacy.load(save)
        same = np.array_equal(again(sentences[0][0])._.elmo, nlp(sentences[0][0])._.elmo)
        if not same:
            raise SystemExit(f"error: {save}: the saved pipeline gives other vectors")
        report["saved_pipeline"] = str(save)
    if efml_model is not None:
        meta_path = efml_model / "meta.json"
        meta = json.loads(meta_path.read_text(encoding="utf-8")) if meta_path.is_file() else {}
        efml_nlp = spacy.blank(meta.get("lang", "xx"))
        efml_nlp.add_pipe("elmo", config={"model": str(efml_model)})
        report["efml_model"] = summarize(efml_nlp, sentences)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    typer.echo(json.dumps(report, ensure_ascii=False))


if __name__ == "__main__":
    typer.run(main)
