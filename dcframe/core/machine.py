"""What this machine's processor can do that changes how a run should be set up."""

from __future__ import annotations


def cpu_has_bf16() -> bool:
    """Whether this CPU computes bf16 natively (AVX512-BF16 or AMX tiles); only then is CPU
    autocast faster than float32 (oneDNN's bf16 convolutions and matmuls)."""
    import torch  # here: the recipe layer asks too, and must not import torch to validate

    probes = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(getattr(torch.cpu, name, lambda: False)() for name in probes)
