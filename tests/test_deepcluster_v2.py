"""Issue 27: DeepCluster-v2 as a second method, from the same registries.

The method's parts are checked against hand computations (the loss, the grouping of views,
the memory bank); its runs against the guarantees DeepCluster's have: a run stopped by
SIGTERM mid-epoch or killed in training resumes bit for bit, two processes compute what one
computes, a diverged loss and unreadable images are handled the same way, the report draws
a v2 run, and a third party adds a method through the ``dcframe.methods`` entry points.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from dcframe.components.heads import ProjectionHead
from dcframe.core.distributed import World
from dcframe.methods.deepcluster_v2 import MultiCropNetwork, prototype_loss
from dcframe.methods.memory_bank import MemoryBank
from tests.conftest import EXACT, REPO, dcframe, invoke, make_distribution, run_cli, save_png

CHILD = str(Path(__file__).with_name("kill_child.py"))

V2_RECIPE = """
schema_version = 1
preprocess = []
[method]
name = "deepcluster-v2"
projection_dim = 16
hidden_dim = 32
[run]
name = "{name}"
seed = 5
epochs = 2
output_dir = "{output_dir}"
device = "cpu"
[data]
name = "sklearn-digits"
split = "test"
[backbone]
name = "alexnet"
small_input = true
width = 0.125
fc_dim = 32
[clusterer]
name = "torch-kmeans"
metric = "spherical"
iterations = 10
k = 20
extra_k = [20]
[sampler]
name = "random"
[augment]
large_crops = 2
[optimizer]
batch_size = 64
algorithm = "lars"
lr = 0.3
schedule = "cosine"
warmup_epochs = 0.5
"""


def v2_recipe(folder: Path, name: str = "v2", text: str = V2_RECIPE) -> Path:
    path = folder / f"{name}.toml"
    path.write_text(text.format(name=name, output_dir=folder / "runs"))
    return path


def child(stage: str, args: list[str]) -> subprocess.CompletedProcess[str]:
    """``dcframe ARGS`` stopped (``sigterm``) or killed (``train``) in its 3rd training-view
    pass: the bank's fill, epoch 0, then epoch 1 (``tests/kill_child.py``)."""
    command = [sys.executable, CHILD, stage, "3", *args]
    return subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=600)


def records(rundir: Path) -> list[dict[str, object]]:
    lines = (rundir / "metrics.jsonl").read_text().splitlines()
    return [{k: v for k, v in json.loads(x).items() if k != "seconds"} for x in lines]


def same_v2_run(left: Path, right: Path) -> None:
    """Bit for bit: records, assignments, trunk, projection head and bank."""
    assert records(left) == records(right)
    for name in ("epoch_0000.npy", "epoch_0001.npy"):
        a, b = (np.load(run / "assignments" / name) for run in (left, right))
        np.testing.assert_array_equal(a, b)
    a, b = (torch.load(run / "checkpoint.pt", weights_only=True) for run in (left, right))
    for key in ("model", "body_optimizer"):
        assert str(a[key]) == str(b[key]), key  # tensors print in full precision
    for one, two in ((a["model"], b["model"]), (a["method"]["head"], b["method"]["head"])):
        for name, value in one.items():
            assert torch.equal(value, two[name]), name
    assert torch.equal(a["method"]["bank"]["rows"], b["method"]["bank"]["rows"])


