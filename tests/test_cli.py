"""The ``dcframe`` command: exit codes, messages, plugins, a full run.

Most tests call the console entry point in-process; a few run the real executable.
"""

from __future__ import annotations

import json
from pathlib import Path

from tests.conftest import REPO, invoke, make_distribution, run_cli
from tests.test_registry import install_minibatch

QUICKSTART = str(REPO / "recipes" / "quickstart.toml")


def test_help_and_version() -> None:
    result = run_cli("--help")
    assert result.code == 0
    for command in ("run", "recipe", "plugins"):
        assert command in result.stdout
    version = run_cli("--version")
    assert version.code == 0 and version.stdout.startswith("dcframe ")


def test_recipe_check_reports_all_problems_without_traceback(tmp_path: Path) -> None:
    text = (REPO / "recipes" / "quickstart.toml").read_text()
    text = text.replace('name = "faiss-kmeans"', 'name = "faiss-kmean"')
    text = text.replace("epochs = 8", "epoch = 8").replace("lr = 0.05", "lr = -0.05")
    text = text.replace("batch_size = 64", 'batch_size = "64"')
    bad = tmp_path / "bad.toml"
    bad.write_text(text)
    result = invoke("recipe", "check", str(bad))
    assert result.code == 2
    assert "4 problems" in result.stderr
    for expected in (
        "run.epoch: unknown key; did you mean 'epochs'?",
        "optimizer.lr: Input should be greater than 0",
        "optimizer.batch_size: Input should be a valid integer (got '64')",
        "clusterer.name: unknown clusterer 'faiss-kmean' in clusterer.name; did you mean "
        "'faiss-kmeans'?",
    ):
        assert expected in result.stderr
    assert "Traceback" not in result.stderr


def test_recipe_check_show_and_usage_errors() -> None:
    check = invoke("recipe", "check", QUICKSTART)
    assert check.code == 0 and "valid" in check.stdout
    show = invoke("recipe", "show", QUICKSTART, "--set", "run.epochs=2")
    assert show.code == 0 and "epochs = 2" in show.stdout and "momentum = 0.9" in show.stdout
    missing = invoke("recipe", "check", "no-such-recipe.toml")
    assert missing.code == 2 and "not found" in missing.stderr
    usage = invoke("recipe", "check", QUICKSTART, "--no-such-option")
    assert usage.code == 2 and "--no-such-option" in usage.stderr
    debug = invoke("--debug", "recipe", "check", "no-such-recipe.toml")
    assert debug.code == 2 and "Traceback" in debug.stderr and "not found" in debug.stderr
    assert "Traceback" not in invoke("recipe", "check", "no-such-recipe.toml").stderr


def test_plugin_shows_up_everywhere(plugin_path: Path) -> None:
    install_minibatch(plugin_path)
    listing = invoke("plugins", "list")
    assert listing.code == 0
    assert "minibatch-kmeans" in listing.stdout and "dcframe-minibatch 1.2.3" in listing.stdout
    shown = invoke("plugins", "show", "minibatch-kmeans")
    assert (
        shown.code == 0 and "batch_rows" in shown.stdout and "Rows per mini-batch" in shown.stdout
    )
    schema = invoke("recipe", "schema")
    assert schema.code == 0
    text = json.dumps(json.loads(schema.stdout))
    assert '"const": "minibatch-kmeans"' in text and "batch_rows" in text


def test_broken_plugin_is_listed_and_fails_only_its_users(plugin_path: Path) -> None:
    make_distribution(
        plugin_path,
        "dcframe-broken",
        "0.3",
        {"dcframe.clusterers": {"broken-kmeans": "dcframe_broken:Thing"}},
        {"dcframe_broken": "import a_module_that_does_not_exist\n"},
    )
    listing = invoke("plugins", "list")
    assert listing.code == 0
    assert "broken-kmeans" in listing.stdout and "failed" in listing.stdout
    assert "a_module_that_does_not_exist" in listing.stdout
    assert invoke("recipe", "check", QUICKSTART).code == 0
    used = invoke("recipe", "check", QUICKSTART, "--set", "clusterer.name=broken-kmeans")
    assert used.code == 2
    assert "clusterer 'broken-kmeans' from dcframe-broken 0.3" in used.stderr
    assert "No module named 'a_module_that_does_not_exist'" in used.stderr


def test_full_tiny_run_through_the_cli(tiny_recipe: Path) -> None:
    result = invoke("run", str(tiny_recipe), "--quiet", "--set", "run.epochs=1")
    assert result.code == 0, result.stderr
    rundir = Path(result.stdout.strip())
    assert (rundir / "checkpoint.pt").is_file()
    assert len((rundir / "metrics.jsonl").read_text().splitlines()) == 1
    again = invoke("run", str(tiny_recipe), "--quiet", "--set", "run.epochs=1")
    assert again.code == 2 and "--resume" in again.stderr


def test_paper_recipe_without_imagenet_names_data_root() -> None:
    result = run_cli("run", str(REPO / "recipes" / "deepcluster_alexnet.toml"))
    assert result.code == 2
    assert "data.root" in result.stderr and "--set data.root=" in result.stderr


def test_plugins_list_and_show_for_scripts(plugin_path: Path) -> None:
    install_minibatch(plugin_path)
    listing = invoke("plugins", "list")  # stdout is not a terminal: plain, unwrapped lines
    (row,) = [line for line in listing.stdout.splitlines() if "minibatch-kmeans" in line]
    assert row.split("\t")[:2] == ["clusterer", "minibatch-kmeans"] and "dcframe-minibatch" in row
    document = json.loads(invoke("plugins", "list", "--json").stdout)
    names = {(c["kind"], c["name"]): c for c in document["components"]}
    assert names["clusterer", "minibatch-kmeans"]["status"] == "ok"
    assert ("dataset", "webdataset") in names and ("dataset", "filelist") in names
    shown = json.loads(invoke("plugins", "show", "minibatch-kmeans", "--json").stdout)
    assert shown["kind"] == "clusterer" and shown["section"] == "clusterer"
    assert "batch_rows" in [p["parameter"] for p in shown["parameters"]]


def test_eval_of_a_run_prints_one_json_document(tiny_recipe: Path) -> None:
    run = invoke("run", str(tiny_recipe), "--quiet", "--set", "run.epochs=1")
    assert run.code == 0, run.stderr
    rundir = Path(run.stdout.strip())
    result = run_cli("eval", "knn", str(rundir), "--data", "sklearn-digits", "--json")
    assert result.code == 0, result.stderr
    document = json.loads(result.stdout)
    assert document["tag"] == "latest-1ep" and "embed" in document["results"]
    assert (rundir / "eval" / f"knn-latest-1ep-{document['options_hash']}.json").is_file()
    assert "results:" in result.stderr
