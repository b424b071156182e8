"""The one training engine: every method gives it only its own step and its data.

* :mod:`.config`: :class:`~.config.TrainingConfig` (what :func:`~.pairs.fit` trains with) and the
  one learning-rate table;
* :mod:`.presets`: named paper settings (``train --preset``);
* :mod:`.run_folder`: :class:`~.run_folder.RunFolder`, the one policy for an output folder;
* :mod:`.loop`: :func:`~.loop.run_loop`, the one loop (AdamW + linear warm-up on accelerate,
  checkpoints, exact resume, final save, clean-up) and the :class:`~.loop.TrainingStep` a method
  implements;
* :mod:`.pairs`: :func:`~.pairs.fit`, training on rows of (query, passages[, label]): the
  supervised methods, GPL's MarginMSE and DDR's REM;
* :mod:`.checkpoints`: the checkpoint files;
* :mod:`.processes`: the processes ``torchrun`` / ``accelerate launch`` started (gloo on the CPU).

ART's step (``methods/art/training.py``) and the DAM's (``methods/ddr/dam.py``) live with their
methods.
"""
