"""The shared concept ids of the synthetic federation and the vocabulary rows that define them.

Cohort definitions select by concept id and "include descendants" walks ``concept_ancestor``:
an empty vocabulary silently gives empty cohorts (design.md section 4). So every site the
generator (or the RSNA-MICCAI importer) writes carries the concept, concept_ancestor, domain,
vocabulary and concept_class rows of every concept its data uses. Ids >= 2,000,000,000 are
site-local concepts, the range OMOP reserves for them; the rest are OHDSI standard ids
(design.md section 4). Label test/value ids are *also* listed in the concept map, which is what
label resolution reads; they are repeated here only to build the vocabulary rows.
"""

from __future__ import annotations

from datetime import date

import pandas as pd

GLIOMA = 2000000100
GLIOBLASTOMA = 4174444
GLIOBLASTOMA_OF_BRAIN = 40571980
ASTROCYTOMA = 2000000101
OLIGODENDROGLIOMA = 2000000102
MENINGIOMA = 2000000103  # a distractor: a brain tumour that is not a glioma
MRI_BRAIN = 37311324
MODALITY_MR = 4013636
MALE = 8507
FEMALE = 8532
EHR = 32817
OUTPATIENT_VISIT = 9202
PERCENT = 8554
CDM_V54 = 756265

MGMT_TEST = 2000000201
IDH_TEST = 2000000202
CODELETION_TEST = 2000000203
GRADE_TEST = 2000000204
MGMT_METHYLATED = 2000000301
MGMT_UNMETHYLATED = 2000000302
POSITIVE = 9191
NEGATIVE = 9189
DETECTED = 4126681
NOT_DETECTED = 9190
GRADE_VALUES = {1: 2000000311, 2: 2000000312, 3: 2000000313, 4: 2000000314}
# image_feature_concept_id of the MR sequence a series holds (MI-CDM has no column for it).
SEQUENCE_FEATURES = {"FLAIR": 2000000401, "T1": 2000000402, "T1CE": 2000000403, "T2": 2000000404}

LOCAL_VOCABULARY = "omopfed"
_VALID_START = date(1970, 1, 1)
_VALID_END = date(2099, 12, 31)

# concept_id, name, domain, vocabulary, class, code
_CONCEPTS: list[tuple[int, str, str, str, str, str]] = [
    (GLIOMA, "Glioma", "Condition", LOCAL_VOCABULARY, "Clinical Finding", "GLIOMA"),
    (GLIOBLASTOMA, "Glioblastoma", "Condition", "SNOMED", "Clinical Finding", "393563007"),
    (
        GLIOBLASTOMA_OF_BRAIN,
        "Glioblastoma of brain",
        "Condition",
        "ICDO3",
        "ICDO Condition",
        "9440/3-C71.9",
    ),
    (ASTROCYTOMA, "Astrocytoma", "Condition", LOCAL_VOCABULARY, "Clinical Finding", "ASTROCYTOMA"),
    (
        OLIGODENDROGLIOMA,
        "Oligodendroglioma",
        "Condition",
        LOCAL_VOCABULARY,
        "Clinical Finding",
        "OLIGODENDROGLIOMA",
    ),
    (MENINGIOMA, "Meningioma", "Condition", LOCAL_VOCABULARY, "Clinical Finding", "MENINGIOMA"),
    (MRI_BRAIN, "MRI of brain", "Procedure", "SNOMED", "Procedure", "MRI-BRAIN"),
    (MODALITY_MR, "Magnetic resonance imaging", "Procedure", "SNOMED", "Procedure", "MR"),
    (MALE, "MALE", "Gender", "Gender", "Gender", "M"),
    (FEMALE, "FEMALE", "Gender", "Gender", "Gender", "F"),
    (EHR, "EHR", "Type Concept", "Type Concept", "Type Concept", "OMOP4976890"),
    (OUTPATIENT_VISIT, "Outpatient Visit", "Visit", "Visit", "Visit", "OP"),
    (PERCENT, "percent", "Unit", "UCUM", "Unit", "%"),
    (CDM_V54, "OMOP CDM Version 5.4.0", "Metadata", "CDM", "CDM", "CDM v5.4.0"),
    (MGMT_TEST, "MGMT promoter methylation", "Measurement", LOCAL_VOCABULARY, "Lab Test", "MGMT"),
    (IDH_TEST, "IDH mutation", "Measurement", LOCAL_VOCABULARY, "Lab Test", "IDH"),
    (CODELETION_TEST, "1p/19q codeletion", "Measurement", LOCAL_VOCABULARY, "Lab Test", "1P19Q"),
    (GRADE_TEST, "WHO CNS tumour grade", "Measurement", LOCAL_VOCABULARY, "Lab Test", "WHO-GRADE"),
    (MGMT_METHYLATED, "MGMT methylated", "Meas Value", LOCAL_VOCABULARY, "Answer", "MGMT-M"),
    (MGMT_UNMETHYLATED, "MGMT unmethylated", "Meas Value", LOCAL_VOCABULARY, "Answer", "MGMT-U"),
    (POSITIVE, "Positive", "Meas Value", "SNOMED", "Qualifier Value", "10828004"),
    (NEGATIVE, "Negative", "Meas Value", "SNOMED", "Qualifier Value", "260385009"),
    (DETECTED, "Detected", "Meas Value", "SNOMED", "Qualifier Value", "260373001"),
    (NOT_DETECTED, "Not detected", "Meas Value", "SNOMED", "Qualifier Value", "260415000"),
    *[
        (cid, f"Grade {g}", "Meas Value", LOCAL_VOCABULARY, "Answer", f"GRADE-{g}")
        for g, cid in GRADE_VALUES.items()
    ],
    *[
        (cid, f"MR sequence {name}", "Observation", LOCAL_VOCABULARY, "Answer", f"SEQ-{name}")
        for name, cid in SEQUENCE_FEATURES.items()
    ],
]

