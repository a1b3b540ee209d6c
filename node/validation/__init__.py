"""Data contracts: the Great Expectations suites a site's data must pass before training.

Three suites, each versioned and hashed (:mod:`node.validation.suites`): CDM conformance
(mirroring OHDSI DataQualityDashboard check kinds), the cohort manifest and its labels, and the
images. ``omopfed validate`` runs them (:func:`node.validation.service.validate_site`), writes a
JSON summary and Data Docs into the workspace, and records the outcome for the training gate
(:mod:`node.gate`).

Great Expectations costs seconds to import, so only :mod:`node.validation.engine` imports it,
inside the function that validates. Nothing in this package's ``__init__`` imports anything:
``node.settings`` reads the thresholds from :mod:`node.validation.thresholds` without pulling in
pandas or Great Expectations.
"""
