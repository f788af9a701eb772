"""Issue 25: the clusters as a product. A run keeps what defines its clusterings; ``dcframe
clusters`` lists (and sorts into folders) every image by cluster; ``dcframe assign`` and
``dcframe.load_clustering`` place new images in them."""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import dcframe
from dcframe import engine, recipe
from dcframe.clusters.listing import ImageClusters, run_clusters, run_dataset
from dcframe.clusters.model import load_clustering
from dcframe.core.progress import Reporter
from dcframe.store.rundir import RunDirectory
from tests.conftest import TINY_RECIPE, invoke, make_distribution

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three epochs of the tiny recipe on the 360 test digits, with an extra head of 7
    clusters, keeping every second epoch's clustering (so epoch 1, and 2 as the latest)."""
    folder = tmp_path_factory.mktemp("clusters")
    path = folder / "tiny.toml"
    path.write_text(TINY_RECIPE.format(output_dir=folder / "runs"))
    options = ["run.epochs=3", "run.keep_clusters_every=2", "clusterer.extra_k=[7]"]
    return engine.run(recipe.load(path, options), reporter=Reporter(quiet=True)).path


def reproduction(run: Path, epoch: int | None = None) -> tuple[list[float], float]:
    """How far placing the run's own images with an epoch's saved clustering gives back
    that epoch's clustering: the fraction of images in the same cluster, per head, and the
    largest difference of the distance to the centroid."""
    saved = run_clusters(run, epoch)
    again = load_clustering(run, epoch).assign(run_dataset(RunDirectory(run)))
    agreement = (again.clusters == saved.clusters).mean(axis=1).tolist()
    return agreement, float(np.nanmax(np.abs(again.distances - saved.distances)))


