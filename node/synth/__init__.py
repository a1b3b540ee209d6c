"""The synthetic radiogenomics federation: OMOP rows, DICOM MR series and SEG, truth.json.

Entry point: :func:`node.synth.federation.generate_federation`. See
docs/explanation/synthetic-data.md for what is generated and why.
"""