# (ancestor, descendant, levels of separation): the glioma hierarchy, closed transitively.
_HIERARCHY = [
    (GLIOMA, GLIOBLASTOMA, 1),
    (GLIOMA, GLIOBLASTOMA_OF_BRAIN, 2),
    (GLIOMA, ASTROCYTOMA, 1),
    (GLIOMA, OLIGODENDROGLIOMA, 1),
    (GLIOBLASTOMA, GLIOBLASTOMA_OF_BRAIN, 1),
]


def glioma_concept_set() -> set[int]:
    """The glioma concept and all its descendants, as a cohort's concept set would expand it."""
    return {GLIOMA} | {d for a, d, _ in _HIERARCHY if a == GLIOMA}


def concept_frame() -> pd.DataFrame:
    """One ``concept`` row per concept the generated data uses, all standard and valid."""
    return pd.DataFrame(
        [
            {
                "concept_id": cid,
                "concept_name": name,
                "domain_id": domain,
                "vocabulary_id": vocabulary,
                "concept_class_id": klass,
                "standard_concept": "S",
                "concept_code": code,
                "valid_start_date": _VALID_START,
                "valid_end_date": _VALID_END,
                "invalid_reason": None,
            }
            for cid, name, domain, vocabulary, klass, code in _CONCEPTS
        ]
    )


def concept_ancestor_frame() -> pd.DataFrame:
    """Self rows (level 0) for every concept plus every ancestor-descendant pair."""
    rows = [(cid, cid, 0) for cid, *_ in _CONCEPTS] + _HIERARCHY
    return pd.DataFrame(
        [
            {
                "ancestor_concept_id": a,
                "descendant_concept_id": d,
                "min_levels_of_separation": level,
                "max_levels_of_separation": level,
            }
            for a, d, level in rows
        ]
    )


def _name_frame(key: str, values: list[str], name_column: str, concept_column: str) -> pd.DataFrame:
    return pd.DataFrame([{key: v, name_column: v, concept_column: 0} for v in sorted(set(values))])


def vocabulary_frames() -> dict[str, pd.DataFrame]:
    """Every vocabulary table the generated concepts need, keyed by table name."""
    concepts = concept_frame()
    frames = {
        "concept": concepts,
        "concept_ancestor": concept_ancestor_frame(),
        "domain": _name_frame(
            "domain_id", list(concepts["domain_id"]), "domain_name", "domain_concept_id"
        ),
        "concept_class": _name_frame(
            "concept_class_id",
            list(concepts["concept_class_id"]),
            "concept_class_name",
            "concept_class_concept_id",
        ),
    }
    vocabularies = _name_frame(
        "vocabulary_id", list(concepts["vocabulary_id"]), "vocabulary_name", "vocabulary_concept_id"
    )
    vocabularies["vocabulary_version"] = "omopfed-synthetic-1"
    frames["vocabulary"] = vocabularies
    return frames
