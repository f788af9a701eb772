"""LARS (dcframe.engine.lars): the update against a hand computation, resume, and training."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from dcframe.engine.lars import LARS


def reference_steps(
    p0: np.ndarray,
    grads: list[np.ndarray],
    lr: float,
    momentum: float,
    weight_decay: float,
    trust: float,
    eps: float,
) -> np.ndarray:
    """LARS by hand: the formula of the module docstring, then SGD with momentum (torch's
    convention: the first step's buffer is the gradient itself, dampening 0)."""
    p = p0.copy()
    buf: np.ndarray | None = None
    for grad in grads:
        w = np.linalg.norm(p)
        g = np.linalg.norm(grad)
        rate = trust * w / (g + weight_decay * w + eps) if w > 0 and g > 0 else 1.0
        d = (grad + weight_decay * p) * rate
        buf = d if buf is None else momentum * buf + d
        p = p - lr * buf
    return p


def lars_steps(
    p0: np.ndarray, grads: list[np.ndarray], **kwargs: float
) -> tuple[torch.Tensor, LARS]:
    p = torch.nn.Parameter(torch.tensor(p0))
    opt = LARS([p], **kwargs)
    for grad in grads:
        p.grad = torch.tensor(grad)
        opt.step()
    return p.detach(), opt


RNG = np.random.default_rng(0)
P0 = RNG.normal(size=(3, 4))
GRADS = [RNG.normal(size=(3, 4)), RNG.normal(size=(3, 4))]


@pytest.mark.parametrize(
    ("momentum", "weight_decay", "steps"),
    [(0.0, 0.0, 1), (0.0, 1e-2, 1), (0.9, 1e-2, 2), (0.9, 0.0, 2)],
)
def test_matches_hand_computation(momentum: float, weight_decay: float, steps: int) -> None:
    kwargs = dict(lr=0.5, momentum=momentum, weight_decay=weight_decay, trust_coefficient=0.02)
    got, _ = lars_steps(P0, GRADS[:steps], **kwargs)
    want = reference_steps(
        P0,
        GRADS[:steps],
        eps=1e-8,
        trust=0.02,
        lr=0.5,
        momentum=momentum,
        weight_decay=weight_decay,
    )
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-12, atol=1e-14)
    # The local rate really changes the step: plain SGD would land elsewhere.
    assert not np.allclose(want, P0 - 0.5 * GRADS[0])


def test_zero_weight_or_zero_grad_gets_rate_one() -> None:
    wd = 0.1
    # w = 0: the step is plain SGD's (the decay term is 0 too).
    got, _ = lars_steps(np.zeros((2, 2)), [GRADS[0][:2, :2]], lr=0.3, momentum=0.0, weight_decay=wd)
    np.testing.assert_array_equal(got.numpy(), -0.3 * GRADS[0][:2, :2])
    # g = 0: SGD with the weight decay folded in, at rate 1.
    got, _ = lars_steps(P0, [np.zeros_like(P0)], lr=0.3, momentum=0.0, weight_decay=wd)
    np.testing.assert_allclose(got.numpy(), P0 - 0.3 * wd * P0, rtol=1e-15)
    # Neither gives NaN with eps = 0 either (the unpicked 0/0 branch stays unpicked).
    got, _ = lars_steps(np.zeros((2, 2)), [np.zeros((2, 2))], lr=0.3, momentum=0.0, eps=0.0)
    assert torch.isfinite(got).all()


def make_model() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Linear(5, 8), torch.nn.BatchNorm1d(8), torch.nn.ReLU(), torch.nn.Linear(8, 2)
    )


def train(model: torch.nn.Module, opt: LARS, steps: range) -> None:
    for i in steps:
        gen = torch.Generator().manual_seed(i)
        x = torch.randn(16, 5, generator=gen)
        y = torch.randn(16, 2, generator=gen)
        opt.zero_grad(set_to_none=True)
        torch.nn.functional.mse_loss(model(x), y).backward()
        opt.step()


