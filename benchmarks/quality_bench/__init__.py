"""Representation quality of a recipe: trained vs random init, and each ablation's gain.

Given a recipe, a labelled train/test split and a wall-clock training budget, the script
trains the recipe (and every ``--variant``: the same recipe with a few overrides, the same
budget and seed), then evaluates each trained trunk against a randomly initialised one of
the same architecture:

* weighted kNN on the clustering feature (``embed``) and the last two conv taps;
* a linear probe (``--protocol stable``) on every conv tap, once per probe seed, quoting
  the last, best and mean-of-last-10 epochs and the spread across seeds.

Everything runs through the ``dcframe`` command line in subprocesses (``dcframe run``,
``dcframe eval knn``, ``dcframe eval linear-probe``), so the numbers are the ones a user
gets. Results go to ``--out``: ``quality.json`` (every number, the machine, the command),
``quality.md`` (the tables, also printed) and ``signal.png`` (per-epoch kNN signal,
training loss and NMI between consecutive assignments, one line per variant).

CIFAR-10 is the reference set (JPEG class folders, e.g. the extracted
``../shared/data/cifar10_jpg.tar.gz``; docs/results.md builds the 10,000-image training
subset used there and gives its numbers):

    python benchmarks/quality.py recipes/cifar10.toml --unlabelled-dir /tmp/cifar/train \\
        --train-dir /tmp/cifar10k/train --val-dir /tmp/cifar/test --budget-min 60 \\
        --probe-seeds 0 1 --out runs/quality/cifar10

(``--unlabelled-dir`` names the folder DeepCluster trains on, here all 50,000 training
images, while kNN and probes use the labelled subset), and an ablation, same budget and
seed, reported as a gain in points over the baseline:

    python benchmarks/quality.py recipes/cifar10_paper.toml --train-dir /tmp/cifar10k/train \\
        --val-dir /tmp/cifar/test --budget-min 5 --skip-probe --out runs/quality/ablation \\
        --variant centroids=optimizer.top_init=centroids

Budget: each variant trains one epoch per ``dcframe run --resume`` call and starts another
only while the training time so far plus the last call's duration fits the budget (the
first epoch always runs; it is the slow one, filling the view cache). A learning-rate
schedule other than constant is shaped by ``run.epochs``, which those calls would move
every epoch, so such a variant trains in one call over a fixed horizon instead: the
epochs the baseline fitted in the budget (or ``--max-epochs``), flagged ``over_budget``
when it took longer than the budget.

``quality.json`` holds ``machine`` (cores, torch, platform, eval device), ``command``,
``budgets``, ``data`` (images and classes, as dcframe eval read them, and
``unlabelled_dir``: the folder training read instead of ``--train-dir``), ``models`` (per
model, ``baseline``, each variant, ``random`` and ``random-<variant>`` for a variant of
another architecture: ``knn`` top-1 per layer and ``linear`` per layer, ``last`` /
``best`` / ``mean_last_10``, each the ``mean`` over probe seeds, ``per_seed`` and
``spread`` = max - min) and ``variants`` (overrides, ``training``: epochs, seconds per
call, mode, ``over_budget``; ``signal`` per epoch; ``gain_over_random`` and, past the
baseline, ``gain_over_baseline`` per layer in points; the best of each). Run folders go
to ``OUT/runs/<variant>``, every dcframe eval result file to ``OUT/eval/<model>``.

Exit codes: 0 done, 2 bad input or a failing ``dcframe`` command (its stderr is shown).
"""
