"""Recipe-side proofs of issue 9: one test per finding, named after it.

Each test feeds a hostile value through ``dcframe recipe check`` (in process) and asserts
exit code 2, the ``path: message`` line, and no traceback.
"""

from __future__ import annotations

import json
from pathlib import Path

from conftest import invoke

from dcframe import recipe

REPO = Path(__file__).resolve().parents[1]
QUICKSTART = REPO / "recipes" / "quickstart.toml"


def test_data_policy_fields_on_every_dataset() -> None:
    """``on_bad_image`` and ``max_bad_fraction`` belong to every ``[data]`` member."""
    resolved = recipe.load(QUICKSTART, ["data.on_bad_image=skip", "data.max_bad_fraction=0.2"])
    assert (resolved.data.on_bad_image, resolved.data.max_bad_fraction) == ("skip", 0.2)
    defaults = recipe.load(QUICKSTART).data
    assert (defaults.on_bad_image, defaults.max_bad_fraction) == ("fail", 0.01)
    shown = invoke("recipe", "show", str(QUICKSTART))
    assert 'on_bad_image = "fail"' in shown.stdout and "max_bad_fraction = 0.01" in shown.stdout
    schema = json.dumps(recipe.recipe_model().model_json_schema())
    assert schema.count('"on_bad_image"') >= 2  # both built-in datasets
    bad = invoke("recipe", "check", str(QUICKSTART), "--set", "data.max_bad_fraction=2")
    assert bad.code == 2 and "data.max_bad_fraction: Input should be less" in bad.stderr
    bad = invoke("recipe", "check", str(QUICKSTART), "--set", "data.on_bad_image=ignore")
    assert bad.code == 2 and "data.on_bad_image: Input should be 'fail' or 'skip'" in bad.stderr
