"""Issue 10: DeepCluster over several processes (torchrun, gloo on the CPU) against one process.

The equality runs use ``run.sync_batchnorm = true`` and ``backbone.dropout = 0``: with both,
a distributed run computes what one process computes, up to float summation order; without
them, BatchNorm statistics and dropout masks are per process, as in any DDP training.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from dcframe.store import clusterings
from tests.conftest import EXACT, REPO, dcframe, without_report
from tests.test_clusters import reproduction

pytestmark = pytest.mark.slow

CHILD = str(Path(__file__).with_name("kill_child.py"))
EXTRA_K = "clusterer.extra_k=[7, 30]"
WEIGHTS_ATOL = 1e-5  # float summation order (all-reduce, split batches) differs, nothing else


def torchrun_script(
    script: str, *args: str, nproc: int, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc-per-node={nproc}",
        script,
        *without_report(args),
    ]
    return subprocess.run(
        command,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, **(env or {})},
    )


def assignments(rundir: Path) -> list[np.ndarray]:
    return [np.load(p) for p in sorted((rundir / "assignments").glob("epoch_*.npy"))]


def records(rundir: Path) -> list[dict[str, object]]:
    lines = (rundir / "metrics.jsonl").read_text().splitlines()
    return [{k: v for k, v in json.loads(x).items() if k != "seconds"} for x in lines]


def same_results(left: Path, right: Path, exact: bool = False) -> None:
    """Equal assignments and metric fields; weights equal (``exact``) or within tolerance."""
    for a, b in zip(assignments(left), assignments(right), strict=True):
        np.testing.assert_array_equal(a, b)
    a_records, b_records = records(left), records(right)
    assert [sorted(r) for r in a_records] == [sorted(r) for r in b_records]
    for a, b in zip(a_records, b_records, strict=True):
        for key, value in a.items():
            floats = isinstance(value, list) and all(isinstance(v, float) for v in value)
            if isinstance(value, float) or (value and floats):
                assert b[key] == pytest.approx(value, rel=1e-5), key
            else:
                assert b[key] == value, key
    a_model = torch.load(left / "checkpoint.pt", weights_only=True)["model"]
    b_model = torch.load(right / "checkpoint.pt", weights_only=True)["model"]
    assert a_model.keys() == b_model.keys()
    for key, value in a_model.items():
        if exact:
            assert torch.equal(value, b_model[key]), key
        else:
            torch.testing.assert_close(b_model[key], value, rtol=0, atol=WEIGHTS_ATOL, msg=key)


def assign_reproduces(one: Path, two: Path) -> None:
    """Issue 25: placing a run's images with its last saved clustering gives back that
    epoch's clusters, whether one process or two clustered them; the two saved
    clusterings agree (centroids within float summation order)."""
    for run in (one, two):
        agreement, gap = reproduction(run)
        print(f"{run.name}: agreement per head {agreement}, largest distance gap {gap:.2e}")
        assert min(agreement) >= 0.99 and gap < 1e-4, (run, agreement, gap)
    saved = [clusterings.load(run / "clusters" / "epoch_0001.npz") for run in (one, two)]
    for a, b in zip(saved[0].heads, saved[1].heads, strict=True):
        np.testing.assert_allclose(b.centroids, a.centroids, rtol=0, atol=1e-4)


def test_two_processes_equal_one_process(recipe_file: Path, one_process: Path) -> None:
    done = dcframe("run", str(recipe_file), "--quiet", "--set", "run.name=two", *EXACT, nproc=2)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines() == [str(recipe_file.parent / "runs" / "two")]
    same_results(one_process, recipe_file.parent / "runs" / "two")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_two_nodes_on_loopback_equal_one_process(recipe_file: Path, one_process: Path) -> None:
    endpoint = f"127.0.0.1:{free_port()}"
    nodes = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "torch.distributed.run",
                "--nnodes=2",
                "--nproc-per-node=1",
                "--rdzv-backend=c10d",
                f"--rdzv-endpoint={endpoint}",
                "--rdzv-id=dcframe-test",
                "--max-restarts=0",
                "-m",
                "dcframe",
                "run",
                str(recipe_file),
                "--quiet",
                "--set",
                "run.name=nodes",
                *EXACT,
            ],
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    outcomes = [(node.wait(timeout=600), node.stderr.read()) for node in nodes]  # type: ignore[union-attr]
    assert [code for code, _ in outcomes] == [0, 0], outcomes
    same_results(one_process, recipe_file.parent / "runs" / "nodes")


@pytest.mark.parametrize(
    ("first", "then"),
    [(2, 1), pytest.param(1, 2, marks=pytest.mark.long)],
    ids=["2-then-1", "1-then-2"],
)
def test_resume_on_another_number_of_processes(
    recipe_file: Path, one_process: Path, first: int, then: int
) -> None:
    name = f"--set=run.name=resumed-{first}-{then}"
    done = dcframe(
        "run", str(recipe_file), "--quiet", name, "--set", "run.epochs=1", *EXACT, nproc=first
    )
    assert done.returncode == 0, done.stderr
    done = dcframe("run", str(recipe_file), "--quiet", "--resume", name, *EXACT, nproc=then)
    assert done.returncode == 0, done.stderr
    same_results(one_process, recipe_file.parent / "runs" / f"resumed-{first}-{then}")


def test_a_killed_process_stops_the_others_and_the_run_resumes(
    recipe_file: Path, one_process: Path
) -> None:
    """Rank 1 dies by SIGKILL in epoch 1's training; torchrun then stops rank 0 (whose two
    loader workers get the signal too, issue 24's finding 1): rank 0 says so in one line,
    without a traceback, keeps the last finished epoch, and the run resumes."""
    args = ["run", str(recipe_file), "--quiet", "--set", "run.name=killed", *EXACT]
    env = {"KILL_RANK": "1"}
    killed = torchrun_script(CHILD, "train", "2", *args, "--set", "run.workers=2", nproc=2, env=env)
    assert killed.returncode != 0
    assert "Signal 9 (SIGKILL)" in killed.stderr or "exitcode  : -9" in killed.stderr
    assert "internal error" not in killed.stderr and "DataLoader worker" not in killed.stderr
    said = " ".join(killed.stderr.split())
    assert "another process of the run" in said and "checkpoint.pt keeps epoch 0" in said
    rundir = recipe_file.parent / "runs" / "killed"
    state = torch.load(rundir / "checkpoint.pt", weights_only=True)
    assert state["epoch"] == 1 and "step" not in state
    resumed = dcframe(*args, "--resume", nproc=2)
    assert resumed.returncode == 0, resumed.stderr
    same_results(one_process, rundir)


# One head: also `test_r3_signals.py`'s group stop in training (bit for bit); long only.
@pytest.mark.parametrize(
    "heads", [pytest.param(1, marks=pytest.mark.long), 3], ids=["one-head", "extra-heads"]
)
def test_sigterm_mid_epoch_saves_and_resumes_to_the_same_run(recipe_file: Path, heads: int) -> None:
    """One process, bit for bit: stopped by SIGTERM in epoch 1, within its 6 steps; with
    ``clusterer.extra_k``, the extra heads and their assignments resume too."""
    every = ["--set", "sampler.reassign=1.0", "--set", "run.checkpoint_every_steps=2"]
    if heads > 1:
        every += ["--set", EXTRA_K]
    straight = f"run.name=straight-{heads}"
    done = dcframe("run", str(recipe_file), "--quiet", "--set", straight, *every)
    assert done.returncode == 0, done.stderr
    args = ["run", str(recipe_file), "--quiet", "--set", f"run.name=stopped-{heads}", *every]
    stopped = subprocess.run(
        [sys.executable, CHILD, "sigterm", "2", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert stopped.returncode == 128 + signal.SIGTERM, stopped.stderr
    rundir = recipe_file.parent / "runs" / f"stopped-{heads}"
    state = torch.load(rundir / "checkpoint.pt", weights_only=True)
    # The signal comes while the loader thread prepares batch 3, so during step 1 to 3.
    assert state["epoch"] == 1 and 1 <= state["step"] <= 3
    assert len(state["partial"].get("extra_heads", {})) == 2 * (heads - 1)  # weight, bias
    message = f"stopped by SIGTERM at training step {state['step']}"
    assert message in " ".join(stopped.stderr.split())
    resumed = dcframe(*args, "--resume")
    assert resumed.returncode == 0, resumed.stderr
    same_results(recipe_file.parent / "runs" / f"straight-{heads}", rundir, exact=True)


@pytest.mark.long  # by default: test_r3_signals.py, torchrun passing a stop to both ranks
def test_sigterm_stops_every_process_and_the_run_resumes(
    recipe_file: Path, one_process: Path
) -> None:
    """Two processes: SIGTERM reaches rank 0 only; both save (once) and stop, then resume."""
    args = ["run", str(recipe_file), "--quiet", "--set", "run.name=preempted", *EXACT]
    stopped = torchrun_script(CHILD, "sigterm", "2", *args, nproc=2, env={"KILL_RANK": "0"})
    assert stopped.returncode != 0
    assert "stopped by SIGTERM" in stopped.stderr
    rundir = recipe_file.parent / "runs" / "preempted"
    assert "step" in torch.load(rundir / "checkpoint.pt", weights_only=True)
    resumed = dcframe(*args, "--resume", nproc=2)
    assert resumed.returncode == 0, resumed.stderr
    same_results(one_process, rundir)


def test_extra_heads_train_alike_in_two_processes(recipe_file: Path) -> None:
    """``clusterer.extra_k``: DDP wraps the network with its extra heads; same run."""
    args = ["run", str(recipe_file), "--quiet", "--set", EXTRA_K, *EXACT]
    one = dcframe(*args, "--set", "run.name=heads-one")
    assert one.returncode == 0, one.stderr
    two = dcframe(*args, "--set", "run.name=heads-two", nproc=2)
    assert two.returncode == 0, two.stderr
    runs = recipe_file.parent / "runs"
    same_results(runs / "heads-one", runs / "heads-two")
    assign_reproduces(runs / "heads-one", runs / "heads-two")


def test_a_distributed_clusterer_clusters_the_shards_like_one_process(recipe_file: Path) -> None:
    """torch-kmeans clusters where the rows are (no process holds them all), same result."""
    torch_kmeans = ["--set", "clusterer.name=torch-kmeans", *EXACT]
    one = dcframe("run", str(recipe_file), "--quiet", "--set", "run.name=tk-one", *torch_kmeans)
    assert one.returncode == 0, one.stderr
    two = dcframe(
        "run", str(recipe_file), "--quiet", "--set", "run.name=tk-two", *torch_kmeans, nproc=2
    )
    assert two.returncode == 0, two.stderr
    runs = recipe_file.parent / "runs"
    same_results(runs / "tk-one", runs / "tk-two")
    assign_reproduces(runs / "tk-one", runs / "tk-two")


def test_dcframe_run_nproc_launches_through_torchrun(recipe_file: Path, one_process: Path) -> None:
    done = dcframe(
        "run", str(recipe_file), "--quiet", "--nproc", "2", "--set=run.name=nproc", *EXACT
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines() == [str(recipe_file.parent / "runs" / "nproc")]
    same_results(one_process, recipe_file.parent / "runs" / "nproc")


def test_dcframe_run_nproc_passes_on_a_worker_s_exit_code(recipe_file: Path) -> None:
    done = dcframe(
        "run", str(recipe_file), "--quiet", "--nproc", "2", "--set", "optimizer.batch_size=63"
    )
    assert done.returncode == 2
    assert "do not split evenly over 2 processes" in done.stderr
