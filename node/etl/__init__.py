"""Importers that load public datasets into a site's OMOP CDM (RSNA-MICCAI 2021)."""
