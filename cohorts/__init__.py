"""The OMOP database layer and cohort definitions.

Connections, schema names and identifier quoting (``cohorts.db``), the DDL generated from the
OHDSI field-level spec (``cohorts.ddl``), creating and checking a CDM (``cohorts.schema``), and
later the cohort definitions themselves. Imports nothing of ``node``, ``models``, ``federation``.
"""
