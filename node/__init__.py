"""Everything a hospital site runs: settings, resolution, validation, the steward CLI, the
Flower ClientApp. May import ``cohorts`` and ``models``; never ``federation``."""
