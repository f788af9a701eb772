"""The data layer: getting images from a dataset to the network.

Decoding and its failures (``images``, ``bad_images``), the clustering and training views
(``transforms``), the run's one loader with its workers (``loading``, ``prefetch``,
``threads``), the cache of decoded clustering views (``view_cache``), and the batched
training path: the view on tensors (``batch_views``), the cache of decoded images
(``image_cache``), JPEG decoding on the device (``device_decode``) and the pass's batches
(``batched_training``).
"""
