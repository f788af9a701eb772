"""BatchNorm over the global batch of all processes (``run.sync_batchnorm``), on any device.

PyTorch's :class:`torch.nn.SyncBatchNorm` runs on GPUs only; dcframe uses it there and
:class:`GlobalBatchNorm` elsewhere (the CPU with gloo), so that a run with
``sync_batchnorm`` behaves alike on both. Statistics are the sums of ``x``, then of the
squared deviations from their mean, all-reduced by a differentiable sum, so gradients flow
through the global mean and variance as through one process's BatchNorm over the whole
batch.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm


class _SumOverProcesses(torch.autograd.Function):
    """``x`` summed over every process; the gradient of a sum is the sum of the gradients."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:
        total = x.clone()
        dist.all_reduce(total)
        return total

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        total = grad.clone()
        dist.all_reduce(total)
        return total


class GlobalBatchNorm(_BatchNorm):
    """BatchNorm whose training statistics are those of the batch of every process together.

    In eval mode it is an ordinary BatchNorm on the running statistics.
    """

    def _check_input_dim(self, input: torch.Tensor) -> None:
        if input.dim() < 2:
            raise ValueError(f"expected at least 2-D input, got {input.dim()}-D")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return super().forward(x)
        channels = x.shape[1]
        dims = [0, *range(2, x.dim())]
        shape = [1, channels] + [1] * (x.dim() - 2)
        count = torch.full((1,), x.numel() / channels, dtype=x.dtype, device=x.device)
        sums = _SumOverProcesses.apply(torch.cat([x.sum(dims), count]))
        total = sums[-1]
        mean = sums[:channels] / total
        # Two passes, as torch's own BatchNorm: E[x^2] - E[x]^2 in float32 loses the
        # variance of features whose mean is large next to their spread.
        centred = x - mean.view(shape)
        var = _SumOverProcesses.apply((centred * centred).sum(dims)) / total
        if self.track_running_stats and self.running_mean is not None:
            assert self.running_var is not None and self.num_batches_tracked is not None
            momentum = 0.1 if self.momentum is None else self.momentum
            with torch.no_grad():  # the running variance is unbiased, as in torch's BatchNorm
                self.running_mean.lerp_(mean.detach(), momentum)
                self.running_var.lerp_(var.detach() * total / (total - 1).clamp_min(1), momentum)
                self.num_batches_tracked.add_(1)
        normalised = centred * torch.rsqrt(var.view(shape) + self.eps)
        if self.affine:
            normalised = normalised * self.weight.view(shape) + self.bias.view(shape)
        return normalised


def synchronise_batchnorm(module: nn.Module, on_gpu: bool) -> nn.Module:
    """``module`` with every BatchNorm replaced by one over the global batch (in place for
    children; the same parameter and buffer objects are kept, so optimizers stay valid)."""
    if on_gpu:
        return nn.SyncBatchNorm.convert_sync_batchnorm(module)
    for name, child in module.named_children():
        if isinstance(child, _BatchNorm) and not isinstance(child, GlobalBatchNorm):
            replacement = GlobalBatchNorm(
                child.num_features,
                child.eps,
                child.momentum,
                child.affine,
                child.track_running_stats,
            )
            for attribute in ("weight", "bias"):
                setattr(replacement, attribute, getattr(child, attribute))
            for attribute in ("running_mean", "running_var", "num_batches_tracked"):
                setattr(replacement, attribute, getattr(child, attribute))
            replacement.train(child.training)
            setattr(module, name, replacement)
        else:
            synchronise_batchnorm(child, on_gpu)
    return module
