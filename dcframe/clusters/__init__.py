"""The clusters as a product: list a run's images by cluster, sort them into folders, and
place new images in the learned clusters.

* :mod:`.listing`: images and their clusters as a table (:class:`~.listing.ImageClusters`),
  read from a run's epoch (``dcframe clusters``);
* :mod:`.model`: an epoch's clustering as a model that places new images
  (``dcframe assign``, ``dcframe.load_clustering``);
* :mod:`.output`: the table as CSV, JSON Lines or Parquet, and as one folder per cluster.
"""
