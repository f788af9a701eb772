"""``dcframe report``: one HTML file per run, in a real browser, on real and hand-made runs."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

from dcframe import engine, recipe
from dcframe.core.metrics_file import json_line
from dcframe.core.progress import Reporter
from dcframe.report import sections
from dcframe.report.clusters import label_stats, match_clusters
from dcframe.store.lock import locked
from tests.conftest import REPO, invoke
from tests.test_docs import CHROMIUM, Chromium, problems_of, serve

QUICKSTART = REPO / "recipes" / "quickstart.toml"
# The quickstart recipe shrunk to seconds: 360 digits, a tiny AlexNet, 20 clusters.
TINY = [
    "backbone.width=0.125",
    "backbone.fc_dim=32",
    "preprocess.0.dim=16",
    "clusterer.k=20",
    "sampler.reassign=0.5",
    "run.view_cache_gib=0",
]
SECTIONS = (
    "overview",
    "curves",
    "sizes",
    "galleries",
    "index",
    "labels",
    "stability",
    "transforms",
    "evaluation",
)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real two-epoch run of the quickstart recipe at tiny settings, made once."""
    out = tmp_path_factory.mktemp("runs")
    overrides = [*TINY, "data.split=test", "run.epochs=2", f"run.output_dir={out}"]
    resolved = recipe.load(QUICKSTART, overrides)
    return engine.run(resolved, reporter=Reporter(quiet=True)).path


def cards(page: str) -> dict[int, list[int]]:
    """The dataset indices shown in each gallery card, in page order."""
    found = {}
    for match in re.finditer(r'<div class="card" id="cluster-(\d+)".*?</div></div>', page):
        found[int(match.group(1))] = [int(i) for i in re.findall(r'data-index="(\d+)"', match[0])]
    return found


def fake_run(
    folder: Path,
    assignments: list[np.ndarray],
    distances: list[np.ndarray] | None,
    planned_epochs: int,
    *overrides: str,
) -> Path:
    """A run directory written by hand: recipe, metrics and the given assignments."""
    data = [] if any(o.startswith("data.name=") for o in overrides) else ["data.split=test"]
    resolved = recipe.load(
        QUICKSTART,
        [
            *TINY,
            *data,
            f"run.epochs={planned_epochs}",
            f"run.output_dir={folder.parent}",
            f"run.name={folder.name}",
            *overrides,
        ],
    )
    folder.mkdir(parents=True)
    (folder / "recipe.toml").write_text(recipe.dumps(resolved))
    for name in ("assignments", "distances"):
        (folder / name).mkdir()
    lines = []
    for epoch, assignment in enumerate(assignments):
        np.save(folder / "assignments" / f"epoch_{epoch:04d}.npy", assignment)
        if distances is not None:
            np.save(folder / "distances" / f"epoch_{epoch:04d}.npy", distances[epoch])
        sizes = np.bincount(assignment[assignment >= 0])
        record = {
            "epoch": epoch,
            "kmeans_objective": 100.0 - epoch,
            "nmi_vs_previous": None if epoch == 0 else 0.5,
            "nmi_vs_labels": None,
            "empty_clusters": 0,
            "cluster_size_min": int(sizes.min()),
            "cluster_size_median": float(np.median(sizes)),
            "cluster_size_max": int(sizes.max()),
            "skipped_images": 0,
            "warnings": [],
            "train_loss": 3.0 - epoch,
            "train_samples": len(assignment),
            "seconds": {"extract": 1.0, "cluster": 0.5, "train": 2.0, "total": 3.5},
        }
        lines.append(json_line(record))
    (folder / "metrics.jsonl").write_text("".join(lines))
    return folder


# ----------------------------------------------------------------------- real run


@pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed (apt-get install chromium)")
def test_report_of_a_real_run_opens_offline_without_errors(tiny_run: Path, tmp_path: Path) -> None:
    assert CHROMIUM is not None
    result = invoke("report", str(tiny_run))
    assert result.code == 0, result.stderr
    report = tiny_run / "report.html"
    assert result.stdout.strip() == str(report)
    page = report.read_text(encoding="utf-8")
    assert not re.search(r'(src|href)="(?!data:|#)', page)  # everything is embedded
    for anchor in ("galleries", "index"):  # the clusters' export commands, with the run
        section = page[page.index(f'<section id="{anchor}">') :]
        section = section[: section.index("</section>")]
        assert f"<code>dcframe clusters {tiny_run} --out clusters.csv</code>" in section, anchor
        assert f"<code>dcframe clusters {tiny_run} --folders by-cluster</code>" in section
        assert f"<code>dcframe assign {tiny_run} IMAGES... --out new.csv</code>" in section
    browser = Chromium(CHROMIUM, tmp_path / "profile")
    try:
        with serve(tiny_run) as base:
            dom, events = browser.load(base + "report.html")
    finally:
        browser.close()
    assert events and problems_of(events, base) == []
    for anchor in SECTIONS:
        assert f'<section id="{anchor}">' in dom, anchor
    assert "20 of 20 clusters" in dom or " of 20 clusters" in dom  # the filter script ran
    shot = tmp_path / "report.png"  # a test artefact: pytest keeps its last tmp folders
    subprocess.run(
        [
            *(CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars"),
            *(f"--screenshot={shot}", "--window-size=1300,2400", report.as_uri()),
        ],
        capture_output=True,
        timeout=120,
        check=True,
    )
    assert Image.open(shot).size == (1300, 2400)


def test_report_shows_the_chosen_epoch_and_eval_results(tiny_run: Path, tmp_path: Path) -> None:
    evals = tiny_run / "eval"
    evals.mkdir(exist_ok=True)
    tags = (("latest", "dcframe", 81.5), ("random-alexnet", "random-init", 42.25))
    for tag, source, top1 in tags:
        payload = {
            "command": "knn",
            "model": {"source": source},
            "results": {"conv5": {"dim": 64, "pooling": "avg", "top1": top1}},
        }
        (evals / f"knn-{tag}.json").write_text(json.dumps(payload))
    out = tmp_path / "epoch0.html"
    assert invoke("report", str(tiny_run), "--epoch", "0", "--out", str(out)).code == 0
    page = out.read_text(encoding="utf-8")
    assert "epoch 0 of" in page and "2 of 2 epochs finished" in page
    evaluation = page[page.index('<section id="evaluation">') :]
    assert "latest" in evaluation and "random-alexnet (random init)" in evaluation
    assert "top-1 81.50" in evaluation and "top-1 42.25" in evaluation
    assert evaluation.index("top-1 81.50") < evaluation.index("top-1 42.25")


# ---------------------------------------------------------------------- fake runs


def test_galleries_show_members_nearest_first(tmp_path: Path) -> None:
    """Known groups: image i is in cluster i % 20; its distance is a known shuffle."""
    n = 360
    assignment = np.arange(n) % 20
    distance = np.random.default_rng(0).permutation(n).astype(np.float32)
    run = fake_run(tmp_path / "groups", [assignment, assignment], [distance, distance], 2)
    assert invoke("report", str(run)).code == 0
    page = (run / "report.html").read_text(encoding="utf-8")
    shown = cards(page)
    assert len(shown) >= 16  # 8 largest, 8 smallest, random others (20 clusters)
    for cluster, indices in shown.items():
        members = np.flatnonzero(assignment == cluster)
        assert set(indices) <= set(members.tolist())
        nearest = members[np.argsort(distance[members])][:8].tolist()
        assert indices[:8] == nearest, cluster
        assert len(indices) == 12 and len(set(indices)) == 12
    assert "nearest to the centroid" in page
    stability = page[page.index('<section id="stability">') :]
    assert "stability" in stability


def test_the_export_commands_of_an_earlier_epoch(tmp_path: Path) -> None:
    """An earlier epoch's report lists its own clusters, and places new images in the last
    epoch's clusters unless the run kept the earlier epoch's (run.keep_clusters_every);
    the page of the last epoch is checked with the real run above."""
    run = tmp_path / "exported"
    earlier = SimpleNamespace(run=SimpleNamespace(path=run, epochs=[0, 1]), epoch=0)
    line = sections._export_commands(earlier)  # type: ignore[arg-type]
    assert f"<code>dcframe clusters {run} --epoch 0 --out clusters.csv</code>" in line
    assert "new images, in the clusters of epoch 1 (epoch 0&#x27;s were not kept)" in line
    assert f"<code>dcframe assign {run} IMAGES... --out new.csv</code>" in line
    (run / "clusters").mkdir(parents=True)
    (run / "clusters" / "epoch_0000.npz").touch()
    line = sections._export_commands(earlier)  # type: ignore[arg-type]
    assert (
        f"new images: <code>dcframe assign {run} --epoch 0 IMAGES... --out new.csv</code>" in line
    )


def test_report_of_a_run_in_progress(tmp_path: Path) -> None:
    """1 of 3 epochs finished, the next one's assignment already written, the lock held."""
    n = 360
    first = np.arange(n) % 20
    run = fake_run(tmp_path / "going", [first], None, 3)
    np.save(run / "assignments" / "epoch_0001.npy", np.zeros(n, dtype=np.int64))
    with locked(run):
        result = invoke("report", str(run))
        assert result.code == 0, result.stderr
        late = invoke("report", str(run), "--epoch", "1")
    assert late.code == 2 and "finished epochs 0 to 0" in late.stderr
    page = (run / "report.html").read_text(encoding="utf-8")
    assert "1 of 3 epochs finished; the run is in progress (pid" in page
    assert "saved no centroid distances" in page  # an older run: random members
    for cluster, indices in cards(page).items():
        assert set(indices) <= set(np.flatnonzero(first == cluster).tolist())
    assert "One epoch only" in page


def test_report_of_a_run_without_labels(tmp_path: Path) -> None:
    images = tmp_path / "images"
    images.mkdir()
    rng = np.random.default_rng(1)
    for i in range(40):
        Image.fromarray(rng.integers(0, 255, (12, 10, 3), dtype=np.uint8)).save(
            images / f"{i:02d}.png"
        )
    first = np.arange(40) % 5
    first[3] = -1  # left out as unreadable
    second = np.roll(first, 1)
    second[3] = -1
    run = fake_run(
        tmp_path / "unlabelled",
        [first, second],
        [np.arange(40, dtype=np.float32)] * 2,
        2,
        "data.name=imagefolder",
        f"data.root={images}",
        "clusterer.k=5",
    )
    result = invoke("report", str(run), "--out", str(tmp_path / "u.html"))
    assert result.code == 0, result.stderr
    page = (tmp_path / "u.html").read_text(encoding="utf-8")
    assert "The dataset has no labels" in page and "majority" not in page
    for anchor in SECTIONS:
        assert f'<section id="{anchor}">' in page
    assert all(3 not in shown for shown in cards(page).values())


# -------------------------------------------------------------------- bad input


def test_bad_input_names_the_fix(tmp_path: Path) -> None:
    missing = invoke("report", str(tmp_path / "nowhere"))
    assert missing.code == 2 and "does not exist" in missing.stderr
    assert "runs/quickstart" in missing.stderr
    (tmp_path / "empty").mkdir()
    not_a_run = invoke("report", str(tmp_path / "empty"))
    assert not_a_run.code == 2 and "not a run directory (it has no recipe.toml)" in not_a_run.stderr
    run = fake_run(tmp_path / "r", [np.arange(360) % 20], None, 2)
    far = invoke("report", str(run), "--epoch", "5")
    assert far.code == 2 and "--epoch 5" in far.stderr and "leave --epoch out" in far.stderr
    folder_out = invoke("report", str(run), "--out", str(tmp_path))
    assert folder_out.code == 2 and "is a folder" in folder_out.stderr
    (run / "metrics.jsonl").write_text("")
    unfinished = invoke("report", str(run))
    assert unfinished.code == 2 and "no finished epoch yet" in unfinished.stderr
    for result in (missing, not_a_run, far, folder_out, unfinished):
        assert "Traceback" not in result.stderr


# ------------------------------------------------------------------------ numbers


def test_matching_ignores_cluster_ids_and_counts_moves() -> None:
    before = np.repeat(np.arange(4), 10)
    renamed = (before + 1) % 4  # the same partition under other ids
    assert match_clusters(before, renamed, 4).changed == 0.0
    moved = renamed.copy()
    moved[:5] = renamed[10]  # half of one cluster joins another
    matching = match_clusters(before, moved, 4)
    assert matching.changed == pytest.approx(5 / 40)
    assert matching.previous_of[renamed[10]] == 1  # the cluster that grew matches its core


def test_label_stats_purity_and_coverage() -> None:
    assignment = np.array([0, 0, 0, 1, 1, 2, -1])
    labels = np.array([0, 0, 1, 1, 1, 1, 0])
    stats = label_stats(assignment, labels, k=3, classes=2)
    np.testing.assert_array_equal(stats.majority, [0, 1, 1])
    np.testing.assert_allclose(stats.purity, [2 / 3, 1, 1])
    np.testing.assert_allclose(stats.class_purity, [2 / 3, 1.0])
    np.testing.assert_allclose(stats.class_coverage, [2 / 2, 3 / 4])
