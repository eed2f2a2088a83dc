"""Workflow step: pretraining text in another language, split into words by spaCy's rules for it.

    python scripts/prepare_lang_corpus.py TRAIN DEV SOURCE --lang fr [--dev-lines 300] [--max-words N]

One article (line) per output line, words space-separated with `spacy.blank(lang)`'s tokenizer, so
the biLM is pretrained on the words the `spacy.blank(lang)` pipeline will give it. The last
--dev-lines lines are held out as DEV (for perplexity); TRAIN gets the rest, up to --max-words.
"""

from pathlib import Path

import spacy
import typer


def main(
    train: Path = typer.Argument(..., help="Training text to write."),
    dev: Path = typer.Argument(..., help="Held-out text to write (the source's last --dev-lines lines)."),
    source: Path = typer.Argument(..., help="Raw text, one paragraph or article per line."),
    lang: str = typer.Option(..., "--lang", help="spaCy language code whose tokenizer splits the words."),
    dev_lines: int = typer.Option(300, "--dev-lines", help="Lines held out for DEV."),
    max_words: int = typer.Option(0, "--max-words", help="Stop TRAIN after about this many words (0: all)."),
) -> None:
    if not source.is_file():
        raise SystemExit(f"error: {source}: not found (the language's raw text, one article per line)")
    lines = [line.strip() for line in source.read_text(encoding="utf-8", errors="replace").splitlines()]
    lines = [line for line in lines if line]
    if len(lines) <= dev_lines:
        raise SystemExit(f"error: {source}: {len(lines)} lines, not more than --dev-lines {dev_lines}")
    tokenizer = spacy.blank(lang).tokenizer
    words = 0
    for path, part in ((dev, lines[-dev_lines:]), (train, lines[:-dev_lines])):
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "w", encoding="utf-8") as out:
            for line in part:
                tokens = [t.text for t in tokenizer(line) if t.text.strip()]
                out.write(" ".join(tokens) + "\n")
                if path == train:
                    words += len(tokens)
                    if max_words and words >= max_words:
                        break
    typer.echo(f"{train}: {words:,} words; {dev}: {dev_lines} lines ({lang} tokenizer)")


if __name__ == "__main__":
    typer.run(main)
