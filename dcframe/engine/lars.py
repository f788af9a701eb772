"""LARS: SGD with a layer-wise adaptive rate (You, Gitman and Ginsburg, 2017).

With very large batches plain SGD needs a large learning rate, and one global rate is then
too large for some layers (those whose gradients are big next to their weights) and too
small for others: training diverges early or converges poorly. LARS scales the step of
every parameter tensor by a local rate that makes the update's size proportional to the
tensor's own norm, so every layer moves by about the same relative amount. DeepCluster-v2
and SwAV train with it (their "LARC" wrapper with ``clip=False``), together with a linear
warm-up and a cosine decay of the global rate (``optimizer.schedule``); every parameter is
adapted there, biases and BatchNorm included, and so it is here.

For each parameter ``p`` with gradient ``grad``, with ``w = ||p||`` and ``g = ||grad||``::

    local_rate = trust_coefficient * w / (g + weight_decay * w + eps)   if w > 0 and g > 0
               = 1                                                       otherwise
    grad      <- (grad + weight_decay * p) * local_rate

and then plain SGD (momentum, dampening and Nesterov of the parameter's group, no weight
decay since it is folded in above) takes its step with the group's ``lr``. The optimizer
is a :class:`torch.optim.SGD` whose gradients are rewritten first: its momentum buffers,
``state_dict`` and param groups are SGD's, so a resumed run continues bit for bit.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch

__all__ = ["LARS"]


def _sgd_step() -> Callable[..., Any]:
    """SGD's own ``step``, without the hook wrapper torch puts on every optimizer class.

    ``LARS.step`` is wrapped too, so calling the wrapped SGD step from it would run the
    optimizer's step hooks (and profiler records) twice per step.
    """
    step: Callable[..., Any] = torch.optim.SGD.step
    if getattr(step, "hooked", False):
        step = step.__wrapped__  # type: ignore[attr-defined]
    return step


class LARS(torch.optim.SGD):
    """SGD whose step for each parameter tensor is scaled by its layer-wise trust ratio.

    Args:
        params: The parameters, or param groups (dicts) as for any torch optimizer; a
            group may set its own ``trust_coefficient``, ``eps``, ``nesterov``, etc.
        lr: The global learning rate (the schedule sets it per step).
        momentum: SGD's momentum factor.
        weight_decay: L2 penalty, added to the gradient before the local rate scales it.
        trust_coefficient: How far one step may move a tensor, relative to its norm.
        eps: Keeps the local rate finite when the gradient and weight decay are tiny.
    """

    def __init__(
        self,
        params: Iterable[torch.Tensor] | Iterable[dict[str, Any]],
        lr: float,
        momentum: float = 0.9,
        weight_decay: float = 0.0,
        trust_coefficient: float = 0.001,
        eps: float = 1e-8,
    ) -> None:
        if trust_coefficient <= 0.0:
            raise ValueError(f"Invalid trust_coefficient: {trust_coefficient} (must be > 0)")
        if eps < 0.0:
            raise ValueError(f"Invalid eps: {eps} (must be >= 0)")
        super().__init__(params, lr=lr, momentum=momentum, weight_decay=weight_decay)
        # SGD's __init__ builds the defaults itself; adding ours afterwards puts them into
        # every group (now and from add_param_group) and so into state_dict()["param_groups"].
        self.defaults["trust_coefficient"] = trust_coefficient
        self.defaults["eps"] = eps
        for group in self.param_groups:
            group.setdefault("trust_coefficient", trust_coefficient)
            group.setdefault("eps", eps)

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:  # type: ignore[override]
        """Scale every gradient by its local rate, then take SGD's step without weight decay.

        Args:
            closure: Re-evaluates the model and returns the loss, as for SGD.

        Returns:
            The closure's loss, or None without a closure.
        """
        loss = None
        if closure is not None:
            # The grads must exist before they are rescaled, so the closure runs here
            # rather than inside SGD's step.
            with torch.enable_grad():
                loss = closure()

        for group in self.param_groups:
            weight_decay: float = group["weight_decay"]
            trust_coefficient: float = group["trust_coefficient"]
            eps: float = group["eps"]
            # SGD with maximize negates the grad; the sign here keeps the decay pulling the
            # weights toward zero either way.
            decay = -weight_decay if group.get("maximize", False) else weight_decay
            for p in group["params"]:
                grad = p.grad
                if grad is None:
                    continue
                if grad.is_sparse:
                    raise RuntimeError("LARS does not support sparse gradients")
                w = torch.linalg.vector_norm(p)
                g = torch.linalg.vector_norm(grad)
                # Tensor ops on p's device and torch.where instead of a Python branch: no
                # host sync per parameter on a GPU. Both branches are finite since eps > 0
                # (and with eps = 0 a NaN in the unpicked branch is simply not picked).
                adaptive = trust_coefficient * w / (g + weight_decay * w + eps)
                rate = torch.where((w > 0) & (g > 0), adaptive, torch.ones_like(adaptive))
                if decay != 0.0:
                    grad.add_(p, alpha=decay)
                grad.mul_(rate)

        # Weight decay is in the grads already; SGD must not add it a second time. The
        # groups get their value back even if the step fails, so state_dict stays true.
        saved = [group["weight_decay"] for group in self.param_groups]
        try:
            for group in self.param_groups:
                group["weight_decay"] = 0.0
            _sgd_step()(self)
        finally:
            for group, weight_decay in zip(self.param_groups, saved, strict=True):
                group["weight_decay"] = weight_decay
        return loss
