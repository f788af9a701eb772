"""Reliability round 3, findings 1 and 2: stops sent to a whole process group, and Ctrl-C.

``timeout``, Slurm, torchrun and a terminal signal every process of a group at once, so a
run's DataLoader workers receive the stop too. The run must still stop the way it does when
only its main process is signalled: a checkpoint of the epoch so far (or, during extraction
or clustering, at the end of that stage), exit code 128 + the signal, the resume hint, and a
resume equal to a run that was never stopped.

The processes are real: ``tests/kill_child.py`` runs the command line and sends the signal
to its own process group (``KILL_TARGET=group``; the test starts it in a session of its own
so that pytest is not signalled) or to torchrun (``KILL_TARGET=launcher``), which passes it
on to every rank's process group.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from dcframe.core.stop_signals import SAME_KEYPRESS_S, StopRequest
from tests.conftest import EXACT, REPO, dcframe, without_report
from tests.test_distributed import CHILD, same_results

pytestmark = pytest.mark.slow


def signalled(
    stage: str, call: int, *args: str, env: dict[str, str], nproc: int = 1
) -> subprocess.CompletedProcess[str]:
    """``dcframe ARGS`` through ``kill_child.py``, in a session of its own."""
    launch = [sys.executable, CHILD]
    if nproc > 1:
        launch = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
        launch += [f"--nproc-per-node={nproc}", CHILD]
    return subprocess.run(
        [*launch, stage, str(call), *without_report(args)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, **env},
        start_new_session=True,
    )


def clean_stop(stopped: subprocess.CompletedProcess[str], number: int) -> str:
    """The stop's message, checked: exit 128 + the signal, the hint, no traceback."""
    name = signal.Signals(number).name
    assert stopped.returncode == 128 + number, stopped.stderr
    assert "Traceback" not in stopped.stderr and "internal error" not in stopped.stderr
    assert "DataLoader worker" not in stopped.stderr
    said = " ".join(stopped.stderr.split())
    assert f"stopped by {name}" in said and "continue the run with --resume" in said
    return said


# Both signals, both stages, workers as reported (0 workers: in `test_r3_finding_2_*`, and
# with every other combination in the long profile).
CASES = [("SIGTERM", 2, "train"), ("SIGINT", 2, "extract")]
EVERY_CASE = [
    (name, workers, stage)
    for name in ("SIGTERM", "SIGINT", "SIGUSR1")
    for workers in (0, 2)
    for stage in ("train", "extract")
]


def stop_the_group_and_resume(
    recipe_file: Path, one_process: Path, case: tuple[str, int, str]
) -> None:
    name, workers, stage = case
    rundir_name = f"group-{name}-{workers}-{stage}"
    args = ["run", str(recipe_file), "--quiet", "--set", f"run.name={rundir_name}", *EXACT]
    args += ["--set", f"run.workers={workers}"]
    # Training: the signal comes during epoch 1's training pass. Extraction: during the
    # third extraction call, epoch 1's (epoch 0 extracts its fitting sample, then the rest).
    call = 2 if stage == "train" else 3
    env = {"KILL_SIGNAL": name, "KILL_TARGET": "group"}
    stopped = signalled(stage, call, *args, env=env)
    said = clean_stop(stopped, signal.Signals[name])
    state = torch.load(recipe_file.parent / "runs" / rundir_name / "checkpoint.pt")
    if stage == "train":
        assert state["epoch"] == 1 and state["step"] >= 1, said
        assert f"at training step {state['step']} (checkpoint.pt saved there)" in said
    else:
        assert state["epoch"] == 1 and "step" not in state, said  # epoch 0 done
        assert "after the extraction pass" in said and "checkpoint.pt keeps epoch 0" in said
    resumed = dcframe(*args, "--resume")
    assert resumed.returncode == 0, resumed.stderr
    same_results(one_process, recipe_file.parent / "runs" / rundir_name, exact=True)


@pytest.mark.parametrize("case", CASES, ids=["-".join(map(str, c)) for c in CASES])
def test_r3_finding_1_a_stop_sent_to_the_process_group_stops_cleanly_and_resumes(
    recipe_file: Path, one_process: Path, case: tuple[str, int, str]
) -> None:
    stop_the_group_and_resume(recipe_file, one_process, case)


