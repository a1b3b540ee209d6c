"""Read a cohort definition file of any of the three kinds and fix its canonical content.

The kind comes from the content, not a guess from the name: ``.sql`` is SQL; a JSON object
with ``PrimaryCriteria`` is an ATLAS/Circe export; one with ``schema_version`` is native. The
canonical content (sorted-key compact JSON, or the SQL with normalised line ends) is what the
SHA-256 ``definition_hash`` covers, so reformatting a file does not change its identity.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from cohorts import circe
from cohorts.errors import CohortDefinitionError
from cohorts.model import CohortDefinition, parse_definition

Kind = Literal["json", "sql", "circe"]
MAX_BYTES = 5_000_000  # a definition is small; a huge file is a mistake, not a cohort


@dataclass(frozen=True)
class Definition:
    """A loaded, validated definition. Exactly one of native / sql / circe_json is set."""

    kind: Kind
    name: str
    canonical: str
    native: CohortDefinition | None = None
    sql: str | None = None
    circe_json: dict[str, Any] | None = None

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.canonical.encode("utf-8")).hexdigest()

    @property
    def rule_names(self) -> list[str]:
        if self.native is not None:
            return [rule.name for rule in self.native.inclusion_rules]
        if self.circe_json is not None:
            rules = self.circe_json.get("InclusionRules") or []
            return [str(r.get("name") or f"rule {i + 1}") for i, r in enumerate(rules)]
        return []


def _canonical_json(data: Any) -> str:
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def load_definition(path: Path | str) -> Definition:
    """Load and validate ``path``; raise CohortDefinitionError (or a subclass) if it is wrong."""
    path = Path(path)
    try:
        if path.stat().st_size > MAX_BYTES:
            raise CohortDefinitionError(f"{path}: larger than {MAX_BYTES} bytes")
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise CohortDefinitionError(f"cohort definition {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise CohortDefinitionError(f"cannot read {path}: {exc}") from None
    if path.suffix.lower() == ".sql":
        return sql_definition(text, name=path.stem)
    return json_definition(text, source=str(path), default_name=path.name.split(".")[0])


def sql_definition(text: str, name: str) -> Definition:
    """A SQL definition: the text is checked when it is prepared for a database."""
    canonical = "\n".join(line.rstrip() for line in text.replace("\r\n", "\n").split("\n"))
    return Definition(kind="sql", name=name, canonical=canonical.strip() + "\n", sql=text)


def json_definition(text: str, source: str, default_name: str = "cohort") -> Definition:
    """A native or Circe definition from JSON text."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise CohortDefinitionError(
            f"{source}: not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})"
        ) from None
    if isinstance(data, dict) and "PrimaryCriteria" in data:
        circe.check_subset(data)
        name = str(data.get("Title") or default_name)
        return Definition("circe", name, _canonical_json(data), circe_json=data)
    native = parse_definition(data, source)
    canonical = _canonical_json(native.model_dump(mode="json"))
    return Definition("json", native.name, canonical, native=native)