def test_state_dict_round_trip_is_bit_identical() -> None:
    kwargs = dict(lr=0.7, momentum=0.9, weight_decay=1e-4, trust_coefficient=0.01)
    model_a = make_model()
    opt_a = LARS(model_a.parameters(), **kwargs)
    train(model_a, opt_a, range(5))

    model_b = make_model()
    opt_b = LARS(model_b.parameters(), **kwargs)
    train(model_b, opt_b, range(2))
    saved = copy.deepcopy(opt_b.state_dict())
    assert saved["param_groups"][0]["trust_coefficient"] == 0.01
    assert saved["param_groups"][0]["eps"] == 1e-8
    assert saved["param_groups"][0]["weight_decay"] == 1e-4
    model_c = copy.deepcopy(model_b)
    # Another rate in the fresh optimizer: load_state_dict must bring back the saved one.
    opt_c = LARS(model_c.parameters(), lr=0.1)
    opt_c.load_state_dict(saved)
    train(model_c, opt_c, range(2, 5))

    for pa, pc in zip(model_a.state_dict().values(), model_c.state_dict().values(), strict=True):
        assert torch.equal(pa, pc)


def test_weight_decay_restored_after_step_and_failures() -> None:
    p = torch.nn.Parameter(torch.ones(3))
    opt = LARS([p], lr=0.1, weight_decay=5e-4)
    opt.add_param_group({"params": [torch.nn.Parameter(torch.ones(2))], "weight_decay": 0.25})
    p.grad = torch.ones(3)
    opt.step()
    assert [g["weight_decay"] for g in opt.param_groups] == [5e-4, 0.25]
    # add_param_group takes our defaults too.
    assert opt.param_groups[1]["trust_coefficient"] == 0.001

    def failing() -> float:
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        opt.step(failing)
    assert [g["weight_decay"] for g in opt.param_groups] == [5e-4, 0.25]

    # A failure inside SGD's own step (a foreach group with mismatched devices is hard to
    # make on CPU, so a bad momentum value stands in for it).
    opt.param_groups[0]["momentum"] = "bad"
    with pytest.raises(TypeError):
        opt.step()
    assert [g["weight_decay"] for g in opt.param_groups] == [5e-4, 0.25]


def test_closure_loss_is_returned() -> None:
    p = torch.nn.Parameter(torch.tensor([1.0, 2.0]))
    opt = LARS([p], lr=0.1)

    def closure() -> float:
        opt.zero_grad()
        loss = (p**2).sum()
        loss.backward()
        return loss.item()

    assert opt.step(closure) == pytest.approx(5.0)
    assert not torch.equal(p.detach(), torch.tensor([1.0, 2.0]))


def test_step_hooks_run_once_per_step() -> None:
    # Any plain SGD built in the process wraps SGD.step with torch's hook wrapper.
    torch.optim.SGD([torch.nn.Parameter(torch.ones(1))], lr=0.1)
    p = torch.nn.Parameter(torch.ones(2))
    opt = LARS([p], lr=0.1)
    calls: list[str] = []
    opt.register_step_pre_hook(lambda *_: calls.append("pre"))
    opt.register_step_post_hook(lambda *_: calls.append("post"))
    p.grad = torch.ones(2)
    opt.step()
    assert calls == ["pre", "post"]


def test_it_trains() -> None:
    torch.manual_seed(0)
    x = torch.randn(64, 4)
    y = x @ torch.tensor([[1.0], [-2.0], [0.5], [3.0]]) + 0.7
    model = torch.nn.Linear(4, 1)
    opt = LARS(model.parameters(), lr=1.0, momentum=0.9, weight_decay=1e-5, trust_coefficient=0.02)

    def loss() -> torch.Tensor:
        return torch.nn.functional.mse_loss(model(x), y)

    start = loss().item()
    for _ in range(50):
        opt.zero_grad()
        loss().backward()
        opt.step()
    assert loss().item() < 0.5 * start


def test_update_scales_with_the_weights() -> None:
    # A scale-invariant layer (one followed by BatchNorm): weights times 10 give grads
    # divided by 10. LARS's update is then 10 times larger, the same relative change.
    w = torch.tensor(P0)
    g = torch.tensor(GRADS[0])
    updates = []
    for scale in (1.0, 10.0):
        p = torch.nn.Parameter(w * scale)
        opt = LARS([p], lr=0.5, momentum=0.0, eps=0.0)
        p.grad = g / scale
        opt.step()
        updates.append(p.detach() - w * scale)
    torch.testing.assert_close(updates[1], 10.0 * updates[0], rtol=1e-12, atol=0.0)
