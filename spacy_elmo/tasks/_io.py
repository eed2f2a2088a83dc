"""Writing metrics files: JSON with a trailing newline, written atomically so a killed step
never leaves a half-written file that a rerun would mistake for a finished one."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..atomic import atomic_path


def write_json(path: str | Path, data: Any) -> Path:
    path = Path(path)
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2, sort_keys=False, allow_nan=False) + "\n", encoding="utf-8")
    return path


def read_json(path: str | Path) -> Any:
    return json.loads(Path(path).read_text(encoding="utf-8"))
