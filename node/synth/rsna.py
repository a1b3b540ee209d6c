"""The synthetic tree in the RSNA-MICCAI 2021 layout, with the odd cases the importer must survive.

``train/<BraTS21ID>/{FLAIR,T1w,T1wCE,T2w}/Image-N.dcm`` plus ``train_labels.csv``
(BraTS21ID with leading zeros, MGMT_value 0/1), as in design.md section 5. The odd cases, all
derived from the plan: a missing sequence folder or an *empty* one (alternately),
a non-DICOM file, a truncated DICOM file, a label row whose id has no folder (the person whose
MRI has no images, plus one id beyond the last person), a folder without a label (MGMT missing
or null in the plan), and no StudyDate in the headers of every fifth person.
The CDM is created empty except for its vocabulary: filling it is the importer's job.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import pandas as pd

from node.synth import vocabulary as v
from node.synth.dicom import RSNA_FOLDERS, SeriesSpec
from node.synth.profiles import SEQUENCES
from node.synth.subjects import Subject

LABELS_FILE = "train_labels.csv"
_LABELLED = {"concept", "source", "numeric", "conflict"}


def empty_site_frames() -> dict[str, pd.DataFrame]:
    """Only the vocabulary: the importer writes the clinical rows."""
    return v.vocabulary_frames()


def _label_rows(subjects: list[Subject]) -> list[tuple[str, int]]:
    rows = [
        (f"{s.person_id:05d}", int(s.labels["mgmt"] == "methylated"))
        for s in subjects
        if s.recorded.get("mgmt") in _LABELLED
    ]
    rows.append((f"{len(subjects) + 1:05d}", 1))  # a label whose folder does not exist
    return rows


def finish_tree(
    subjects: list[Subject], specs: dict[int, list[SeriesSpec]], site_dir: Path
) -> dict[str, Any]:
    """Write the labels CSV and the empty folders; return what an import must report."""
    rows = _label_rows(subjects)
    with (site_dir / LABELS_FILE).open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["BraTS21ID", "MGMT_value"])
        writer.writerows(rows)
    empty, missing = 0, 0
    for s in subjects:
        if not s.images:
            continue
        for sequence in sorted(set(SEQUENCES) - set(s.sequences)):
            if (empty + missing) % 2 == 0:  # alternate: empty folder, absent folder, ...
                (site_dir / "train" / f"{s.person_id:05d}" / RSNA_FOLDERS[sequence]).mkdir(
                    parents=True
                )
                empty += 1
            else:
                missing += 1
    with_folder = {s.person_id for s in subjects if s.images}
    labelled = {int(i) for i, _ in rows}
    return {
        "labels_file": LABELS_FILE,
        "label_rows": len(rows),
        "patient_folders": len(with_folder),
        "imported_patients": len(with_folder),
        "imported_series": sum(len(group) for group in specs.values()),
        "mgmt_measurements": len(with_folder & labelled),
        "methylated": sum(val for i, val in rows if int(i) in with_folder),
        "patients_without_study_date": sum(pid % 5 == 0 for pid in with_folder),
        "skipped": {
            "label_without_folder": len(labelled - with_folder),
            "folder_without_label": len(with_folder - labelled),
            "missing_sequence_folder": missing,
            "empty_folder": empty,
            "non_dicom_file": sum(s.extra_file for s in subjects if s.images),
            "unreadable_file": sum(s.corrupt for s in subjects if s.images),
        },
    }
