"""Reading a checkpoint file safely: tensors and plain containers only, every failure named.

:func:`read_checkpoint` is the one place dcframe opens a ``.pt`` / ``.pth.tar`` file. It
loads with ``torch.load(weights_only=True)`` (nothing in the file can run code) and turns
every failure into a :class:`~dcframe.core.errors.UserError` that names the file and says which
of these it is:

* missing, a folder, or unreadable (permission, I/O error);
* empty, truncated or damaged (a PyTorch file that cannot be decoded);
* not a PyTorch file at all (neither a zip archive nor a legacy PyTorch pickle);
* a PyTorch file holding Python objects beyond tensors: only then is the advice given to
  convert it with ``weights_only=False``, because only then would that work.

:func:`load_state` is the one place saved weights enter a model (``--resume``, ``dcframe
eval``, ``dcframe export``, ``dcframe.load_backbone``): every key and shape is checked first,
and a mismatch names the missing and unexpected keys, their counts, the file and the fix.

This module sits low in the import graph (the run directory code uses it): it imports only
the standard library, torch and :mod:`dcframe.core.errors`.
"""

from __future__ import annotations

import pickle
import re
import warnings
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from dcframe.core.errors import UserError

#: ``torch.save`` writes a zip archive (local file header magic) since PyTorch 1.6 ...
ZIP_MAGIC = b"PK\x03\x04"
#: ... and before that a pickle whose first object is torch's magic number (protocol 2, LONG1).
LEGACY_MAGIC = b"\x80\x02\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19"
#: Keys of a mismatch named in a message; the rest are counted.
KEYS_NAMED = 5


def read_checkpoint(path: Path, mmap: bool = False) -> Any:
    """``torch.load`` restricted to tensors and plain containers, on the CPU.

    Args:
        path: The checkpoint file.
        mmap: Map the tensors instead of reading them (a zip checkpoint only): cheap when
            only the small entries (``epoch``) are wanted.

    Returns:
        What the file holds (usually a dict of tensors, numbers and strings).

    Raises:
        UserError: the file is missing or unreadable, empty, truncated or damaged, not a
            PyTorch file, or holds Python objects beyond tensors (refused, with how to
            convert a trusted file).
    """
    header = _header(path)
    try:
        with warnings.catch_warnings():
            # A foreign pickle makes torch warn about its protocol before failing; the
            # UserError below says all there is to say.
            warnings.filterwarnings("ignore", message="Detected pickle protocol")
            return torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except (FileNotFoundError, PermissionError) as error:  # gone or locked since _header
        raise UserError(f"{path} cannot be read ({_os_reason(error)})") from error
    except Exception as error:  # torch raises many types for a bad file; classify below
        # (OSError included: torch's zip reader seeks out of a cut file with EINVAL)
        raise UserError(_describe_failure(path, header, error)) from error


def load_state(module: nn.Module, state: Mapping[str, Any], source: Path, advice: str) -> None:
    """Load the saved weights ``state`` into ``module``, every key and shape checked first.

    BatchNorm ``num_batches_tracked`` counters missing from ``state`` keep the model's value:
    checkpoints written before PyTorch 0.4.1 have none, and eval mode never reads them.

    Args:
        module: The model to load into.
        state: Parameter and buffer names -> tensors.
        source: The file the weights come from, for the message.
        advice: What to do about a mismatch (it depends on the caller).

    Raises:
        UserError: missing or unexpected keys, or shapes that differ: the first few of each
            named with their counts, then the file and ``advice``.
    """
    expected = module.state_dict()
    mismatch = state_mismatch(expected, state)
    if mismatch:
        raise UserError(
            f"{source}: the weights do not fit this {type(module).__name__} ({mismatch}); " + advice
        )
    module.load_state_dict({**expected, **state})


def state_mismatch(expected: Mapping[str, torch.Tensor], state: Mapping[str, Any]) -> str:
    """How ``state`` differs from the model's ``expected`` state dict, or "" when it fits."""
    missing = [k for k in expected if k not in state and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in state if k not in expected]
    shapes = [
        f"{k} {tuple(v.shape)} vs model {tuple(expected[k].shape)}"
        for k, v in state.items()
        if k in expected and getattr(v, "shape", None) != expected[k].shape
    ]
    parts = (
        _named("missing key", missing),
        _named("unexpected key", unexpected),
        _named("shape mismatch", shapes, plural="es"),
    )
    return "; ".join(part for part in parts if part)


