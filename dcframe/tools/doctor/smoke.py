"""The smoke test of ``dcframe doctor``: a tiny k-means per clusterer and usable device.

It runs in a child process (``python -m dcframe.tools.doctor.smoke``) because the failures
it looks for are not all exceptions: two CUDA runtimes in one process have been reported to
segfault, and a crash must become a finding, not end the report. The child prints one
line before and one after each case, so the parent knows which case a crash interrupted.
"""

from __future__ import annotations

import json
import math
import signal
import subprocess
import sys
import time

import numpy as np

from dcframe.tools.doctor.facts import SmokeResult

CLUSTERERS = ("torch-kmeans", "faiss-kmeans")
ROWS, DIM, K, ITERATIONS = 2000, 32, 10, 5
TIMEOUT_S = 300
_MARK = "dcframe-doctor-smoke "  # the child's lines for the parent; faiss may print too


def run_smoke(
    clusterers: tuple[str, ...] = CLUSTERERS, timeout_s: float = TIMEOUT_S
) -> list[SmokeResult]:
    """Each clusterer (when registered) on each device it reports available, in a child."""
    command = [sys.executable, "-m", "dcframe.tools.doctor.smoke", *clusterers]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired as expired:
        out = expired.stdout.decode() if isinstance(expired.stdout, bytes) else expired.stdout
        return _results(out or "", f"timed out after {timeout_s:g} s")
    if done.returncode == 0:
        return _results(done.stdout, None)
    return _results(done.stdout, _death(done.returncode, done.stderr))


def _death(returncode: int, stderr: str) -> str:
    """How the child ended, with the last line it wrote on stderr."""
    if returncode < 0:
        try:
            how = f"the process crashed ({signal.Signals(-returncode).name}, signal)"
        except ValueError:
            how = f"the process was killed by signal {-returncode}"
    else:
        how = f"the process exited with code {returncode}"
    last = [line for line in stderr.strip().splitlines() if line.strip()][-1:]
    return f"{how}: {last[0]}" if last else how


def _results(stdout: str, death: str | None) -> list[SmokeResult]:
    """The finished cases, and the one a death interrupted (if any)."""
    results: list[SmokeResult] = []
    started: dict[str, str] | None = None
    for line in stdout.splitlines():
        if not line.startswith(_MARK):
            continue
        event = json.loads(line[len(_MARK) :])
        if event["event"] == "start":
            started = event
            continue
        started = None
        results.append(SmokeResult(**{k: v for k, v in event.items() if k != "event"}))
    if death is not None:
        where = started or {"clusterer": "smoke test", "device": "-"}
        results.append(SmokeResult(where["clusterer"], where["device"], ok=False, error=death))
    return results


# --------------------------------------------------------------------------- the child


def _devices(name: str) -> tuple[str, ...]:
    """The devices ``name`` can use here; none when it is not installed (a plugin that
    failed to load is a finding of its own)."""
    from dcframe.core import kinds

    if name not in kinds.clusterers:
        return ()
    return tuple(kinds.clusterers.get(name).cls.available_devices())


def _one(name: str, device: str, rows: np.ndarray) -> SmokeResult:
    from dcframe.core import kinds

    entry = kinds.clusterers.get(name)
    settings: dict[str, object] = {"k": K}
    if "iterations" in entry.params_model.model_fields:
        settings["iterations"] = ITERATIONS
    clusterer = entry.cls(entry.params_model.model_validate(settings))
    start = time.perf_counter()
    result = clusterer.cluster(rows, seed=0, device=device)
    seconds = time.perf_counter() - start
    labels = np.asarray(result.assignments)
    if labels.shape != (ROWS,) or labels.min() < 0 or labels.max() >= K:
        return SmokeResult(name, device, False, seconds, "labels out of range or wrong shape")
    if not math.isfinite(result.objective):
        return SmokeResult(name, device, False, seconds, f"objective {result.objective}")
    return SmokeResult(name, device, True, round(seconds, 4))


def _say(event: str, **values: object) -> None:
    print(_MARK + json.dumps({"event": event, **values}), flush=True)


def main(names: list[str]) -> int:
    rows = np.random.default_rng(0).standard_normal((ROWS, DIM), dtype=np.float32)
    for name in names:
        try:
            devices = _devices(name)
        except Exception as error:  # a device probe failing is a finding too
            _say("done", **_failure(name, "-", error).__dict__)
            continue
        for device in devices:
            _say("start", clusterer=name, device=device)
            try:
                result = _one(name, device, rows)
            except Exception as error:  # CUDA error 209 and the like: a finding, not a crash
                result = _failure(name, device, error)
            _say("done", **result.__dict__)
    return 0


def _failure(name: str, device: str, error: Exception) -> SmokeResult:
    return SmokeResult(name, device, False, None, f"{type(error).__name__}: {error}")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
