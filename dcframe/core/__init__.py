"""The core layer: what every other layer builds on and no layer below it exists.

The registries and the six component kinds, the component interfaces and their
parameter models, errors, progress reporting, the processes of a run (:class:`World`),
atomic files, and the contract checks. Nothing here imports from another dcframe layer.
"""
