"""The data layer: getting images from a dataset to the network.

Decoding and its failures (``images``, ``bad_images``), the clustering and training views
(``transforms``), the run's one loader with its workers (``loading``, ``prefetch``), and
the cache of decoded clustering views (``view_cache``).
"""
