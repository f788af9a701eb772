"""Evaluation of frozen features: the paper's linear probes, weighted kNN, cluster metrics.

* :mod:`~dcframe.store.trained`: what to evaluate (run, checkpoint, official release,
  random init) as a frozen backbone;
* :mod:`~dcframe.evaluation.features`: per-layer features pooled to about 9,600 dims;
* :mod:`~dcframe.evaluation.linear_probe`, :mod:`~dcframe.evaluation.knn`,
  :mod:`~dcframe.evaluation.cluster_metrics`: the three protocols;
* :mod:`~dcframe.evaluation.options`: their options (the ``dcframe eval`` command line).
"""
