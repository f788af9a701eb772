"""Issue 26, point 1: a starter recipe sized to its data, and the time a run will take on
this machine, printed by ``recipe init``, ``recipe check`` and ``run`` before any work.

The estimate's presence and plausibility are tested, never its accuracy: machines are
shared and their speed varies. The suite sets ``DCFRAME_NO_ESTIMATE`` (tests/conftest.py)
so that the many other calls of these commands skip the measuring; these tests unset it.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from dcframe import recipe
from dcframe.cli.estimates import NO_ESTIMATE_ENV
from dcframe.core.progress import Reporter
from dcframe.recipe import starter
from dcframe.recipe.starter import FolderSurvey, choose
from dcframe.tools.bench import duration, estimate
from tests.conftest import data_recipe, invoke


def survey(images: int, side: int) -> FolderSurvey:
    return FolderSurvey(Path("/data"), images, tuple("abcdefghij"), (side, side))


def test_the_starter_network_and_caches_fit_the_folder(monkeypatch: pytest.MonkeyPatch) -> None:
    small, mid, large = choose(survey(2_000, 32)), choose(survey(50_000, 32)), choose(
        survey(1_281_167, 400)
    )  # fmt: skip
    assert (small.width, small.fc_dim) == (0.25, 512)  # the reported 2,000 CIFAR images
    assert (mid.width, mid.fc_dim) == (0.5, 1024)
    assert (large.width, large.fc_dim) == (1.0, 4096)
    assert 0 < small.cache_gib <= 0.1 and 0 < mid.cache_gib <= 1.0
    assert large.cache_gib == 0  # ImageNet's views do not fit in 2 GiB
    for found, choices in ((survey(2_000, 32), small), (survey(1_281_167, 400), large)):
        table = tomllib.loads(starter.starter_recipe(found, choices, "x"))
        assert table["backbone"]["width"] == choices.width
        assert ("view_cache_gib" in table["run"]) == bool(choices.cache_gib)
        assert table["run"].get("augment_on") == ("device" if choices.cache_gib else None)
    for has_bf16 in (True, False):
        monkeypatch.setattr(starter, "cpu_has_bf16", lambda has=has_bf16: has)
        choices = choose(survey(2_000, 32))
        table = tomllib.loads(starter.starter_recipe(survey(2_000, 32), choices, "x"))
        assert table["run"].get("amp") == ("bf16" if has_bf16 else None)


def test_the_estimate_is_projected_from_every_stage(tiny_recipe: Path) -> None:
    found = estimate(recipe.load(tiny_recipe), Reporter(quiet=True), images=32)
    stages = found.epoch_s
    assert set(stages) == {"extract", "cluster", "train", "total"}
    assert all(0 < stages[s] < 600 for s in ("extract", "cluster", "train"))  # 360 digits
    assert stages["total"] == pytest.approx(stages["extract"] + stages["cluster"] + stages["train"])
    assert found.total_s == pytest.approx(stages["total"] * 2)  # the recipe's 2 epochs
    assert (found.images, found.dataset_images, found.device) == (32, 360, "cpu")
    line = found.describe()
    assert line.startswith("estimated ") and "for 2 epochs on this machine" in line
    assert [duration(s) for s in (40, 210, 7 * 3600)] == ["40 s", "3.5 min", "7.0 h"]


def test_recipe_check_prints_the_estimate_and_can_skip_it(
    tiny_recipe: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(NO_ESTIMATE_ENV, raising=False)
    checked = invoke("recipe", "check", str(tiny_recipe))
    assert checked.code == 0, checked.stderr
    assert "estimated " in checked.stderr and "for 2 epochs on this machine" in checked.stderr
    skipped = invoke("recipe", "check", str(tiny_recipe), "--no-estimate")
    assert skipped.code == 0 and "estimated" not in skipped.stderr
    (tmp_path / "empty").mkdir()
    empty = data_recipe(tmp_path, f'name = "imagefolder"\nroot = "{tmp_path / "empty"}"')
    unmeasured = invoke("recipe", "check", str(empty))  # valid, but there is nothing to time
    assert unmeasured.code == 0 and "no time estimate:" in unmeasured.stderr