@pytest.fixture(scope="module")
def straight(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two uninterrupted epochs, mid-epoch checkpoints every 2 steps (6 steps an epoch)."""
    folder = tmp_path_factory.mktemp("v2")
    recipe = v2_recipe(folder, "straight")
    done = dcframe("run", str(recipe), "--quiet", "--set", "run.checkpoint_every_steps=2")
    assert done.returncode == 0, done.stderr
    return folder / "runs" / "straight"


# ------------------------------------------------------------------------------ parts


def test_the_loss_is_the_mean_cross_entropy_over_heads_and_views() -> None:
    rng = torch.Generator().manual_seed(0)
    views = [nn.functional.normalize(torch.randn(5, 4, generator=rng), dim=1) for _ in range(3)]
    prototypes = [nn.functional.normalize(torch.randn(k, 4, generator=rng), dim=1) for k in (3, 6)]
    targets = torch.stack([torch.tensor([0, 1, 2, 0, 1]), torch.tensor([5, 4, 3, 2, 1])])
    expected = []
    for c, t in zip(prototypes, targets, strict=True):
        for z in views:
            logits = (z @ c.T / 0.1).double()
            expected.append(float((logits.logsumexp(1) - logits[torch.arange(5), t]).mean()))
    loss = prototype_loss(views, prototypes, targets, temperature=0.1)
    assert float(loss) == pytest.approx(np.mean(expected), rel=1e-5)


def test_views_of_one_size_share_a_forward_pass() -> None:
    """Unit-length projections, one per view, in order; views of one size go through as
    one batch (BatchNorm sees them together), a new size starts a new batch."""
    seen: list[int] = []

    class Trunk(nn.Module):
        def embed(self, x: torch.Tensor) -> torch.Tensor:
            seen.append(len(x))
            return x.mean(dim=(2, 3))

        def head_activation(self, x: torch.Tensor) -> torch.Tensor:
            return x

    head = ProjectionHead(3, 0, 4)  # one linear layer
    network = MultiCropNetwork(Trunk(), head)  # type: ignore[arg-type]
    views = [torch.randn(2, 3, s, s) for s in (8, 8, 4, 4, 4)]
    out = network(views)
    assert seen == [4, 6] and [tuple(z.shape) for z in out] == [(2, 4)] * 5
    assert torch.allclose(out[3].norm(dim=1), torch.ones(2))
    alone = head(views[3].mean(dim=(2, 3)))
    torch.testing.assert_close(out[3], alone)


def test_the_bank_keeps_the_last_rows_and_round_trips() -> None:
    bank = MemoryBank(num_images=5, views=2, dim=3, world=World())
    bank.write(np.array([4, 1]), np.ones((2, 2, 3), np.float32))
    bank.write(np.array([1]), np.full((1, 2, 3), 2, np.float32))
    assert bank.rows[1].tolist() == [[2.0] * 3] * 2 and bank.rows[4, 0, 0] == 1
    assert not bank.rows[[0, 2, 3]].any()
    again = MemoryBank(5, 2, 3, World())
    again.load_state_dict(bank.state_dict())
    np.testing.assert_array_equal(again.rows, bank.rows)
    features = again.features(1, None, clusterer=type("C", (), {"distributed": False})())  # type: ignore[arg-type]
    np.testing.assert_array_equal(features.matrix, bank.rows[:, 1])


# --------------------------------------------------------------------------- recipes


@pytest.mark.parametrize("name", ["deepcluster_v2_resnet50", "cifar10_v2"])
def test_the_paper_recipes_validate(name: str) -> None:
    checked = invoke("recipe", "check", str(REPO / "recipes" / f"{name}.toml"))
    assert checked.code == 0, checked.stderr


@pytest.mark.parametrize(
    ("sets", "message"),
    [
        (["method={name='deepcluster'}"], "multi-crop views are trained by method"),
        (["preprocess=[{name='pca', dim=8}]"], "remove the [[preprocess]] steps"),
        (["augment.small_crops=2"], "backbone 'alexnet' embeds images of 32 px only"),
        (["optimizer.top_init=centroids"], "has no per-epoch top layer"),
    ],
    ids=["v1-multi-crop", "v2-pca", "alexnet-small-crops", "v2-top-init"],
)
def test_what_a_method_cannot_run_is_refused_before_any_work(
    tmp_path: Path, sets: list[str], message: str
) -> None:
    overrides = [arg for s in sets for arg in ("--set", s)]
    done = invoke("run", str(v2_recipe(tmp_path)), "--no-estimate", *overrides)
    assert done.code == 2 and message in done.stderr, done.stderr
    assert "Traceback" not in done.stderr and not (tmp_path / "runs" / "v2").exists()


def test_bench_and_the_estimate_say_they_measure_deepcluster_only(tmp_path: Path) -> None:
    recipe = str(v2_recipe(tmp_path))
    benched = invoke("bench", recipe)
    assert benched.code == 2 and "method 'deepcluster-v2' is not measured yet" in benched.stderr
    with pytest.MonkeyPatch.context() as patch:
        patch.delenv("DCFRAME_NO_ESTIMATE")
        checked = invoke("recipe", "check", recipe)
    assert checked.code == 0 and "no time estimate" in checked.stderr, checked.stderr


# ------------------------------------------------------------------------------ runs


def test_a_v2_run_records_its_clusters_and_learns(straight: Path) -> None:
    lines = records(straight)
    assert [r["epoch"] for r in lines] == [0, 1]
    assert all(r["extra_k"] == [20] and r["knn_accuracy"] is not None for r in lines)
    assert lines[1]["nmi_vs_previous"] is not None
    state = torch.load(straight / "checkpoint.pt", weights_only=True)
    bank = state["method"]["bank"]["rows"].reshape(360, 2, 16)
    torch.testing.assert_close(bank.norm(dim=2), torch.ones(360, 2))  # every image, unit rows
    assert "pass" not in state["method"] and state["epoch"] == 2
    assert state["body_optimizer"]["param_groups"][0]["trust_coefficient"] == 0.001  # LARS
    listed = invoke("clusters", str(straight))
    assert listed.code == 0 and len(listed.stdout.splitlines()) == 361


def test_sigterm_mid_epoch_then_resume_equals_the_uninterrupted_run(
    straight: Path, tmp_path: Path
) -> None:
    """Stopped within epoch 1's pass (the 3rd training-view pass: the bank's fill, epoch 0,
    epoch 1): the checkpoint holds the pass, its clusters and the half-updated bank."""
    recipe = v2_recipe(tmp_path, "straight")
    args = ["run", str(recipe), "--quiet", "--no-report", "--set", "run.checkpoint_every_steps=2"]
    stopped = child("sigterm", args)
    assert stopped.returncode == 128 + signal.SIGTERM, stopped.stderr
    rundir = tmp_path / "runs" / "straight"
    saved = torch.load(rundir / "checkpoint.pt", weights_only=True)["method"]["pass"]
    assert saved["epoch"] == 1 and 1 <= saved["step"] < 6
    resumed = run_cli(*args, "--resume")
    assert resumed.code == 0, resumed.stderr
    same_v2_run(straight, rundir)


@pytest.mark.long  # the default suite has the SIGTERM resume above, and DeepCluster's kills
def test_killed_in_training_then_resumed_equals_the_uninterrupted_run(
    straight: Path, tmp_path: Path
) -> None:
    recipe = v2_recipe(tmp_path, "straight")
    args = ["run", str(recipe), "--quiet", "--no-report", "--set", "run.checkpoint_every_steps=2"]
    killed = child("train", args)
    assert killed.returncode == -signal.SIGKILL
    resumed = run_cli(*args, "--resume")
    assert resumed.code == 0, resumed.stderr
    same_v2_run(straight, tmp_path / "runs" / "straight")


@pytest.mark.slow
def test_two_processes_equal_one_process(tmp_path: Path) -> None:
    """torchrun, gloo: every process trains on its share of each batch and keeps its block
    of the bank, the bank is clustered where it is (distributed spherical k-means); with
    synchronised BatchNorm and no dropout, one process's clusters and numbers up to float
    summation order. That order matters more here than in DeepCluster: the bank comes from
    the training pass (BatchNorm on sums over processes), not from an eval-mode extraction,
    and softmax(z . c / 0.1) magnifies the prototypes' last bits; the per-step losses of
    both agree to ~1e-6 at first (measured), the weights drift to ~1e-3 in two epochs."""
    recipe = v2_recipe(tmp_path)
    calm = [*EXACT, "--set", "optimizer.algorithm=sgd", "--set", "optimizer.lr=0.005"]
    one = dcframe("run", str(recipe), "--quiet", "--set", "run.name=one", *calm)
    assert one.returncode == 0, one.stderr
    two = dcframe("run", str(recipe), "--quiet", "--set", "run.name=two", *calm, nproc=2)
    assert two.returncode == 0, two.stderr
    left, right = tmp_path / "runs" / "one", tmp_path / "runs" / "two"
    for name in ("epoch_0000.npy", "epoch_0001.npy"):
        a, b = (np.load(run / "assignments" / name) for run in (left, right))
        np.testing.assert_array_equal(a, b)
    for a, b in zip(records(left), records(right), strict=True):
        assert b["kmeans_objective"] == pytest.approx(a["kmeans_objective"], rel=1e-4)
        assert b["train_loss"] == pytest.approx(a["train_loss"], rel=1e-3)
        assert b["nmi_vs_labels"] == pytest.approx(a["nmi_vs_labels"], rel=1e-6)
    a, b = (torch.load(run / "checkpoint.pt", weights_only=True) for run in (left, right))
    trained = [(a["model"], b["model"]), (a["method"]["head"], b["method"]["head"])]
    for one_state, two_state in trained:
        for name, value in one_state.items():
            if "running" not in name and value.is_floating_point():
                torch.testing.assert_close(two_state[name], value, rtol=0, atol=1e-2, msg=name)


def test_a_diverged_loss_stops_with_advice(tmp_path: Path) -> None:
    recipe = v2_recipe(tmp_path)
    diverging = ["--set", "optimizer.algorithm=sgd", "--set", "optimizer.lr=1e30"]
    done = invoke("run", str(recipe), "--quiet", "--no-report", *diverging)
    assert done.code == 2 and "the run diverged" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr


def test_unreadable_images_are_left_out_of_the_bank_and_the_clusters(tmp_path: Path) -> None:
    folder = tmp_path / "images"
    for i in range(40):
        save_png(folder / f"c{i % 2}" / f"{i:02d}.png", value=6 * i, size=(12, 12))
    (folder / "c0" / "broken.png").write_bytes(b"not a png")
    data = f'name = "imagefolder"\nroot = "{folder}"\non_bad_image = "skip"\nmax_bad_fraction = 0.1'
    text = V2_RECIPE.replace('name = "sklearn-digits"\nsplit = "test"', data)
    text = text.replace("k = 20\nextra_k = [20]", "k = 4\nextra_k = [3]")
    text = text.replace("batch_size = 64", "batch_size = 16")
    done = invoke("run", str(v2_recipe(tmp_path, text=text)), "--quiet", "--no-report")
    assert done.code == 0, done.stderr
    rundir = tmp_path / "runs" / "v2"
    broken = sorted(p.name for p in (folder / "c0").iterdir()).index("broken.png")
    for epoch in (0, 1):
        assignment = np.load(rundir / "assignments" / f"epoch_{epoch:04d}.npy")
        assert assignment[broken] == -1 and (np.delete(assignment, broken) >= 0).all()
    assert "broken.png" in (rundir / "skipped_images.tsv").read_text()


def test_the_report_draws_a_v2_run(straight: Path, tmp_path: Path) -> None:
    done = invoke("report", str(straight), "--out", str(tmp_path / "report.html"))
    assert done.code == 0, done.stderr
    page = (tmp_path / "report.html").read_text().lower()
    for section in ("curves", "cluster galleries", "clusters and labels", "stability"):
        assert f"<h2>{section}" in page, section
    assert page.count("<img") >= 4  # the curves, sizes and galleries are drawn


# ------------------------------------------------------------------------ extending


def test_a_third_party_method_runs_from_its_entry_point(plugin_path: Path, tmp_path: Path) -> None:
    """A method in another distribution, found through ``dcframe.methods`` with its own
    validated parameters: it wraps the paper's epoch, and the run uses it."""
    make_distribution(
        plugin_path,
        "dcframe-counting",
        "0.1",
        {"dcframe.methods": {"counting": "counting_method:Counting"}},
        {
            "counting_method": """
                from pydantic import Field
                from dcframe.plugin import Method, Params, deepcluster_epoch

                class CountingParams(Params):
                    label: str = Field("counted", description="Written into each record.")

                class Counting(Method):
                    '''DeepCluster's epoch, each record marked with a label.'''

                    Params = CountingParams

                    def run_epoch(self, epoch, session, previous, resumed):
                        marker = session.recorder.rundir.path / f"counted_{epoch}"
                        marker.write_text(self.params.label)
                        return deepcluster_epoch(epoch, session, previous, resumed)
            """
        },
    )
    v2 = 'name = "deepcluster-v2"\nprojection_dim = 16\nhidden_dim = 32'
    text = V2_RECIPE.replace(v2, 'name = "counting"\nlabel = "mine"')
    text = text.replace("preprocess = []", 'preprocess = [{{name = "l2"}}]')  # .format()ted
    text = text.replace("large_crops = 2", "large_crops = 1")
    text = text.replace("epochs = 2", "epochs = 1")
    done = invoke("run", str(v2_recipe(tmp_path, text=text)), "--quiet", "--no-report")
    assert done.code == 0, done.stderr
    assert (tmp_path / "runs" / "v2" / "counted_0").read_text() == "mine"
    listed = invoke("plugins", "list")
    assert "counting" in listed.stdout