@pytest.mark.long
@pytest.mark.parametrize("case", EVERY_CASE, ids=["-".join(map(str, c)) for c in EVERY_CASE])
def test_r3_finding_1_every_signal_workers_and_stage(
    recipe_file: Path, one_process: Path, case: tuple[str, int, str]
) -> None:
    stop_the_group_and_resume(recipe_file, one_process, case)


@pytest.mark.parametrize("name", ["SIGTERM", pytest.param("SIGINT", marks=pytest.mark.long)])
def test_r3_finding_1_torchrun_passing_a_stop_to_every_rank_group(
    recipe_file: Path, one_process: Path, name: str
) -> None:
    """Two processes with two loader workers each; torchrun signals every rank's group."""
    rundir_name = f"torchrun-{name}"
    args = ["run", str(recipe_file), "--quiet", "--set", f"run.name={rundir_name}", *EXACT]
    args += ["--set", "run.workers=2"]
    env = {"KILL_SIGNAL": name, "KILL_TARGET": "launcher", "KILL_RANK": "0"}
    stopped = signalled("train", 2, *args, env=env, nproc=2)
    assert "DataLoader worker" not in stopped.stderr and "internal error" not in stopped.stderr
    said = " ".join(stopped.stderr.split())
    assert f"stopped by {name} at training step" in said, stopped.stderr
    assert said.count(f"stopped by {name}") == 1, said  # rank 0 speaks for the run
    state = torch.load(recipe_file.parent / "runs" / rundir_name / "checkpoint.pt")
    assert state["epoch"] == 1 and state["step"] >= 1
    resumed = dcframe(*args, "--resume", nproc=2)
    assert resumed.returncode == 0, resumed.stderr
    same_results(one_process, recipe_file.parent / "runs" / rundir_name)


def test_r3_finding_2_ctrl_c_in_a_run_saves_and_says_how_to_continue(recipe_file: Path) -> None:
    """SIGINT to the main process alone (Ctrl-C where the workers are in another group)."""
    args = ["run", str(recipe_file), "--quiet", "--set", "run.name=ctrl-c"]
    env = {"KILL_SIGNAL": "SIGINT", "KILL_TARGET": "self"}
    stopped = signalled("train", 2, *args, env=env)
    said = clean_stop(stopped, signal.SIGINT)
    assert "Ctrl-C: stopping after the training step in progress" in said
    assert "press Ctrl-C again to abort" in said


def test_r3_finding_2_a_second_ctrl_c_aborts_but_one_keypress_passed_on_twice_does_not() -> None:
    stop = StopRequest()
    stop._handle(signal.SIGINT, None)
    stop._handle(signal.SIGINT, None)  # torchrun passing the same keypress on
    assert stop.signum == signal.SIGINT
    stop.since -= SAME_KEYPRESS_S + 0.1
    with pytest.raises(KeyboardInterrupt):
        stop._handle(signal.SIGINT, None)
    stop._handle(signal.SIGTERM, None)  # a scheduler repeating itself changes nothing


@pytest.mark.parametrize(
    "nproc", [1, pytest.param(2, marks=pytest.mark.long)], ids=["one-process", "nproc-2"]
)
def test_r3_finding_1_the_reported_timeout_stops_the_run_cleanly(
    recipe_file: Path, nproc: int
) -> None:
    """As reported: ``timeout`` signals the whole group of ``dcframe run`` (with
    ``--nproc 2``, torchrun passes it on to each process's group) once the run is going."""
    name = f"timeout-{nproc}"
    rundir = recipe_file.parent / "runs" / name
    args = ["run", str(recipe_file), "--quiet", "--set", f"run.name={name}"]
    args += ["--set", "run.epochs=200", "--set", "run.workers=2", "--nproc", str(nproc)]
    args += ["--no-report"]
    process = subprocess.Popen(
        [sys.executable, "-m", "dcframe", *args],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 300
        while not (rundir / "checkpoint.pt").exists() and process.poll() is None:
            assert time.monotonic() < deadline, "the run did not finish epoch 0"
            time.sleep(0.2)
        os.killpg(process.pid, signal.SIGTERM)
        _, stderr = process.communicate(timeout=300)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    said = clean_stop(subprocess.CompletedProcess(args, process.returncode, "", stderr), 15)
    assert said.count("stopped by SIGTERM") == 1
