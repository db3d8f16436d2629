"""Source code -> catalogue variable: LOINC through the catalogue, local codes through mapping files.

The standard formats (MEDS, FHIR, OMOP) name a measurement by a code. A LOINC code maps
through the catalogue (schemas/variables.yaml). Local codes (MIMIC-IV item ids, a hospital's
own code system) map through a mapping file per source in schemas/mappings/ (see its
README): item id -> variable, the unit the item is recorded in, and, for scores charted in
parts (GCS eye + verbal + motor), which part it is.

Everything here works on the distinct codes of a source (thousands), never per row; the
adapters join the result onto their rows.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import polars as pl
import yaml

from riskcast.catalog import Catalog, load_catalog
from riskcast.errors import CatalogError

LOINC_SYSTEM = "http://loinc.org"
UCUM_SYSTEM = "http://unitsofmeasure.org"
DEFAULT_PLACEHOLDER_UNITS = ("UNK", "")

# Columns of a code table: one row per distinct source code (see `code_table`).
CODE_TABLE_SCHEMA = {
    "variable": pl.String,  # catalogue name, or null when the code is not mapped
    "default_unit": pl.String,  # the unit to use when the source gives none
    "part": pl.String,  # part of a sum (gcs eye/verbal/motor), else null
}


@dataclass(frozen=True)
class MappedItem:
    """One local code of a mapping file."""

    variable: str
    unit: str | None = None
    part: str | None = None
    label: str = ""


@dataclass(frozen=True)
class SourceMapping:
    """A mapping file: local codes of one source -> catalogue variables."""

    source: str
    items: dict[str, MappedItem]
    meds_datasets: tuple[str, ...] = ()
    meds_code: re.Pattern[str] | None = None
    fhir_systems: tuple[str, ...] = ()
    placeholder_units: tuple[str, ...] = DEFAULT_PLACEHOLDER_UNITS
    sums: dict[str, tuple[str, ...]] = field(default_factory=dict)  # variable -> its parts


def _parse_mapping(data: object, name: str, catalog: Catalog) -> SourceMapping:
    if not isinstance(data, dict) or not isinstance(data.get("items"), dict):
        raise CatalogError(f"{name}: expected a mapping with `source` and `items`")
    items: dict[str, MappedItem] = {}
    sums: dict[str, set[str]] = {}
    for code, entry in data["items"].items():
        if not isinstance(entry, dict) or "variable" not in entry:
            raise CatalogError(f"{name}: item {code!r} needs a `variable`")
        variable = str(entry["variable"])
        if variable not in catalog.variables:
            raise CatalogError(f"{name}: item {code!r} names variable {variable!r}, which is not in the catalogue")
        part = str(entry["part"]) if entry.get("part") is not None else None
        if part is not None:
            sums.setdefault(variable, set()).add(part)
        unit = entry.get("unit")
        items[str(code)] = MappedItem(variable, None if unit is None else str(unit), part, str(entry.get("label", "")))
    try:
        pattern = re.compile(data["meds_code"]) if data.get("meds_code") else None
    except re.error as exc:
        raise CatalogError(f"{name}: meds_code is not a regular expression ({exc})") from exc
    if pattern is not None and not {"item", "unit"} <= set(pattern.groupindex):
        raise CatalogError(f"{name}: meds_code needs the named groups `item` and `unit`")
    return SourceMapping(
        source=str(data.get("source", name)),
        items=items,
        meds_datasets=tuple(str(d) for d in data.get("meds_datasets", ())),
        meds_code=pattern,
        fhir_systems=tuple(str(s) for s in data.get("fhir_systems", ())),
        placeholder_units=tuple(str(u) for u in data.get("placeholder_units", DEFAULT_PLACEHOLDER_UNITS)),
        sums={variable: tuple(sorted(parts)) for variable, parts in sums.items()},
    )


@functools.cache
def packaged_mappings() -> tuple[SourceMapping, ...]:
    """The mapping files shipped in schemas/mappings/ (cached; they are read-only)."""
    folder = resources.files("riskcast.schemas").joinpath("mappings")
    catalog = load_catalog()
    found = []
    for entry in sorted(folder.iterdir(), key=lambda e: e.name):
        if entry.name.endswith(".yaml"):
            try:
                data = yaml.safe_load(entry.read_text())
            except yaml.YAMLError as exc:
                raise CatalogError(f"schemas/mappings/{entry.name}: not valid YAML ({exc})") from exc
            found.append(_parse_mapping(data, f"schemas/mappings/{entry.name}", catalog))
    return tuple(found)


def load_mapping_file(path: Path) -> SourceMapping:
    """A mapping file of the same form from anywhere (a hospital's own codes)."""
    try:
        data = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise CatalogError(f"{path}: cannot be read as a mapping file ({exc})") from exc
    return _parse_mapping(data, str(path), load_catalog())


def loinc_variable(code: str | None, catalog: Catalog | None = None) -> str | None:
    """The catalogue variable of a LOINC code, or None."""
    if code is None:
        return None
    catalog = catalog or load_catalog()
    variable = catalog.by_code.get(code.strip())
    # by_code also holds the variable names themselves; a LOINC code has a digit and a dash.
    return variable if variable is not None and code.strip() not in catalog.variables else None


def mappings_for_meds(dataset_name: str | None) -> list[SourceMapping]:
    """Mapping files that apply to a MEDS dataset: those naming it, else all with a MEDS pattern."""
    with_pattern = [m for m in packaged_mappings() if m.meds_code is not None]
    named = [m for m in with_pattern if dataset_name and dataset_name in m.meds_datasets]
    return named or with_pattern


def mappings_by_system() -> dict[str, SourceMapping]:
    """FHIR code system -> the mapping file for its codes."""
    return {system: m for m in packaged_mappings() for system in m.fhir_systems}


def placeholder_units(mappings: list[SourceMapping] | tuple[SourceMapping, ...]) -> list[str]:
    """Unit texts that mean 'no unit' in any of these sources."""
    units = set(DEFAULT_PLACEHOLDER_UNITS)
    for mapping in mappings:
        units.update(mapping.placeholder_units)
    return sorted(units)


def usable_unit(unit: pl.Expr, placeholders: list[str]) -> pl.Expr:
    """The unit text, or null where it is missing or a placeholder ('UNK')."""
    text = unit.cast(pl.String).str.strip_chars()
    return pl.when(text.is_null() | text.is_in(placeholders)).then(None).otherwise(text)


def parts_of_sums(mappings: list[SourceMapping] | tuple[SourceMapping, ...]) -> dict[str, tuple[str, ...]]:
    """Variable -> the parts that add up to it, over these mapping files."""
    parts: dict[str, set[str]] = {}
    for mapping in mappings:
        for variable, names in mapping.sums.items():
            parts.setdefault(variable, set()).update(names)
    return {variable: tuple(sorted(names)) for variable, names in parts.items()}
