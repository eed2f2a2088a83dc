"""What a command printed, as one line of text, for tests that look for a phrase in it.

wasabi wraps messages at 80 columns, so a phrase in a message that holds a long temporary path can
be split over two lines; the tests compare against the text with every run of whitespace as one
space and the colour codes removed. Imported by the test modules (pytest puts tests/ on sys.path).
"""

from __future__ import annotations

import re

ANSI_CODE = re.compile(r"\x1b\[[0-9;]*m")


def printed(result) -> str:
    """The output of a typer CliRunner result, colour codes removed and whitespace collapsed."""
    return " ".join(ANSI_CODE.sub("", result.output).split())
