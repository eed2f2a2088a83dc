"""Are two text classifiers' test accuracies different beyond chance? Both pipelines label the
same test docs; prints and writes their accuracies, the items only one gets right, the exact
McNemar p-value and a paired bootstrap 95 % interval of accuracy(B) - accuracy(A).

    python scripts/compare_textcat.py training/textcat/sentiment/baseline/f1_s0/model-best \
        training/textcat/sentiment/elmo/f1_s0/model-best corpus/sentiment/test.spacy metrics/sentiment_paired.json
"""

from pathlib import Path

import spacy
import typer
from spacy.tokens import DocBin

from spacy_elmo.tasks._io import write_json
from spacy_elmo.tasks.textcat import compare_classifiers, predicted_labels, top_label


def main(
    model_a: Path = typer.Argument(..., help="First pipeline (e.g. the baseline's model-best)."),
    model_b: Path = typer.Argument(..., help="Second pipeline (e.g. the ELMo arm's model-best)."),
    test: Path = typer.Argument(..., help="Test .spacy file with gold doc.cats (one true label per doc)."),
    output: Path = typer.Argument(..., help="JSON to write."),
) -> None:
    for path in (model_a, model_b, test):
        if not path.exists():
            raise typer.BadParameter(f"{path} not found")
    nlp_a, nlp_b = spacy.load(model_a), spacy.load(model_b)
    gold_docs = list(DocBin().from_disk(test).get_docs(nlp_a.vocab))
    if not gold_docs or any(not doc.cats for doc in gold_docs):
        raise typer.BadParameter(f"{test}: every doc needs its gold doc.cats (a textcat .spacy file), and at least one doc")
    gold = [top_label(doc.cats) for doc in gold_docs]
    texts = [doc.text for doc in gold_docs]
    result = compare_classifiers(gold, predicted_labels(nlp_a, texts), predicted_labels(nlp_b, texts))
    write_json(output, {"model_a": str(model_a), "model_b": str(model_b), "test": str(test), **result})
    low, high = result["difference_ci95"]
    typer.echo(
        f"{result['n']} docs: A {100 * result['accuracy_a']:.1f} %, B {100 * result['accuracy_b']:.1f} %; "
        f"only A right {result['only_a_right']}, only B right {result['only_b_right']}; "
        f"McNemar p = {result['mcnemar_p']:.3f}; B - A 95 % interval [{100 * low:+.1f}, {100 * high:+.1f}] points"
    )


if __name__ == "__main__":
    typer.run(main)
