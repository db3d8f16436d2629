"""Feature families: named groups of feature columns that can be switched on and off.

Every model feature belongs to exactly one family, decided by its name alone, so a stored
matrix, a model's feature list and an ablation all agree on what a family holds:

- ``values``       the last value of each variable (``{v}_last``)
- ``windows``      vitals' mean, min, max and standard deviation over 6 h and 24 h
- ``trends``       vitals' least-squares slope over 6 h; every variable's change between its
                   last two measurements (``{v}_delta``)
- ``baselines``    the patient against themself: vitals' last minus first value
                   (``{v}_change``); every variable's last value minus the mean of its
                   values in the stay's first hours (``{v}_from_baseline``; 6 h for vitals,
                   24 h for labs) and minus the mean of all its values so far
                   (``{v}_from_mean``); the lowest and highest so far (``{v}_min_stay``,
                   ``{v}_max_stay``)
- ``missingness``  whether the variable was charted in the last hour (``{v}_measured``, 0/1)
- ``process``      how the variable is being measured: hours since it was last charted and
                   how often in 24 h and in the whole stay (``{v}_hours_since``,
                   ``{v}_count_24h``, ``{v}_count_stay``). These partly
                   record the clinicians' worry rather than the patient, and the habit of
                   measuring differs between hospitals.
- ``clocks``       hours since admission
- ``scores``       NEWS2 and its parts, qSOFA, SIRS, shock index
- ``demographics`` age and sex

A test checks that switching a family off removes exactly its columns, and the
point-in-time (cut at T) test runs with every family on.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from riskcast.errors import FeatureError

FAMILIES: tuple[str, ...] = (
    "values",
    "windows",
    "trends",
    "baselines",
    "missingness",
    "process",
    "clocks",
    "scores",
    "demographics",
)
# Chosen on the transport benchmark (bench/transport.py --ablations; the README's ablation
# table): no family, switched off, improved transported AUROC and utility on both unit
# splits and the temporal one, and dropping `process` cost transported AUROC on all three.
DEFAULT_FAMILIES: tuple[str, ...] = FAMILIES

# Suffix -> family, longest suffixes first so "_from_baseline" wins over shorter endings.
_SUFFIXES: tuple[tuple[str, str], ...] = (
    ("_from_baseline", "baselines"),
    ("_from_mean", "baselines"),
    ("_min_stay", "baselines"),
    ("_max_stay", "baselines"),
    ("_hours_since", "process"),
    ("_count_24h", "process"),
    ("_count_stay", "process"),
    ("_measured", "missingness"),
    ("_slope_6h", "trends"),
    ("_change", "baselines"),
    ("_delta", "trends"),
    ("_last", "values"),
    ("_mean_6h", "windows"),
    ("_mean_24h", "windows"),
    ("_min_6h", "windows"),
    ("_min_24h", "windows"),
    ("_max_6h", "windows"),
    ("_max_24h", "windows"),
    ("_std_6h", "windows"),
    ("_std_24h", "windows"),
)
_NAMED: dict[str, str] = {
    "hours_since_admission": "clocks",
    "age": "demographics",
    "sex_male": "demographics",
    "qsofa": "scores",
    "sirs": "scores",
    "shock_index": "scores",
}


SUFFIXES: tuple[str, ...] = tuple(suffix for suffix, _ in _SUFFIXES)
"""Every suffix a feature of a catalogue variable can carry (``resp_rate`` + ``_slope_6h``)."""


def suffixes_of(*families: str) -> tuple[str, ...]:
    """The suffixes of the given families' per-variable features."""
    check_families(families)
    return tuple(suffix for suffix, family in _SUFFIXES if family in families)


def family_of(column: str) -> str:
    """The family a feature column belongs to (FeatureError for a name no family claims)."""
    if column in _NAMED:
        return _NAMED[column]
    if column == "news2" or column.startswith("news2_"):
        return "scores"
    for suffix, family in _SUFFIXES:
        if column.endswith(suffix):
            return family
    raise FeatureError(f"feature column {column!r} belongs to no feature family; known families: {', '.join(FAMILIES)}")


def check_families(families: Iterable[str]) -> tuple[str, ...]:
    """The families in canonical order, refusing unknown names and an empty choice."""
    chosen = list(families)
    unknown = [f for f in chosen if f not in FAMILIES]
    if unknown:
        raise FeatureError(f"unknown feature famil{'y' if len(unknown) == 1 else 'ies'} {', '.join(map(repr, unknown))}; "
                           f"known: {', '.join(FAMILIES)}")
    if not chosen:
        raise FeatureError(f"choose at least one feature family from: {', '.join(FAMILIES)}")
    return tuple(f for f in FAMILIES if f in chosen)


def parse_families(text: str) -> tuple[str, ...]:
    """'values,trends' -> ("values", "trends"); 'all' and 'default' name the usual sets;
    '-process' (or 'default,-process') removes a family from the default."""
    parts = [p.strip() for p in text.split(",") if p.strip()]
    if parts == ["all"]:
        return FAMILIES
    chosen: list[str] = []
    if not parts or parts[0] == "default" or parts[0].startswith("-"):
        chosen = list(DEFAULT_FAMILIES)
        parts = parts[1:] if parts and parts[0] == "default" else parts
    for part in parts:
        if part.startswith("-"):
            name = part[1:]
            check_families([name])
            chosen = [f for f in chosen if f != name]
        else:
            check_families([part])
            chosen.append(part)
    return check_families(dict.fromkeys(chosen))


def columns_of(columns: Sequence[str], families: Iterable[str]) -> list[str]:
    """The columns (in their order) that belong to the given families."""
    wanted = set(check_families(families))
    return [c for c in columns if family_of(c) in wanted]
