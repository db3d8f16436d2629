"""The variable catalogue and the table contracts, loaded from schemas/.

Everything that names a clinical variable, a unit or a range reads it from here, so the
plain files in schemas/ stay the one source of truth.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

import yaml

from riskcast.errors import CatalogError

TABLES = ("patients", "encounters", "observations", "outcomes")
DIMENSIONLESS_UNITS = frozenset({"1", "{score}", "[pH]"})


@dataclass(frozen=True)
class Conversion:
    """canonical = value * scale + offset."""

    scale: float
    offset: float = 0.0


@dataclass(frozen=True)
class Variable:
    """One clinical variable as the catalogue defines it."""

    name: str
    label: str
    kind: str  # "vital" or "lab"
    unit: str
    loinc: tuple[str, ...]
    plausible_min: float
    plausible_max: float
    stale_after_hours: float
    essential: bool = False
    decimals: int = 1
    conversions: dict[str, Conversion] = field(default_factory=dict)
    codes: dict[str, float] = field(default_factory=dict)

    @property
    def unit_matters(self) -> bool:
        """False for dimensionless scores, where an empty unit is unambiguous."""
        return self.unit not in DIMENSIONLESS_UNITS or bool(self.conversions)


@dataclass(frozen=True)
class Catalog:
    """All variables, with lookups by name and LOINC code."""

    variables: dict[str, Variable]
    unit_aliases: dict[str, str]

    @functools.cached_property
    def by_code(self) -> dict[str, str]:
        """Name or LOINC code -> canonical name."""
        lookup = {name: name for name in self.variables}
        for variable in self.variables.values():
            for code in variable.loinc:
                lookup[code] = variable.name
        return lookup

    @property
    def vitals(self) -> list[str]:
        return [v.name for v in self.variables.values() if v.kind == "vital"]

    @property
    def labs(self) -> list[str]:
        return [v.name for v in self.variables.values() if v.kind == "lab"]

    @property
    def essential(self) -> list[str]:
        return [v.name for v in self.variables.values() if v.essential]

    def __getitem__(self, name: str) -> Variable:
        try:
            return self.variables[name]
        except KeyError:
            raise CatalogError(
                f"variable {name!r} is not in the catalogue (schemas/variables.yaml); "
                f"known: {', '.join(sorted(self.variables))}"
            ) from None

    def canonical_unit(self, unit: str) -> str:
        """Map a common unit spelling to UCUM (unknown spellings pass through unchanged)."""
        return self.unit_aliases.get(unit, unit)


@dataclass(frozen=True)
class Column:
    """One column of a table contract."""

    name: str
    type: str  # string | integer | float | datetime
    required: bool
    allowed: tuple[str, ...] = ()
    aliases: dict[str, str] = field(default_factory=dict)
    value_range: tuple[float, float] | None = None


@dataclass(frozen=True)
class TableContract:
    """A canonical table's contract as written in schemas/<table>.yaml."""

    table: str
    key: tuple[str, ...]
    columns: tuple[Column, ...]
    extra: dict[str, Any]

    @property
    def column_names(self) -> list[str]:
        return [c.name for c in self.columns]

    @property
    def required(self) -> list[str]:
        return [c.name for c in self.columns if c.required]

    def column(self, name: str) -> Column:
        return next(c for c in self.columns if c.name == name)


def _schema_text(filename: str) -> str:
    try:
        return resources.files("riskcast.schemas").joinpath(filename).read_text()
    except FileNotFoundError:
        raise CatalogError(f"schemas/{filename} is missing from the installed package") from None


def _load_yaml(filename: str) -> dict[str, Any]:
    try:
        data = yaml.safe_load(_schema_text(filename))
    except yaml.YAMLError as exc:
        raise CatalogError(f"schemas/{filename}: not valid YAML ({exc})") from exc
    if not isinstance(data, dict):
        raise CatalogError(f"schemas/{filename}: expected a mapping at the top level")
    return data


@functools.cache
def load_catalog() -> Catalog:
    """The variable catalogue from schemas/variables.yaml (cached; it is read-only)."""
    data = _load_yaml("variables.yaml")
    variables: dict[str, Variable] = {}
    for i, entry in enumerate(data.get("variables", [])):
        try:
            low, high = entry["plausible"]
            variable = Variable(
                name=entry["name"],
                label=entry["label"],
                kind=entry["kind"],
                unit=str(entry["unit"]),
                loinc=tuple(str(c) for c in entry.get("loinc", [])),
                plausible_min=float(low),
                plausible_max=float(high),
                stale_after_hours=float(entry["stale_after_hours"]),
                essential=bool(entry.get("essential", False)),
                decimals=int(entry.get("decimals", 1)),
                conversions={
                    str(unit): Conversion(float(c["scale"]), float(c.get("offset", 0.0)))
                    for unit, c in (entry.get("conversions") or {}).items()
                },
                codes={str(k): float(v) for k, v in (entry.get("codes") or {}).items()},
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise CatalogError(f"schemas/variables.yaml: variable #{i + 1} is malformed ({exc!r})") from exc
        if variable.kind not in ("vital", "lab"):
            raise CatalogError(f"schemas/variables.yaml: {variable.name}: kind must be vital or lab")
        if variable.name in variables:
            raise CatalogError(f"schemas/variables.yaml: variable {variable.name!r} is defined twice")
        variables[variable.name] = variable
    aliases = {str(k): str(v) for k, v in (data.get("unit_aliases") or {}).items()}
    return Catalog(variables=variables, unit_aliases=aliases)


@functools.cache
def load_contract(table: str) -> TableContract:
    """The contract of one canonical table from schemas/<table>.yaml."""
    if table not in TABLES:
        raise CatalogError(f"unknown table {table!r}; the canonical tables are {', '.join(TABLES)}")
    data = _load_yaml(f"{table}.yaml")
    columns = tuple(
        Column(
            name=c["name"],
            type=c["type"],
            required=bool(c.get("required", False)),
            allowed=tuple(c.get("allowed", ())),
            aliases={str(k): str(v) for k, v in (c.get("aliases") or {}).items()},
            value_range=tuple(c["range"]) if "range" in c else None,
        )
        for c in data["columns"]
    )
    extra = {k: v for k, v in data.items() if k not in ("table", "key", "columns")}
    return TableContract(table=table, key=tuple(data["key"]), columns=columns, extra=extra)
