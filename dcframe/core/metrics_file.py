"""``metrics.jsonl``: a run's record, one JSON object per finished epoch.

The ``jsonl`` logger writes it as the run goes; ``--resume``, ``dcframe report`` and the
run summary read it back. It lives in the core because both sides need it: a component
(the logger) below the store, and the run directory above.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from dcframe.core.errors import UserError
from dcframe.core.files import atomic_write_bytes

NAME = "metrics.jsonl"


def json_line(record: dict[str, Any]) -> str:
    """``record`` as one line of strict JSON: a non-finite float becomes null, never NaN."""

    def finite(value: Any) -> Any:
        if isinstance(value, float) and not math.isfinite(value):
            return None
        if isinstance(value, dict):
            return {k: finite(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [finite(v) for v in value]
        return value

    return json.dumps(finite(record), allow_nan=False) + "\n"


class MetricsFile:
    """The ``metrics.jsonl`` of the run directory ``run_dir``; every write replaces the
    file atomically, so it never tears."""

    def __init__(self, run_dir: Path) -> None:
        self.path = run_dir / NAME

    def records(self) -> list[dict[str, Any]]:
        """The epoch records; a torn last line (a write cut short by an older dcframe or an
        editor) is dropped, since resuming rewrites that epoch anyway.

        Raises:
            UserError: a line other than the last is not a JSON record.
        """
        if not self.path.exists():
            return []
        lines = self.path.read_text(encoding="utf-8", errors="replace").splitlines()
        records = []
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
                if not isinstance(record, dict) or not isinstance(record.get("epoch"), int):
                    raise ValueError("not an epoch record")
            except ValueError as error:
                if number == len(lines):
                    break
                raise UserError(
                    f"{self.path}, line {number}: not a JSON epoch record ({error}); "
                    "fix or delete that line, then run again"
                ) from error
            records.append(record)
        return records

    def append(self, record: dict[str, Any]) -> None:
        """Add one epoch's record (replacing a record of the same epoch or later)."""
        kept = [r for r in self.records() if r["epoch"] < record["epoch"]]
        self._write([*kept, record])

    def truncate(self, epochs: int) -> None:
        """Keep the records of the first ``epochs`` epochs (a resumed run rewrites the rest)."""
        self._write([r for r in self.records() if r["epoch"] < epochs])

    def _write(self, records: list[dict[str, Any]]) -> None:
        text = "".join(json_line(r) for r in records)
        atomic_write_bytes(self.path, lambda f: f.write(text.encode()))
