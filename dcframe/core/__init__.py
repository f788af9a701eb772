"""The core layer, which every other layer builds on; it imports no other dcframe layer.

The registries and the six component kinds, the component interfaces and their
parameter models, errors, progress reporting, the processes of a run (:class:`World`),
atomic files and the ``metrics.jsonl`` record, and the contract checks.
"""
