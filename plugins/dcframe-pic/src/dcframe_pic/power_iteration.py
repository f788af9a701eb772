"""PIC's power iteration: a random walk with restart whose scores mark the graph's dense spots.

The update is the one the DeepCluster paper's PIC variant uses::

    v <- alpha * W v + (1 - alpha) / N      then      v <- v / sum(v)

starting from the uniform vector. ``W`` is the symmetric affinity matrix itself, not a
row-normalised transition matrix: a node's score grows with the total weight of its
edges and with its neighbours' scores, so after the iterations high scores sit in dense
regions, and the restart term ``(1 - alpha) / N`` (teleport) keeps the scores from
concentrating on one node (the plain power method's leading eigenvector) and positive.

**Precision.** With a small ``alpha`` and Gaussian weights far below 1 (``sigma = 0.2``
on unit vectors gives ``exp(-25)`` for a squared distance of 1), a score differs from
``1/N`` by a relative amount far below float64's resolution, so computed literally every
node would tie with its neighbours and look like its own peak. The iteration is therefore
run on the *lift* ``r``, defined by ``v = (1 + r) / sum(1 + r)``: what the walk adds on
top of the restart's uniform share. Substituting into the update gives, exactly::

    r <- beta * (W 1 + W r) / (1 + mean(r)),      beta = alpha / (1 - alpha),  r_0 = 0

which never adds a tiny number to 1, so ``r`` keeps full relative precision down to the
smallest weights. ``v`` has the same order as ``r``, and ``v[j] - v[i]`` is
``(r[j] - r[i])`` times one positive factor, so the climb to the peaks can use ``r``.
"""

from __future__ import annotations

import torch

from dcframe_pic.graph import Graph


def power_iteration(graph: Graph, alpha: float, iterations: int) -> torch.Tensor:
    """(N,) float64 lift ``r`` after ``iterations`` restart-walk steps (see module doc);
    :func:`scores` turns it into the normalised scores ``v``.

    Raises:
        ValueError: ``alpha`` outside ``(0, 1)`` or ``iterations`` < 1.
    """
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    if iterations < 1:
        raise ValueError(f"iterations must be >= 1, got {iterations}")
    beta = alpha / (1.0 - alpha)
    degrees = graph.propagate(torch.ones(graph.size, dtype=torch.float64))
    lift = torch.zeros(graph.size, dtype=torch.float64)
    for _ in range(iterations):
        lift = beta * (degrees + graph.propagate(lift)) / (1.0 + lift.mean())
    return lift


def scores(lift: torch.Tensor) -> torch.Tensor:
    """The walk's normalised scores ``v = (1 + r) / sum(1 + r)``, summing to 1.

    Fine for looking at; tiny differences between nodes may round away here, which is why
    the clusters are found from the lift itself.
    """
    shifted = 1.0 + lift
    return shifted / shifted.sum()
