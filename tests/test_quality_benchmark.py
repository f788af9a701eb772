"""benchmarks/quality.py on a tiny CIFAR-like image folder: trained vs random init, an
ablation, the JSON, the tables and the plot."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "benchmarks" / "quality.py"
sys.path.insert(0, str(SCRIPT.parent))  # the script's package sits beside it
from quality_bench import console, settings, train  # noqa: E402

# Three classes a colour and a stripe direction apart: learnable in two tiny epochs.
COLOURS = ((200, 40, 40), (40, 180, 60), (50, 60, 210))

RECIPE = """
schema_version = 1
[run]
name = "tiny"
seed = 5
epochs = 1
output_dir = "runs"
device = "cpu"
workers = 0
view_cache_gib = 0.01
[data]
name = "imagefolder"
root = "set-by-the-benchmark"
[backbone]
name = "alexnet"
small_input = true
width = 0.125
fc_dim = 32
[[preprocess]]
name = "pca"
dim = 8
[[preprocess]]
name = "l2"
[clusterer]
name = "faiss-kmeans"
k = 6
[sampler]
name = "uniform"
[optimizer]
batch_size = 16
"""


def load_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("quality_benchmark", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while it loads
    spec.loader.exec_module(module)
    return module


def make_split(root: Path, per_class: int, seed: int) -> None:
    """``per_class`` 32x32 PNGs per class: the class colour, noise, class-wise stripes."""
    rng = np.random.default_rng(seed)
    for label, colour in enumerate(COLOURS):
        folder = root / f"class{label}"
        folder.mkdir(parents=True)
        for i in range(per_class):
            pixels = np.array(colour, float) + rng.normal(0, 25, (32, 32, 3))
            stripes = (np.indices((32, 32))[label % 2] // 4) % 2 == 0
            pixels[stripes] *= 0.5
            image = np.clip(pixels, 0, 255).astype(np.uint8)
            Image.fromarray(image).save(folder / f"{i:03d}.png")


def run_script(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args], capture_output=True, text=True, cwd=cwd, timeout=600
    )


@pytest.mark.slow
def test_benchmark_trains_evaluates_and_reports(tmp_path: Path) -> None:
    make_split(tmp_path / "train", per_class=20, seed=0)
    make_split(tmp_path / "test", per_class=10, seed=1)
    recipe = tmp_path / "tiny.toml"
    recipe.write_text(RECIPE)
    out = tmp_path / "quality"
    done = run_script(
        str(recipe),
        "--train-dir",
        str(tmp_path / "train"),
        "--val-dir",
        str(tmp_path / "test"),
        "--budget-min",
        "0.1",  # 6 s: the first epoch always runs, a second one only if it fits
        "--max-epochs",
        "2",
        "--probe-epochs",
        "2",
        "--variant",
        "more_clusters=clusterer.k=9",
        "--out",
        str(out),
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr

    report = json.loads((out / "quality.json").read_text())
    assert set(report["variants"]) == {"baseline", "more_clusters"}
    assert set(report["models"]) == {"baseline", "more_clusters", "random"}  # same architecture
    assert report["machine"]["cores"] >= 1 and report["machine"]["torch"]
    assert report["data"]["train_images"] == 60 and report["data"]["val_images"] == 30
    random = report["models"]["random"]
    for name, variant in report["variants"].items():
        trained = report["models"][name]
        assert trained["kind"] == "trained" and variant["random_model"] == "random"
        assert set(trained["knn"]) == set(random["knn"]) == {"embed", "conv4", "conv5"}
        assert set(trained["linear"]) == set(random["linear"]) == {f"conv{i}" for i in range(1, 6)}
        for model in (trained, random):
            assert all(0 <= v <= 100 for v in model["knn"].values())
            for scores in model["linear"].values():
                assert all(0 <= scores[s]["mean"] <= 100 for s in ("last", "best", "mean_last_10"))
        gain = variant["gain_over_random"]
        for layer, points in gain["knn"].items():
            assert points == pytest.approx(trained["knn"][layer] - random["knn"][layer], abs=0.01)
        for layer, points in gain["linear"].items():
            for stat, value in points.items():
                expected = (
                    trained["linear"][layer][stat]["mean"] - random["linear"][layer][stat]["mean"]
                )
                assert value == pytest.approx(expected, abs=0.01)
        training = variant["training"]
        assert 1 <= training["epochs"] <= 2 and len(training["call_seconds"]) == training["epochs"]
        assert len(variant["signal"]) == training["epochs"]
        assert all(0 <= row["knn_percent"] <= 100 for row in variant["signal"])
        assert training["seconds"] == pytest.approx(sum(training["call_seconds"]), abs=0.2)
        if training["epochs"] == 2:  # the second epoch was predicted to fit
            assert 2 * training["call_seconds"][0] <= 6
    ablation = report["variants"]["more_clusters"]
    assert ablation["overrides"] == ["clusterer.k=9"]
    base, other = report["models"]["baseline"], report["models"]["more_clusters"]
    for layer, points in ablation["gain_over_baseline"]["knn"].items():
        assert points == pytest.approx(other["knn"][layer] - base["knn"][layer], abs=0.01)
    assert ablation["best_knn_vs_baseline"] == pytest.approx(
        max(other["knn"].values()) - max(base["knn"].values()), abs=0.01
    )

    assert (out / "signal.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    table = (out / "quality.md").read_text()
    assert "| layer | kNN top-1 random → trained" in table
    assert "| more_clusters | `clusterer.k=9` |" in table
    assert table.strip() in done.stdout  # printed too


@pytest.mark.parametrize(
    ("variant", "message"),
    [
        ("nokeys", "expected NAME=key=value"),
        ("x=lr0.1", "is not section.key=value"),
        ("baseline=optimizer.lr=0.1", "must be letters"),
    ],
)
def test_bad_variant_is_a_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], variant: str, message: str
) -> None:
    recipe = tmp_path / "tiny.toml"
    recipe.write_text(RECIPE)
    args = [str(recipe), "--train-dir", str(tmp_path), "--budget-min", "1"]
    code = load_script().main([*args, "--variant", variant, "--out", str(tmp_path / "q")])
    err = capsys.readouterr().err
    assert code == 2
    assert message in err and "Traceback" not in err
    assert not (tmp_path / "q").exists()  # nothing trained


def test_missing_recipe_and_failing_command(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    script = load_script()
    common = ["--train-dir", str(tmp_path), "--budget-min", "1", "--out", str(tmp_path / "q")]
    assert script.main([str(tmp_path / "absent.toml"), *common]) == 2
    assert "is not a file" in capsys.readouterr().err
    recipe = tmp_path / "tiny.toml"
    recipe.write_text(RECIPE)
    assert script.main([str(recipe), *common, "--set", "optimizer.bogus=1"]) == 2
    err = capsys.readouterr().err
    assert "baseline: the recipe failed" in err and "optimizer.bogus" in err


def test_an_epoch_starts_only_while_the_latest_call_predicts_it_fits() -> None:
    fits = train.next_epoch_fits
    assert fits([], budget_s=1, cap=None)  # the first epoch always runs
    assert fits([30.0, 10.0], budget_s=50, cap=None)  # 40 + the latest 10 fits
    assert not fits([30.0, 10.0], budget_s=49, cap=None)
    assert not fits([1.0, 1.0], budget_s=100, cap=2)


def test_variant_syntax_keeps_list_values_whole() -> None:
    variant = settings.parse_variant("both=optimizer.lr=0.1, augment.x=[1, 2],run.seed=3")
    assert variant.name == "both"
    assert variant.overrides == ("optimizer.lr=0.1", "augment.x=[1, 2]", "run.seed=3")


def test_training_reads_the_unlabelled_folder_when_given(tmp_path: Path) -> None:
    recipe = tmp_path / "tiny.toml"
    recipe.write_text(RECIPE)
    (tmp_path / "labelled").mkdir()
    (tmp_path / "all").mkdir()
    common = [str(recipe), "--train-dir", str(tmp_path / "labelled"), "--budget-min", "1"]
    common += ["--out", str(tmp_path / "q")]
    plans = train.plan_variants(settings.parse_settings(common, SCRIPT))
    assert plans[0].recipe["data"]["root"] == str((tmp_path / "labelled").resolve())
    args = settings.parse_settings([*common, "--unlabelled-dir", str(tmp_path / "all")], SCRIPT)
    plans = train.plan_variants(args)
    assert plans[0].recipe["data"]["root"] == str((tmp_path / "all").resolve())
    args = replace(args, unlabelled_dir=tmp_path / "absent")  # Settings are frozen
    with pytest.raises(console.BenchmarkError, match="absent.*is not a folder"):
        train.plan_variants(args)
