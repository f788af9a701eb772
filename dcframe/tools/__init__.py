"""Tools around a run: ``dcframe bench`` (each stage against its floor), ``dcframe export``
(a run's weights for plain torchvision, safetensors or a checkpoint) and ``dcframe doctor``
(the machine's facts and the combinations known to fail)."""
