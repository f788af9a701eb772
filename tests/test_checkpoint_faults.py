"""Finding 14 of issue 9: damaged, foreign or oddly shaped checkpoint files.

Every case goes through the CLI (``dcframe eval knn FILE``) or :func:`read_checkpoint`
and must give a message naming the file and the problem: exit 2, never a traceback.
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path
from typing import Any

import pytest
import torch

from dcframe.core.errors import UserError
from dcframe.store.checkpoint_file import read_checkpoint
from tests.conftest import invoke


def eval_knn(file: Path) -> tuple[int, str]:
    """``dcframe eval knn FILE --data sklearn-digits``: exit code and everything printed."""
    result = invoke("eval", "knn", str(file), "--data", "sklearn-digits", "--quiet")
    return result.code, result.stdout + result.stderr


def assert_refused(file: Path, *fragments: str) -> str:
    code, output = eval_knn(file)
    assert code == 2, output
    assert "Traceback" not in output
    assert str(file) in output  # the message names the file
    for fragment in fragments:
        assert fragment in output
    return output


def test_finding_14_random_bytes_is_not_a_checkpoint_no_weights_only_advice(
    tmp_path: Path,
) -> None:
    random_bytes = tmp_path / "random.pt"
    random_bytes.write_bytes(os.urandom(4096))
    output = assert_refused(random_bytes, "is not a PyTorch checkpoint (not a zip archive)")
    assert "weights_only" not in output and "beyond tensors" not in output
    # A pickle that torch.save did not write is not a checkpoint either.
    plain = tmp_path / "plain.pkl"
    plain.write_bytes(pickle.dumps({"model": [1, 2]}))
    assert "weights_only" not in assert_refused(plain, "is not a PyTorch checkpoint")


def test_finding_14_truncated_checkpoint(tmp_path: Path) -> None:
    whole = tmp_path / "whole.pt"
    torch.save({"model": {"w": torch.zeros(64, 64)}, "backbone": "alexnet"}, whole)
    data = whole.read_bytes()
    for name, cut in (("half.pt", len(data) // 2), ("head.pt", 10)):
        (tmp_path / name).write_bytes(data[:cut])
        output = assert_refused(tmp_path / name, "is truncated or damaged")
        assert "weights_only" not in output
    legacy = tmp_path / "legacy.pt"
    torch.save({"w": torch.zeros(8)}, legacy, _use_new_zipfile_serialization=False)
    (tmp_path / "legacy-half.pt").write_bytes(legacy.read_bytes()[:40])
    assert_refused(tmp_path / "legacy-half.pt", "is truncated or damaged")
    (tmp_path / "empty.pt").write_bytes(b"")
    assert_refused(tmp_path / "empty.pt", "is truncated or damaged (the file is empty)")


def test_finding_14_missing_unreadable_and_object_holding_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(UserError, match="does not exist"):
        read_checkpoint(tmp_path / "nothing.pt")
    with pytest.raises(UserError, match="is a folder"):
        read_checkpoint(tmp_path)
    locked = tmp_path / "locked.pt"
    torch.save({"w": torch.zeros(1)}, locked)

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise PermissionError(13, "Permission denied")

    with monkeypatch.context() as patch:  # as root, chmod 000 would not stop the read
        patch.setattr("builtins.open", refuse)
        with pytest.raises(UserError, match=r"locked\.pt cannot be read \(permission denied\)"):
            read_checkpoint(locked)
    # The weights_only advice appears exactly when it is true: a real torch file whose
    # pickle names a class the weights-only unpickler refuses.
    objects = tmp_path / "objects.pt"
    torch.save({"w": torch.zeros(1), "when": pytest.MonkeyPatch()}, objects)
    with pytest.raises(UserError, match="beyond tensors") as error:
        read_checkpoint(objects)
    assert "weights_only=False" in str(error.value) and "MonkeyPatch" in str(error.value)


def test_finding_14_a_zip_that_is_not_a_checkpoint(tmp_path: Path) -> None:
    import zipfile

    archive = tmp_path / "images.zip"
    with zipfile.ZipFile(archive, "w") as out:
        out.writestr("a.txt", "hello")
    assert_refused(archive, "is a zip archive but not a PyTorch checkpoint")


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ({"model": [1, 2, 3], "backbone": "alexnet"}, "'model' must be a state dict"),
        (
            {"model": {"features.0.weight": torch.zeros(1), "bad": 3}, "backbone": "alexnet"},
            "'bad' is an int (3)",
        ),
        ({"model": {1: torch.zeros(1)}, "backbone": "alexnet"}, "key 1 is not a string"),
        ({"model": {}, "backbone": ["alexnet"]}, "'backbone' must be the name of a backbone"),
        ({"model": {}, "backbone": "alexnett"}, "unknown backbone 'alexnett'"),
        ({"state_dict": [1], "arch": "alexnet"}, "'state_dict' must be a state dict"),
        ({"state_dict": {"a": "x"}, "arch": "alexnet"}, "'a' is a str ('x')"),
        ({"state_dict": {"a": torch.zeros(1)}}, "without 'arch'; expected one of alexnet"),
        ({"state_dict": {"a": torch.zeros(1)}, "arch": "resnet9"}, "architecture 'resnet9'"),
        ([1, 2, 3], "not a dcframe checkpoint"),
    ],
    ids=[
        "model-list",
        "model-non-tensor",
        "model-int-key",
        "backbone-list",
        "backbone-unknown",
        "state-dict-list",
        "state-dict-non-tensor",
        "no-arch",
        "unknown-arch",
        "top-level-list",
    ],
)
def test_finding_14_wrong_structure_is_named_not_a_traceback(
    tmp_path: Path, content: object, expected: str
) -> None:
    file = tmp_path / "odd.pt"
    torch.save(content, file)
    assert_refused(file, expected)
