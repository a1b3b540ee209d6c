"""Networks, losses, metrics and the one Trainer used by every kind of run.

Imports nothing of ``cohorts``, ``node`` or ``federation`` and never ``flwr``: the same code
serves the centralized baseline, local-only runs and the Flower ClientApp.
"""
