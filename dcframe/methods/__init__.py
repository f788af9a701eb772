"""The self-supervised methods a recipe's ``method.name`` picks, each one epoch's protocol.

- ``deepcluster`` (:mod:`.deepcluster`): the paper's, whose steps are
  :func:`dcframe.engine.protocol.run_epoch`; the default.
- ``deepcluster-v2`` (:mod:`.deepcluster_v2`): clusters a memory bank of projections and
  trains against frozen prototypes, with multi-crop views (:mod:`.memory_bank`).

Both run on the engine's shared parts (components, trainer, run directory, resume,
processes, loggers); a plugin adds a method through the ``dcframe.methods`` entry points.
"""
