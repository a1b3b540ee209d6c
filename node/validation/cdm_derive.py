"""Typed CDM frames and the derived columns of the CDM suite (pure pandas, vectorised).

A derived column holds the *offending value* where a row breaks a rule and null elsewhere, so
each check is "values must be null" and the Data Docs show the orphan ids or implausible dates
(they stay on the site, like the data). Every function here is vectorised: the suite must check
a million measurement rows in seconds.

Concept rules (foreign keys into ``concept``, domains, standard concepts) are vacuous when the
vocabulary is empty: the suite warns about the empty vocabulary instead (``cdm.concept.cdm_table``)
rather than reporting every concept id as an orphan. Concept id 0 ("no matching concept") is
always allowed as a foreign key, as in OHDSI's DataQualityDashboard.
"""

from __future__ import annotations

from datetime import date

import numpy as np
import pandas as pd
from pandas.api.types import is_datetime64_any_dtype, is_float_dtype, is_integer_dtype

from node.validation import cdm_spec as spec
from node.validation.thresholds import ValidationSettings


def _mask(condition: pd.Series) -> np.ndarray:
    """A plain boolean array from a possibly nullable boolean Series (NA counts as False)."""
    return np.asarray(condition.fillna(False).to_numpy(dtype=bool, na_value=False))


def _as_integer(raw: pd.Series) -> tuple[pd.Series, np.ndarray]:
    if is_integer_dtype(raw.dtype):
        return raw.astype("Int64"), np.zeros(len(raw), dtype=bool)
    if raw.dtype == object and not raw.notna().any():  # a column the table lacks: all null
        return pd.Series(pd.NA, index=raw.index, dtype="Int64"), np.zeros(len(raw), dtype=bool)
    numbers = raw if is_float_dtype(raw.dtype) else pd.to_numeric(raw, errors="coerce")
    numbers = numbers.astype("float64")
    whole = numbers.notna() & (numbers == np.floor(numbers))
    bad = _mask(raw.notna()) & ~_mask(whole)
    return numbers.where(~bad).astype("Int64"), bad


def _as_date(raw: pd.Series) -> tuple[pd.Series, np.ndarray]:
    if is_datetime64_any_dtype(raw.dtype):
        return raw.astype("datetime64[us]"), np.zeros(len(raw), dtype=bool)
    values = pd.to_datetime(raw, errors="coerce").astype("datetime64[us]")
    bad = _mask(raw.notna()) & ~_mask(values.notna())
    return values, bad


def normalise(table: str, frame: pd.DataFrame) -> pd.DataFrame:
    """Columns converted to their spec types; ``bad_type`` says what did not convert.

    ``bad_type`` holds ``"column=value"`` (several joined by "; ") on rows where an integer or
    date field holds something else, null on every other row: one check per table instead of
    one per field keeps the suite fast (each Great Expectations check costs ~15 ms).
    """
    columns: dict[str, pd.Series] = {}
    bad_type = np.full(len(frame), None, dtype=object)
    for name in spec.loaded_columns(table):
        raw = frame[name]
        kind = spec.datatype(table, name)
        if kind in ("integer", "date"):
            values, bad = _as_integer(raw) if kind == "integer" else _as_date(raw)
            columns[name] = values
            for row in np.flatnonzero(bad):
                text = f"{name}={raw.iloc[row]!s}"
                bad_type[row] = text if bad_type[row] is None else f"{bad_type[row]}; {text}"
        elif kind == "datetime":
            columns[name] = pd.to_datetime(raw, errors="coerce")
        elif kind == "float":
            columns[name] = pd.to_numeric(raw, errors="coerce").astype("float64")
        else:
            columns[name] = raw
    if table != "concept":
        columns["bad_type"] = pd.Series(bad_type, index=frame.index, dtype=object)
    return pd.DataFrame(columns, index=frame.index)


def _unique_by(frame: pd.DataFrame, key: str, value: str) -> pd.Series:
    """``value`` indexed by ``key`` (first row of a duplicated key: that is a PK failure)."""
    rows = frame.dropna(subset=[key]).drop_duplicates(key)
    return pd.Series(rows[value].to_numpy(), index=_floats(rows[key]))


def _floats(ids: pd.Series) -> np.ndarray:
    """Integer ids as float64 (NA as NaN): exact below 2**53, and one index dtype for lookups."""
    return np.asarray(ids.astype("Float64").to_numpy(dtype="float64", na_value=np.nan))


def _lookup(ids: pd.Series, mapping: pd.Series) -> pd.Series:
    """``mapping[id]`` for every id (missing or NA ids give NA), aligned with ``ids``.

    ``Series.map`` on nullable integer ids fails for some mapping dtypes (pandas 3); a reindex
    on a float index is vectorised and dtype-agnostic.
    """
    found = mapping.reindex(_floats(ids))
    found.index = ids.index
    return found


