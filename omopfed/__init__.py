"""omopfed: an OMOP-integrated federated analytics node for brain-tumour radiogenomics.

This small package holds only what every layer shares and what joins them:

* ``omopfed.errors`` — the root exception every layer's errors derive from;
* ``omopfed.offline`` — the offline/telemetry environment every process must carry;
* ``omopfed.clikit`` — rendering and error mapping shared by the site and aggregator CLIs;
* ``omopfed.cli`` — the one ``omopfed`` command, the only module allowed to import both
  ``node`` (site) and ``federation`` (aggregator).

The bottom modules import nothing else of the project, so ``cohorts`` and ``models`` may use
them without breaking the layering (``tests/test_layering.py`` enforces this).
"""

__version__ = "0.1.0"
