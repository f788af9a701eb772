"""Tools around a run: ``dcframe bench`` (each stage against its floor), ``dcframe export``
(a run's weights for plain torchvision, safetensors or a checkpoint), ``dcframe doctor``
(the machine's facts and the combinations known to fail) and ``dcframe data prepare``
(a dataset as small JPEGs in tar shards)."""