def _foreign_keys(table: str, frame: pd.DataFrame, typed: dict[str, pd.DataFrame]) -> None:
    concept = typed["concept"]
    vocabulary = len(concept) > 0
    domains = _unique_by(concept, "concept_id", "domain_id")
    for fk in spec.foreign_keys():
        if fk.table != table:
            continue
        values = frame[fk.column]
        is_concept = fk.ref_table == "concept"
        keys = typed[fk.ref_table][fk.ref_column].dropna().unique()
        bad = _mask(values.notna()) & ~_mask(values.isin(keys))
        if is_concept:
            bad &= _mask(values != 0) & vocabulary
        frame[f"orphan__{fk.column}"] = values.where(bad)
        if fk.domain:
            found = _lookup(values, domains)
            wrong = _mask(found.notna()) & _mask(found != fk.domain) & _mask(values != 0)
            frame[f"wrong_domain__{fk.column}"] = values.where(wrong)


def _nonstandard(table: str, frame: pd.DataFrame, typed: dict[str, pd.DataFrame]) -> None:
    column = spec.MAIN_CONCEPTS.get(table)
    if column is None:
        return
    concept = typed["concept"].dropna(subset=["concept_id"]).drop_duplicates("concept_id")
    flag = (concept["standard_concept"].astype("string").fillna("") != "S") | concept[
        "invalid_reason"
    ].notna()
    bad_ids = concept.loc[_mask(flag), "concept_id"].unique()
    values = frame[column]
    bad = _mask(values.isin(bad_ids)) & _mask(values != 0)
    frame[f"nonstandard__{column}"] = values.where(bad)


def _outside_observation(
    person_ids: pd.Series, dates: pd.Series, periods: pd.DataFrame
) -> np.ndarray:
    """Rows whose date lies in no observation period of their person (vectorised join)."""
    events = pd.DataFrame({"person_id": person_ids, "d": dates, "row": np.arange(len(dates))})
    events = events.dropna(subset=["person_id", "d"])
    spans = periods[
        ["person_id", "observation_period_start_date", "observation_period_end_date"]
    ].dropna()
    joined = events.merge(spans, on="person_id", how="inner")
    inside = (joined["d"] >= joined["observation_period_start_date"]) & (
        joined["d"] <= joined["observation_period_end_date"]
    )
    covered = np.zeros(len(dates), dtype=bool)
    covered[joined["row"].to_numpy()[_mask(inside)]] = True
    bad = np.zeros(len(dates), dtype=bool)
    bad[events["row"].to_numpy()] = True
    return bad & ~covered


def _dates(
    table: str,
    frame: pd.DataFrame,
    typed: dict[str, pd.DataFrame],
    t: ValidationSettings,
    today: date,
) -> None:
    start = spec.EVENT_DATES[table][0]
    dates = frame[start]
    person_ids = frame["person_id"]
    frame[f"future__{start}"] = dates.where(_mask(dates > pd.Timestamp(today)))
    earliest = pd.Timestamp(t.earliest_plausible_date)
    frame[f"too_early__{start}"] = dates.where(_mask(dates < earliest))
    births = _lookup(person_ids, _unique_by(typed["person"], "person_id", "year_of_birth"))
    before = _mask(dates.dt.year < births.astype("Float64"))
    frame[f"before_birth__{start}"] = dates.where(before)
    if table not in ("death", "observation_period"):
        death = typed["death"]
        deaths = death.sort_values("death_date").pipe(_unique_by, "person_id", "death_date")
        limit = _lookup(person_ids, deaths) + pd.Timedelta(days=t.max_days_after_death)
        frame[f"after_death__{start}"] = dates.where(_mask(dates > limit))
    if table in spec.OBSERVED_EVENTS:
        outside = _outside_observation(person_ids, dates, typed["observation_period"])
        frame[f"outside_observation__{start}"] = dates.where(outside)


def add_derived(
    table: str,
    frame: pd.DataFrame,
    typed: dict[str, pd.DataFrame],
    t: ValidationSettings,
    today: date,
) -> pd.DataFrame:
    """``frame`` (typed) with the derived columns of the table's checks added."""
    frame = frame.copy(deep=False)  # copy-on-write: the typed frame stays as it was
    if table == "concept":
        return frame
    _foreign_keys(table, frame, typed)
    _nonstandard(table, frame, typed)
    if table in spec.EVENT_DATES:
        _dates(table, frame, typed, t, today)
    if table == "person":
        years = frame["year_of_birth"]
        frame["future__year_of_birth"] = years.where(_mask(years > today.year))
    return frame


def marker_frame(measurement: pd.DataFrame, markers: dict[str, list[int]]) -> pd.DataFrame:
    """One row per marker measurement; ``has_value__<marker>`` True/False on its rows, else NA."""
    concept = measurement["measurement_concept_id"]
    by_concept = {cid: name for name, ids in markers.items() for cid in ids}
    rows = measurement[_mask(concept.isin(list(by_concept)))]
    value_concept = rows["value_as_concept_id"]
    source = rows["value_source_value"].astype("string").str.strip().fillna("")
    has_value = (
        _mask(value_concept.notna() & (value_concept != 0))
        | _mask(source != "")
        | _mask(rows["value_as_number"].notna())
    )
    which = rows["measurement_concept_id"].map(by_concept)
    frame = pd.DataFrame(index=rows.index)
    for name in sorted(markers):
        column = pd.Series(has_value, index=rows.index, dtype="boolean")
        frame[f"has_value__{name}"] = column.where(_mask(which == name), pd.NA)
    return frame
