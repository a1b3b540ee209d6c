"""Networks, losses, metrics and the one Trainer used by every kind of run.

Imports nothing of ``cohorts``, ``node`` or ``federation`` and never ``flwr``: the same code
serves the centralized baseline, local-only runs and the Flower ClientApp.

Where things are (import the submodules; this package imports nothing so ``import models`` stays
cheap): ``names`` (head/region/split/metric names), ``densenet`` / ``unet`` / ``networks`` (the
two recipes of design.md section 6), ``pretrained`` (checksum-verified local ImageNet weights),
``data`` (``ArrayDataset``), ``losses`` (masked multitask loss), ``metrics``, ``config``
(``TrainerConfig``), ``trainer`` (``Trainer``), ``evaluation`` (``Predictions``), ``gradcam``
and ``errors``. docs/explanation/models.md explains the choices.
"""