def _named(label: str, items: list[str], plural: str = "s") -> str:
    """``items`` as "3 missing keys: a, b, c", the first :data:`KEYS_NAMED` of them named."""
    if not items:
        return ""
    more = len(items) - KEYS_NAMED
    listed = ", ".join(items[:KEYS_NAMED]) + (f" and {more} more" if more > 0 else "")
    return f"{len(items)} {label}{plural if len(items) > 1 else ''}: {listed}"


def _header(path: Path) -> bytes:
    """The first bytes of ``path``; a missing or unreadable file is refused here, by name."""
    try:
        with open(path, "rb") as file:
            return file.read(len(LEGACY_MAGIC))
    except FileNotFoundError as error:
        raise UserError(f"{path} does not exist") from error
    except IsADirectoryError as error:
        raise UserError(f"{path} is a folder, not a checkpoint file") from error
    except OSError as error:
        raise UserError(f"{path} cannot be read ({_os_reason(error)})") from error


def _describe_failure(path: Path, header: bytes, error: Exception) -> str:
    """What a failed ``torch.load`` of a file starting with ``header`` means, as a message."""
    if not header:
        return f"{path} is truncated or damaged (the file is empty)"
    is_zip, is_legacy = header.startswith(ZIP_MAGIC), header.startswith(LEGACY_MAGIC)
    if not (is_zip or is_legacy):
        # torch reads any non-zip file as a legacy pickle, so random bytes surface as
        # "Unsupported operand" and the like: no reload with other options would help.
        return (
            f"{path} is not a PyTorch checkpoint (not a zip archive); give a file written "
            "by torch.save"
        )
    if isinstance(error, pickle.UnpicklingError) and "Unsupported global" in str(error):
        return _refused_objects_message(path, str(error))
    if is_zip and not _has_pickle_entry(path):
        return f"{path} is a zip archive but not a PyTorch checkpoint (no data.pkl inside)"
    return f"{path} is truncated or damaged ({_short_reason(error)}); write it again or use a copy"


def _refused_objects_message(path: Path, message: str) -> str:
    return (
        f"{path} holds Python objects beyond tensors and plain containers "
        f"({_unpickling_reason(message)}); loading it needs arbitrary unpickling, which "
        "can run any code, so dcframe refuses it. If you trust the file, convert it once "
        "to plain tensors:\n"
        f"  python -c \"import torch; c = torch.load('{path}', weights_only=False); "
        "torch.save({k: c[k] for k in ('state_dict', 'arch', 'epoch') if k in c}, "
        "'converted.pth.tar')\"\n"
        "(for a dcframe checkpoint keep the keys model, backbone, k, epoch instead)"
    )


def _unpickling_reason(message: str) -> str:
    """The line of torch's long weights-only message that names the refused object."""
    for line in message.splitlines():
        if "Unsupported global" in line:
            return line.strip().removeprefix("WeightsUnpickler error: ").split(" was not")[0]
    return "objects the weights-only unpickler does not allow"


def _has_pickle_entry(path: Path) -> bool:
    """Whether ``path`` opens as a zip archive with torch's ``<name>/data.pkl`` inside.

    A zip that does not open (no central directory: cut short) counts as a damaged
    checkpoint, hence True: only a whole archive can be shown to be something else.
    """
    try:
        with zipfile.ZipFile(path) as archive:
            return any(name.endswith("/data.pkl") for name in archive.namelist())
    except (zipfile.BadZipFile, EOFError, OSError, ValueError):
        return True


def _short_reason(error: Exception) -> str:
    """Torch's error in one short line, without its C++ source location and boilerplate."""
    lines = str(error).strip().splitlines()
    text = re.sub(r"^\[enforce fail at [^\]]*\]\s*\.?\s*", "", lines[0] if lines else "")
    text = text.split(". This is an internal")[0]  # miniz's paragraph about corrupted files
    text = text if len(text) <= 200 else text[:200] + "..."
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def _os_reason(error: OSError) -> str:
    if isinstance(error, PermissionError):
        return "permission denied"
    return error.strerror or type(error).__name__
