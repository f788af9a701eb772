"""``dcframe doctor``: the machine as a bug report needs it, and the known-bad combinations.

Three steps, each testable alone: :func:`~.facts.gather` reads the machine into a
:class:`~.facts.Facts` of plain values; :func:`~.checks.run_checks` turns facts into
:class:`~.checks.Finding` objects (pure rules, no torch); :func:`~.smoke.run_smoke` runs a
tiny k-means per clusterer and device in a child process. The command line is
:mod:`dcframe.cli.doctor_cmd`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from dcframe.tools.doctor.checks import Finding, advice, run_checks
from dcframe.tools.doctor.facts import Facts, SmokeResult, gather

__all__ = ["Facts", "Finding", "Report", "SmokeResult", "diagnose"]


@dataclass
class Report:
    """What doctor prints: the facts, the smoke test (None when skipped), the findings."""

    facts: Facts
    findings: list[Finding]
    smoke: list[SmokeResult] | None
    advice: list[str]

    @property
    def exit_code(self) -> int:
        """1 when any finding is an error, else 0."""
        return 1 if any(f.severity == "error" for f in self.findings) else 0

    def as_json(self) -> dict[str, Any]:
        return {
            "facts": dataclasses.asdict(self.facts),
            "smoke": None if self.smoke is None else [dataclasses.asdict(s) for s in self.smoke],
            "findings": [dataclasses.asdict(f) for f in self.findings],
            "advice": self.advice,
            "exit_code": self.exit_code,
        }


def diagnose(recipe: Any = None, recipe_path: str = "", smoke: bool = True) -> Report:
    """Gather the facts, run the smoke test (unless ``smoke`` is False) and the checks."""
    from dcframe.tools.doctor.smoke import run_smoke

    facts = gather(recipe, recipe_path)
    results = run_smoke() if smoke else None
    return Report(facts, run_checks(facts, results), results, advice(facts))
