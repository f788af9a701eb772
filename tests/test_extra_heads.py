"""Issue 14, item 4: several clusterings per epoch (``clusterer.extra_k``), each with a top
layer of its own on the shared trunk; off by default, so the paper's protocol is unchanged."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from dcframe import engine, recipe
from dcframe.components.backbones import AlexNet, AlexNetParams
from dcframe.core.errors import UserError
from dcframe.core.progress import Reporter
from dcframe.engine.training import WithExtraHeads, mean_cross_entropy
from tests.conftest import run_cli

QUIET = Reporter(quiet=True)
EXTRA = "clusterer.extra_k=[7, 30]"


def train(path: Path, *overrides: str) -> Path:
    return engine.run(recipe.load(path, list(overrides)), reporter=QUIET).path


def records(rundir: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in (rundir / "metrics.jsonl").read_text().splitlines()]


def test_off_by_default_and_checked(tiny_recipe: Path) -> None:
    assert recipe.load(tiny_recipe, []).clusterer.extra_k == []
    with pytest.raises(UserError, match=r"clusterer.extra_k\[0\]: Input should be greater"):
        recipe.load(tiny_recipe, ["clusterer.extra_k=[1]"])
    too_big = run_cli("run", str(tiny_recipe), "--set", "clusterer.extra_k=[7, 400]")
    assert too_big.code == 2 and "Traceback" not in too_big.stderr
    assert "clusterer.extra_k: [400] clusters but the dataset has only 360 images" in " ".join(
        too_big.stderr.split()
    )
    assert not (tiny_recipe.parent / "runs" / "tiny" / "checkpoint.pt").exists()


def test_heads_share_the_trunk_and_the_loss_is_their_mean() -> None:
    torch.manual_seed(0)
    backbone = AlexNet(AlexNetParams(small_input=True, width=0.125, fc_dim=32))
    backbone.reset_top_layer(5)
    extra = nn.ModuleList([backbone.new_head(3), backbone.new_head(9)])
    model = WithExtraHeads(backbone, extra).eval()
    x = torch.randn(4, 3, 32, 32)
    logits = model(x)
    assert [t.shape for t in logits] == [(4, 5), (4, 3), (4, 9)]
    torch.testing.assert_close(logits[0], backbone(x))  # the network's own head comes first
    inputs = backbone.head_activation(backbone.embed(x))
    torch.testing.assert_close(logits[2], extra[1](inputs))
    targets = [torch.tensor([0, 1, 2, 4]), torch.tensor([0, 2, 2, 1]), torch.tensor([8, 0, 1, 3])]
    each = [nn.functional.cross_entropy(o, t) for o, t in zip(logits, targets, strict=True)]
    expected = sum(each) / 3
    torch.testing.assert_close(mean_cross_entropy(logits, targets), expected)
    # One head: exactly the paper's loss, the same float operations.
    assert torch.equal(
        mean_cross_entropy(logits[0], targets[:1]), nn.CrossEntropyLoss()(logits[0], targets[0])
    )


def test_a_run_clusters_once_per_k_and_records_every_clustering(tiny_recipe: Path) -> None:
    plain = train(tiny_recipe)
    extra = train(tiny_recipe, EXTRA, "run.name=extra")
    first = records(extra)[0]
    assert first["extra_k"] == [7, 30]
    assert len(first["extra_nmi_vs_labels"]) == len(first["extra_empty_clusters"]) == 2
    assert all(0 < v < 1 for v in first["extra_nmi_vs_labels"])
    assert all(np.isfinite(r["train_loss"]) for r in records(extra))
    # The clustering with k is the paper's: epoch 0 (same random network) assigns alike.
    np.testing.assert_array_equal(
        np.load(plain / "assignments" / "epoch_0000.npy"),
        np.load(extra / "assignments" / "epoch_0000.npy"),
    )
    assert records(plain)[0]["nmi_vs_labels"] == first["nmi_vs_labels"]
    assert "extra_k" not in records(plain)[0]
    # The extra heads' gradients reach the trunk: the same run trains differently.
    assert records(plain)[0]["train_loss"] != first["train_loss"]
    # The checkpoint keeps the network's own top layer only: it loads like any other run.
    state = torch.load(extra / "checkpoint.pt", weights_only=True)
    assert state["k"] == 20 and state["model"]["top_layer.weight"].shape[0] == 20


def test_extra_heads_start_from_their_clusters(tiny_recipe: Path) -> None:
    rundir = train(tiny_recipe, EXTRA, "optimizer.top_init=centroids", "run.name=centroids")
    losses = [r["train_loss"] for r in records(rundir)]
    assert all(np.isfinite(losses)) and losses[0] < 5  # log(30) = 3.4: no divergence
