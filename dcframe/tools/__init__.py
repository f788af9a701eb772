"""Tools around a run: ``dcframe bench`` (each stage against its floor) and
``dcframe export`` (a run's weights for plain torchvision, safetensors or a checkpoint)."""
