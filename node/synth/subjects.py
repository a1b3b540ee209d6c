"""The plan of one synthetic site: who its persons are, what is recorded and what is dirty.

Everything later (OMOP rows, DICOM files, truth.json) is derived from this plan, so the truth is
known *by construction*: every person has a ``kind`` ("member" of the reference cohort or the
one reason it is excluded) and every dirty detail is a flag on a person. Dirt comes in exact
counts: rates times the site's size, rounded, at least one of each kind once a site is big
enough (:data:`MIN_FOR_DIRT` persons), drawn without replacement by a seeded generator.

MGMT labels are drawn per person at the site's prevalence, then floored: once the dirt is known,
if fewer than the profile's ``mgmt_floor`` members *usable* for training (:func:`usable`) carry
one MGMT class, the fewest usable members of the other class are relabelled, chosen by their
own seeded generator, so a site that meets the floor keeps exactly the labels it had.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import date, timedelta

import numpy as np

from node.synth import vocabulary as v
from node.synth.errors import SynthError
from node.synth.phantom import Phantom, make_phantom
from node.synth.profiles import SEQUENCES, Profile, SiteStyle

MIN_FOR_DIRT = 15  # persons in a site before each exclusion kind is present at least once
MIN_MEMBERS_FOR_DIRT = 8  # members before each member-level dirt kind is present at least once
MEMBER = "member"
MARKERS = ("mgmt", "idh", "codeletion_1p19q", "grade")
LABELLED = frozenset({"concept", "source", "numeric"})  # recorded ways that give one class
MGMT_CLASSES = ("methylated", "unmethylated")


@dataclass(frozen=True)
class Subject:
    """One person of a synthetic site and everything the generator will write about them."""

    person_id: int
    source_id: str
    kind: str
    gender: int
    year_of_birth: int
    index_date: date
    condition_concept_id: int
    obs_start: date
    obs_end: date
    labels: dict[str, str] = field(default_factory=dict)  # true biology
    # how each marker is recorded: concept | source | numeric | null | conflict | missing
    recorded: dict[str, str] = field(default_factory=dict)
    second_condition_date: date | None = None
    mri_date: date | None = None
    label_date: date | None = None
    mgmt_date: date | None = None
    mgmt_score: float | None = None
    images: bool = False
    sequences: tuple[str, ...] = ()
    seg: bool = False
    corrupt: bool = False
    extra_file: bool = False
    phantom: Phantom | None = None

    @property
    def age_at_index(self) -> int:
        return self.index_date.year - self.year_of_birth


def usable(s: Subject) -> bool:
    """Whether the resolver, under default settings (all four sequences required), includes
    this person with an MGMT label: a member with every sequence, no truncated file and an
    MGMT record that classifies (not NULL, not conflicting, not missing)."""
    return (
        s.kind == MEMBER
        and s.images
        and not s.corrupt
        and set(s.sequences) == set(SEQUENCES)
        and s.recorded.get("mgmt") in LABELLED
    )


def _count(rate: float, n: int, floor_from: int = MIN_FOR_DIRT) -> int:
    """Exact count of a dirt kind among ``n``: at least one once ``n >= floor_from``."""
    count = round(rate * n)
    return max(1, count) if n >= floor_from and rate > 0 else count


def _biology(rng: np.random.Generator, prevalence: float) -> tuple[int, dict[str, str]]:
    """A glioma subtype and its true markers, with textbook correlations."""
    kind = rng.choice(3, p=[0.55, 0.3, 0.15])
    mgmt = "methylated" if rng.random() < prevalence else "unmethylated"
    if kind == 0:
        concept = v.GLIOBLASTOMA if rng.random() < 0.5 else v.GLIOBLASTOMA_OF_BRAIN
        idh, codel, grade = ("mutant" if rng.random() < 0.1 else "wildtype"), "intact", 4
    elif kind == 1:
        concept = v.ASTROCYTOMA
        idh = "mutant" if rng.random() < 0.85 else "wildtype"
        codel, grade = "intact", int(rng.choice([2, 3, 4], p=[0.4, 0.4, 0.2]))
    else:
        concept, idh, codel = v.OLIGODENDROGLIOMA, "mutant", "codeleted"
        grade = int(rng.choice([2, 3], p=[0.6, 0.4]))
    labels = {"mgmt": mgmt, "idh": idh, "codeletion_1p19q": codel, "grade": f"grade_{grade}"}
    return concept, labels


def _days(rng: np.random.Generator, low: int, high: int) -> timedelta:
    return timedelta(days=int(rng.integers(low, high + 1)))


def _base_subject(rng: np.random.Generator, style: SiteStyle, pid: int, kind: str) -> Subject:
    index = date(2015, 1, 1) + _days(rng, 0, 7 * 365)
    age = int(rng.integers(6, 18)) if kind == "minor" else int(rng.integers(25, 81))
    concept, labels = _biology(rng, style.mgmt_prevalence)
    if kind == "meningioma":
        concept, labels = v.MENINGIOMA, {}
    return Subject(
        person_id=pid,
        source_id=f"{style.name[-1].upper()}{pid:05d}",
        kind=kind,
        gender=v.MALE if rng.random() < 0.55 else v.FEMALE,
        year_of_birth=index.year - age,
        index_date=index,
        condition_concept_id=concept,
        obs_start=index - _days(rng, 30, 700),
        obs_end=index,
        labels=labels,
        recorded=dict.fromkeys(labels, "concept"),
    )


def _events(rng: np.random.Generator, s: Subject) -> Subject:
    """Dates of the MRI, pathology and a possible second diagnosis, by exclusion kind."""
    if s.kind == "meningioma":
        return s
    anchor = s.index_date
    second = None
    if s.kind == "index_first":
        second = anchor + _days(rng, 600, 800)
        anchor = second
    mri = anchor + (_days(rng, -20, 20) if s.kind != "mri_early" else -_days(rng, 60, 200))
    labels_on = anchor + _days(rng, 3, 45)
    mgmt_on = anchor + _days(rng, 400, 480) if s.kind == "mgmt_late" else labels_on
    obs_start = anchor + _days(rng, 5, 20) if s.kind == "outside_observation" else s.obs_start
    recorded = dict(s.recorded)
    if s.kind == "no_mgmt":
        recorded["mgmt"] = "missing"
    return replace(
        s,
        second_condition_date=second,
        mri_date=mri,
        label_date=labels_on,
        mgmt_date=mgmt_on,
        obs_start=obs_start,
        recorded=recorded,
        images=True,
        sequences=SEQUENCES,
    )


def _close_observation(rng: np.random.Generator, s: Subject) -> Subject:
    dates = [d for d in (s.index_date, s.second_condition_date, s.mri_date, s.mgmt_date) if d]
    return replace(s, obs_end=max(dates) + _days(rng, 200, 1000))


def plan_site(
    style: SiteStyle,
    profile: Profile,
    patients: int,
    seed: int,
    *,
    difficulty: float | None = None,
    exclusions: bool = True,
) -> list[Subject]:
    """The persons of one site, deterministic in (seed, site index)."""
    if patients < 1:
        raise SynthError("--patients must be at least 1")
    rng = np.random.default_rng([seed, style.index, 0])
    counts = {k: _count(r, patients) for k, r in profile.exclusions.items()} if exclusions else {}
    if sum(counts.values()) >= patients:
        raise SynthError(f"{patients} patients per site is too few for the dirt of the profile")
    kinds = [k for k, n in counts.items() for _ in range(n)]
    kinds += [MEMBER] * (patients - len(kinds))
    kinds = [kinds[i] for i in rng.permutation(patients)]
    subjects = [_base_subject(rng, style, pid, kind) for pid, kind in enumerate(kinds, start=1)]
    subjects = [_events(rng, s) for s in subjects]
    subjects = _member_dirt(rng, style, profile, subjects)
    subjects = _floor_mgmt(np.random.default_rng([seed, style.index, 2]), subjects, profile)
    subjects = [_close_observation(rng, s) for s in subjects]
    level = profile.difficulty if difficulty is None else difficulty
    return [
        replace(
            s,
            phantom=make_phantom(
                np.random.default_rng([seed, style.index, s.person_id, 1]), s.labels, level
            ),
        )
        if s.images
        else s
        for s in subjects
    ]


def _take(rng: np.random.Generator, pool: list[int], n: int) -> list[int]:
    """``n`` ids drawn without replacement from ``pool``; removed from it."""
    chosen = [pool[i] for i in sorted(rng.choice(len(pool), size=min(n, len(pool)), replace=False))]
    for pid in chosen:
        pool.remove(pid)
    return chosen


def _member_dirt(
    rng: np.random.Generator, style: SiteStyle, profile: Profile, subjects: list[Subject]
) -> list[Subject]:
    """Missing labels, odd MGMT records, missing images and bad files among the members."""
    by_id = {s.person_id: s for s in subjects}
    members = [s.person_id for s in subjects if s.kind == MEMBER]
    m = len(members)
    pool = list(members)
    for how, rate in (
        ("null", profile.mgmt_null_rate),
        ("numeric", profile.mgmt_numeric_rate),
        ("source", profile.mgmt_source_only_rate),
        ("conflict", 0.01),
    ):
        for pid in _take(rng, pool, _count(rate, m, MIN_MEMBERS_FOR_DIRT)):
            by_id[pid] = _set_recorded(by_id[pid], "mgmt", how, rng)
    for marker, rate in (
        ("idh", style.idh_missing_rate),
        ("codeletion_1p19q", style.codeletion_missing_rate),
        ("grade", style.grade_missing_rate),
    ):
        for pid in _take(rng, list(members), _count(rate, m, MIN_MEMBERS_FOR_DIRT)):
            by_id[pid] = _set_recorded(by_id[pid], marker, "missing", rng)
    for pid in _take(rng, list(members), _count(profile.recurrence_rate, m, MIN_MEMBERS_FOR_DIRT)):
        s = by_id[pid]
        by_id[pid] = replace(s, second_condition_date=s.index_date + _days(rng, 400, 700))
    by_id = _image_dirt(rng, style, profile, by_id, members)
    return [by_id[s.person_id] for s in subjects]


def _floor_mgmt(
    rng: np.random.Generator, subjects: list[Subject], profile: Profile
) -> list[Subject]:
    """Relabel the fewest usable members so that each MGMT class has ``profile.mgmt_floor``
    usable members (at most half of the usable ones, so both classes can have it)."""
    pool = [s for s in subjects if usable(s)]
    floor = min(profile.mgmt_floor, len(pool) // 2)
    by_id = {s.person_id: s for s in subjects}
    for wanted, other in (MGMT_CLASSES, MGMT_CLASSES[::-1]):
        short = floor - sum(s.labels["mgmt"] == wanted for s in pool)
        if short <= 0:
            continue
        donors = [s.person_id for s in pool if s.labels["mgmt"] == other]
        for pid in _take(rng, donors, short):
            relabelled = replace(by_id[pid], labels={**by_id[pid].labels, "mgmt": wanted})
            by_id[pid] = _set_recorded(relabelled, "mgmt", relabelled.recorded["mgmt"], rng)
    return [by_id[s.person_id] for s in subjects]


def _set_recorded(s: Subject, marker: str, how: str, rng: np.random.Generator) -> Subject:
    recorded = {**s.recorded, marker: how}
    score = s.mgmt_score
    if how == "numeric":
        methylated = s.labels["mgmt"] == "methylated"
        score = round(float(rng.uniform(15, 60) if methylated else rng.uniform(0, 7)), 1)
    return replace(s, recorded=recorded, mgmt_score=score)


def _image_dirt(
    rng: np.random.Generator,
    style: SiteStyle,
    profile: Profile,
    by_id: dict[int, Subject],
    members: list[int],
) -> dict[int, Subject]:
    pool = list(members)
    small = 1 if len(members) >= MIN_MEMBERS_FOR_DIRT else 0
    for pid in _take(rng, pool, small):
        by_id[pid] = replace(by_id[pid], images=False, sequences=())
    for pid in _take(rng, pool, small):
        by_id[pid] = replace(by_id[pid], corrupt=True)
    for pid in _take(rng, pool, small):
        by_id[pid] = replace(by_id[pid], extra_file=True)
    for pid in _take(
        rng, pool, _count(profile.missing_sequence_rate, len(members), MIN_MEMBERS_FOR_DIRT)
    ):
        dropped = SEQUENCES[int(rng.integers(1, len(SEQUENCES)))]  # FLAIR always kept
        kept = tuple(q for q in SEQUENCES if q != dropped)
        by_id[pid] = replace(by_id[pid], sequences=kept)
    with_images = [pid for pid in members if by_id[pid].images]
    for pid in _take(rng, with_images, round(style.seg_fraction * len(with_images))):
        by_id[pid] = replace(by_id[pid], seg=True)
    return by_id