def read_csv(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


# ------------------------------------------------------------------ the saved clusterings


def test_a_run_keeps_the_latest_clustering_and_every_nth(digits_run: Path) -> None:
    kept = sorted(p.name for p in (digits_run / "clusters").iterdir())
    assert kept == ["epoch_0001.npz", "epoch_0002.npz"]
    model = load_clustering(digits_run)
    assert model.epoch == 2 and model.ks == [20, 7]
    assert "epoch 2" in repr(model) and "k=20+7" in repr(model)


def test_the_export_equals_the_saved_assignment_for_every_kind_of_dataset(
    format_runs: dict[str, Path], digits_run: Path
) -> None:
    runs = {**format_runs, "sklearn-digits": digits_run}
    for name, run in runs.items():
        epochs = len(RunDirectory(run).metrics())
        for epoch in range(epochs):
            table = run_clusters(run, epoch)
            saved = np.load(run / "assignments" / f"epoch_{epoch:04d}.npy")
            np.testing.assert_array_equal(table.clusters[0], saved, err_msg=name)
            squared = np.load(run / "distances" / f"epoch_{epoch:04d}.npy")
            np.testing.assert_allclose(table.distances**2, squared, rtol=1e-5, err_msg=name)
            assert table.labels is not None and len(table.labels) == len(saved)
    folder_ids = run_clusters(format_runs["imagefolder"]).ids
    assert all(Path(i).is_file() for i in folder_ids)
    assert [Path(i).name for i in run_clusters(format_runs["filelist"]).ids] == [
        Path(i).name for i in folder_ids
    ]
    shard_ids = run_clusters(format_runs["webdataset"]).ids
    assert shard_ids[0].endswith("digits-0.tar:0_0000.png"), shard_ids[0]
    assert run_clusters(digits_run).ids[:3] == ["0", "1", "2"]
    # the extra head is listed where the epoch's clustering is kept, not elsewhere
    assert run_clusters(digits_run, 1).ks == [20, 7]
    assert run_clusters(digits_run, 0).ks == [20]


def test_the_command_writes_the_same_rows_as_csv_jsonl_and_parquet(
    digits_run: Path, tmp_path: Path
) -> None:
    saved = np.load(digits_run / "assignments" / "epoch_0002.npy")
    shown = invoke("clusters", str(digits_run))
    assert shown.code == 0, shown.stderr
    rows = read_csv(shown.stdout)
    columns = ["index", "image", "cluster", "distance", "rank", "label", "cluster_k7"]
    assert list(rows[0]) == columns
    assert [int(r["cluster"]) for r in rows] == saved.tolist()
    for suffix in (".jsonl", ".parquet"):
        out = tmp_path / f"clusters{suffix}"
        done = invoke("clusters", str(digits_run), "--out", str(out))
        assert done.code == 0, done.stderr
        assert f"wrote {out}: 360 images in" in done.stderr
        if suffix == ".jsonl":
            records = [json.loads(line) for line in out.read_text().splitlines()]
        else:
            pyarrow_parquet = pytest.importorskip("pyarrow.parquet")
            records = pyarrow_parquet.read_table(out).to_pylist()
        assert [r["cluster"] for r in records] == saved.tolist()
        assert [r["rank"] for r in records] == [int(r["rank"]) for r in rows]


def test_ranks_count_from_the_nearest_image_of_each_cluster() -> None:
    table = ImageClusters(
        ids=list("abcdef"),
        files=[None] * 6,
        ks=[3],
        clusters=np.array([[1, 0, 1, -1, 1, 0]]),
        distances=np.array([0.5, 0.2, 0.1, np.nan, 0.5, 0.9], np.float32),
        labels=None,
        image=lambda i: Image.new("RGB", (2, 2)),
    )
    assert table.ranks().tolist() == [2, 1, 1, 0, 3, 2]  # ties: by position
    rows = list(table.rows())
    assert rows[3]["cluster"] is None and rows[3]["rank"] is None and rows[3]["distance"] is None


# ------------------------------------------------------------------ new images


def test_assigning_the_run_s_images_reproduces_its_clustering(digits_run: Path) -> None:
    """Same trunk, same preprocessing, same centroids: the same clusters (what may differ:
    float rounding of a batch computed in another grouping, at a near-tie)."""
    for epoch in (1, 2):
        agreement, gap = reproduction(digits_run, epoch)
        print(f"epoch {epoch}: agreement per head {agreement}, largest distance gap {gap:.2e}")
        assert min(agreement) >= 0.99, agreement
        assert gap < 1e-4


def test_assign_places_files_folders_and_pil_images_alike(digits_run: Path, tmp_path: Path) -> None:
    dataset = run_dataset(RunDirectory(digits_run))
    folder = tmp_path / "new" / "nested"
    folder.mkdir(parents=True)
    images = [dataset.image(i) for i in range(6)]
    for i, image in enumerate(images):
        image.save(folder / f"{i}.png")
    from_files = invoke("assign", str(digits_run), str(tmp_path / "new"))
    assert from_files.code == 0, from_files.stderr
    rows = read_csv(from_files.stdout)
    assert [Path(r["image"]).name for r in rows] == [f"{i}.png" for i in range(6)]
    placed = dcframe.load_clustering(digits_run).assign(images)
    assert [int(r["cluster"]) for r in rows] == placed.clusters[0].tolist()
    saved = run_clusters(digits_run)
    np.testing.assert_array_equal(placed.clusters, saved.clusters[:, :6])


def test_unreadable_new_images_follow_the_bad_image_policy(
    digits_run: Path, tmp_path: Path
) -> None:
    run_dataset(RunDirectory(digits_run)).image(0).save(tmp_path / "good.png")
    (tmp_path / "bad.png").write_bytes(b"not a png")
    failed = invoke("assign", str(digits_run), str(tmp_path / "bad.png"), str(tmp_path))
    assert failed.code == 2 and "bad.png" in failed.stderr, failed
    assert "--on-bad-image skip" in failed.stderr
    skipped = invoke("assign", str(digits_run), str(tmp_path), "--on-bad-image", "skip")
    assert skipped.code == 0, skipped.stderr
    by_name = {Path(r["image"]).name: r for r in read_csv(skipped.stdout)}
    assert by_name["bad.png"]["cluster"] == "" and by_name["good.png"]["cluster"] != ""


# ------------------------------------------------------------------ folders


def test_folders_hold_links_nearest_first_largest_cluster_first(
    format_runs: dict[str, Path], tmp_path: Path
) -> None:
    run = format_runs["imagefolder"]
    table = run_clusters(run)
    out = tmp_path / "by-cluster"
    done = invoke("clusters", str(run), "--folders", str(out))
    assert done.code == 0, done.stderr
    folders = sorted(out.iterdir())
    sizes = [int(f.name.split("-")[3]) for f in folders]
    assert sizes == sorted(sizes, reverse=True) and sum(sizes) == len(table)
    first = folders[0]
    cluster = int(first.name.split("-")[2])
    links = sorted(first.iterdir())
    assert all(link.is_symlink() and link.resolve().is_file() for link in links)
    nearest = [i for i in np.flatnonzero(table.clusters[0] == cluster) if table.ranks()[i] == 1]
    assert links[0].resolve() == Path(table.ids[nearest[0]]).resolve()
    again = invoke("clusters", str(run), "--folders", str(out))
    assert again.code == 2 and "not empty" in again.stderr and "--force" in again.stderr
    copies = tmp_path / "copies"
    done = invoke("clusters", str(run), "--folders", str(copies), "--copy")
    assert done.code == 0 and not any(p.is_symlink() for p in copies.rglob("*.png"))


def test_images_without_files_are_written_as_png(digits_run: Path, tmp_path: Path) -> None:
    out = tmp_path / "digits"
    done = invoke("clusters", str(digits_run), "--folders", str(out))
    assert done.code == 0, done.stderr
    pngs = list(out.rglob("*.png"))
    assert len(pngs) == 360 and not any(p.is_symlink() for p in pngs)
    assert Image.open(pngs[0]).size == (8, 8)


# ------------------------------------------------------------------ bad input


def test_bad_input_gets_a_message_and_exit_code_2(digits_run: Path, tmp_path: Path) -> None:
    run = str(digits_run)
    (tmp_path / "exists.csv").write_text("keep me")
    damaged = tmp_path / "damaged.npz"
    damaged.write_bytes((digits_run / "clusters" / "epoch_0002.npz").read_bytes()[:5000])
    copy = Path(shutil.copytree(digits_run, tmp_path / "copy"))
    (copy / "assignments" / "epoch_0000.npy").write_bytes(b"\x93NUMPY cut")
    cases = {
        "not a dcframe run directory": ("clusters", str(tmp_path)),
        "does not exist": ("assign", str(tmp_path / "nowhere"), str(tmp_path)),
        "did not keep the clustering of epoch 0 (kept: 1, 2)": (
            "assign", run, "--epoch", "0", str(tmp_path)
        ),
        "no clustering of epoch 7": ("clusters", run, "--epoch", "7"),
        "epoch_0000.npy is not an array file": ("clusters", str(copy), "--epoch", "0"),
        "not a clustering saved by dcframe": ("assign", str(damaged), str(tmp_path)),
        "the extension says the format": ("clusters", run, "--out", str(tmp_path / "x.txt")),
        "exists; choose another name, or --force": (
            "clusters", run, "--out", str(tmp_path / "exists.csv")
        ),
        "IMAGES: '/no/such.png' does not exist": ("assign", run, "/no/such.png"),
        "give the images to assign": ("assign", run),
        "holds no image": ("assign", run, str(tmp_path / "empty")),
    }  # fmt: skip
    (tmp_path / "empty").mkdir()
    for expected, args in cases.items():
        done = invoke(*args)
        assert done.code == 2, (args, done)
        assert expected in done.stderr, (expected, done.stderr)
        assert "Traceback" not in done.stderr
    assert (tmp_path / "exists.csv").read_text() == "keep me"


CENTRE_MODULE = """
import numpy as np
from dcframe.plugin import Clusterer, ClustererParams, Clustering, Preprocessor, nearest_centroids


class Centre(Preprocessor):
    '''Subtract the mean row (a fitted state, not saved: no state_arrays).'''

    def fit_sample_size(self, num_samples):
        return num_samples

    def fit(self, x):
        self.mean = x.mean(axis=0)

    def transform(self, x):
        return (x - self.mean).astype(np.float32)


class FirstRows(Clusterer):
    '''The first k rows as centroids, each row to the nearest; assign() left out.'''

    Params = ClustererParams

    def cluster(self, x, seed, device):
        centroids = np.ascontiguousarray(x[: self.k], dtype=np.float32)
        placed = nearest_centroids(x, centroids, device)
        return Clustering(placed.assignments, float(placed.distances.sum()), centroids)
"""


def test_a_plugin_step_and_clusterer_without_saved_state_are_named(
    plugin_path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    make_distribution(
        plugin_path,
        "dcframe-centre",
        "0.1",
        {
            "dcframe.preprocessors": {"centre": "dcframe_centre_r4:Centre"},
            "dcframe.clusterers": {"first-rows": "dcframe_centre_r4:FirstRows"},
        },
        {"dcframe_centre_r4": CENTRE_MODULE},
    )
    path = tmp_path / "tiny.toml"
    text = TINY_RECIPE.format(output_dir=tmp_path / "runs")
    text = text.replace('[[preprocess]]\nname = "l2"', '[[preprocess]]\nname = "centre"')
    path.write_text(text.replace('name = "faiss-kmeans"', 'name = "first-rows"'))
    run = engine.run(recipe.load(path, ["run.epochs=1"]), reporter=Reporter()).path
    warned = capsys.readouterr().err
    missing = ("preprocess[1] (Centre) has no state_arrays()", "FirstRows", "implement assign()")
    assert all(text in warned for text in missing), warned
    done = invoke("assign", str(run), "--data", "sklearn-digits", "--data-set", "split=test")
    assert done.code == 2 and all(text in done.stderr for text in missing), done.stderr
    assert invoke("clusters", str(run)).code == 0


def test_a_clustering_file_is_complete_on_its_own(digits_run: Path, tmp_path: Path) -> None:
    moved = tmp_path / "elsewhere.npz"
    shutil.copyfile(digits_run / "clusters" / "epoch_0002.npz", moved)
    image = run_dataset(RunDirectory(digits_run)).image(3)
    from_file = dcframe.load_clustering(moved).assign(image)
    assert from_file.clusters[:, 0].tolist() == run_clusters(digits_run).clusters[:, 3].tolist()
    assert os.path.basename(from_file.ids[0]) == "image 0"
