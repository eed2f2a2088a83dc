"""The `spacy-elmo` command line (also `python -m spacy_elmo`). Each command lives in its own module."""

import typer

app = typer.Typer(
    name="spacy-elmo",
    help="ELMo for spaCy: embed text, pretrain and evaluate biLMs, convert weight files, download published models.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    # Click's plain help: rich's panels cut long option names (--max-batch-toke…) at 80 columns.
    rich_markup_mode=None,
    context_settings={"max_content_width": 120},
)


@app.callback()
def _root() -> None:
    """ELMo for spaCy: embed text, pretrain and evaluate biLMs, convert weight files."""


# Importing a command module registers its commands on `app`.
from . import embed, model_tools  # noqa: E402,F401
from . import evaluate, hub, pretrain  # noqa: E402,F401


def main() -> None:
    app()
