"""What an audit found, as frozen dataclasses with ``to_dict()`` (JSON-ready: NaN becomes None).

``AuditReport`` holds the whole audit (the HTML and JSON reports, the dashboard); its
``FeatureAudit`` per sensitive feature holds the groups, the disparities against the
reference, the between-group summary and the ``GateResult`` of every gate; ``Mitigation``
what a post-processing method would change; ``AuditSummary`` the short form the store's
audits row and the CLI keep. Each reads back from its JSON with ``from_dict``.
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from types import MappingProxyType
from typing import Any

import polars as pl

from riskcast.errors import EvaluationError
from riskcast.evaluate import from_jsonable, jsonable


class Verdict(StrEnum):
    """A gate's outcome; an audit's verdict is its worst gate's."""

    PASS = "pass"
    WARN = "warn"
    FAIL = "fail"


SEVERITY = {Verdict.PASS: 0, Verdict.WARN: 1, Verdict.FAIL: 2}


@dataclass(frozen=True)
class GateResult:
    """One gate applied to one group: the verdict and why, in words.

    ``value`` is what the bounds apply to (a ratio, a difference or the group's value);
    ``interval`` the bootstrap interval that decides fail versus warn (of the difference to
    the reference for comparisons, of the value itself for ``compare: value``); ``bound`` the
    bound that was broken (None when the gate passed).
    """

    gate: str
    feature: str
    group: str
    reference: str | None
    metric: str
    compare: str
    verdict: Verdict
    value: float
    group_value: float
    reference_value: float | None
    interval: tuple[float, float] | None
    bound: float | None
    reason: str

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> GateResult:
        """Read back what to_dict wrote (None back to NaN); EvaluationError names a key that is
        missing or of the wrong kind."""
        return from_jsonable(cls, data)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (NaN -> None)."""
        return jsonable(self)


@dataclass(frozen=True, eq=False)
class Mitigation:
    """What one post-processing method would do to one feature's groups: for discussion only.

    ``groups``: one row per reported group: group, rule (in words), and before/after values of
    sensitivity, false_positive_rate, selection_rate and alerts_per_100_patient_days (before:
    the model's single threshold; after: the method's group-specific rule, on the same rows).
    ``overall`` holds the same before/after figures over the rows of the reported groups.
    """

    feature: str
    method: str
    groups: pl.DataFrame
    overall: Mapping[str, float]
    note: str

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Mitigation:
        """Read back what to_dict wrote (None back to NaN); EvaluationError names a key that is
        missing or of the wrong kind."""
        return from_jsonable(cls, data)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (NaN -> None)."""
        return jsonable(self)


@dataclass(frozen=True, eq=False)
class FeatureAudit:
    """The audit of one sensitive feature (or one pair of features, joined by " & ").

    ``groups``: one row per group: group, suppressed, reference (bool), n_patients,
    n_encounters, n_events, n_rows, patient_days, then each metric of BOOTSTRAP_METRICS with
    ``{metric}_low`` / ``{metric}_high``, auroc with its interval, ece, median_lead_time_hours
    and encounter_sensitivity. Every number of a suppressed group is null.

    ``disparities``: one row per (reported group other than the reference, metric): value,
    reference_value, difference (+ _low/_high), ratio (+ _low/_high); paired intervals.

    ``summary``: equalized_odds_difference and demographic_parity_ratio over the reported
    groups (with _low/_high), the smallest sensitivity ratio to the reference and its group.
    """

    feature: str
    columns: tuple[str, ...]
    reference: str | None
    groups: pl.DataFrame
    disparities: pl.DataFrame
    summary: Mapping[str, Any]
    gates: tuple[GateResult, ...]
    suppressed_label: str

    @property
    def verdict(self) -> Verdict:
        """The worst verdict of this feature's gates (pass when it has none)."""
        return worst(g.verdict for g in self.gates)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FeatureAudit:
        """Read back what to_dict wrote. A suppressed group comes back as its name alone, every
        number null even where the JSON holds one, and its note is the suppressed label;
        EvaluationError names a key that is missing or of the wrong kind."""
        if not isinstance(data, Mapping):
            raise EvaluationError(f"a feature's audit should be a JSON object, found {type(data).__name__}")
        where = f"features.{data.get('feature')}"
        missing = [f.name for f in dataclasses.fields(cls) if f.name not in data and f.name != "suppressed_label"]
        if missing:
            raise EvaluationError(f"{where}.{missing[0]} is missing")
        if not isinstance(data["groups"], list) or not all(isinstance(row, Mapping) for row in data["groups"]):
            raise EvaluationError(f"{where}.groups should be a list of rows")
        if not isinstance(data["summary"], Mapping):
            raise EvaluationError(f"{where}.summary should be a JSON object")
        rows, notes = [], []
        for row in data["groups"]:
            if row.get("suppressed"):
                rows.append({"group": row.get("group"), "suppressed": True})
                notes.append(row.get("note"))
            else:
                rows.append(dict(row))
        groups = pl.DataFrame(rows, infer_schema_length=None)
        if "reference" in groups.columns:
            groups = groups.with_columns(pl.col("reference").fill_null(False))
        return cls(
            feature=from_jsonable(str, data["feature"], key=f"{where}.feature"),
            columns=from_jsonable(tuple[str, ...], data["columns"], key=f"{where}.columns"),
            reference=from_jsonable(str | None, data["reference"], key=f"{where}.reference"),
            groups=groups,
            disparities=from_jsonable(pl.DataFrame, data["disparities"], key=f"{where}.disparities"),
            summary=MappingProxyType(dict(data["summary"])),
            gates=from_jsonable(tuple[GateResult, ...], data["gates"], key=f"{where}.gates"),
            suppressed_label=next((str(n) for n in notes if isinstance(n, str)), "suppressed"),
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready; a suppressed group shows only its name and the suppression note."""
        groups = []
        for row in self.groups.to_dicts():
            if row["suppressed"]:
                groups.append({"group": row["group"], "suppressed": True, "note": self.suppressed_label})
            else:
                groups.append(jsonable(row))
        return {
            "feature": self.feature,
            "columns": list(self.columns),
            "reference": self.reference,
            "verdict": str(self.verdict),
            "summary": jsonable(self.summary),
            "groups": groups,
            "disparities": jsonable(self.disparities),
            "gates": [g.to_dict() for g in self.gates],
        }


@dataclass(frozen=True)
class AuditFinding:
    """A gate that did not pass, as an audit's summary keeps it: its verdict, name and reason."""

    verdict: Verdict
    gate: str
    reason: str


@dataclass(frozen=True)
class AuditSummary:
    """The short summary of an audit that the store's audits row and the CLI keep.

    ``findings`` are the gates that did not pass, worst first; ``failures`` those that failed.
    ``to_dict`` writes it as JSON and ``from_dict`` reads it back (from the store), so whoever
    reads an audits row reads the same keys the audit wrote.
    """

    verdict: Verdict
    threshold: float | None
    patients: int
    rows: int
    events: int
    gate_counts: Mapping[str, int]
    findings: tuple[AuditFinding, ...]
    features: Mapping[str, Mapping[str, Any]]

    @property
    def failures(self) -> tuple[AuditFinding, ...]:
        """The findings whose verdict is fail."""
        return tuple(f for f in self.findings if f.verdict == Verdict.FAIL)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (NaN -> None)."""
        return jsonable(
            {
                "verdict": self.verdict,
                "threshold": self.threshold,
                "patients": self.patients,
                "rows": self.rows,
                "events": self.events,
                "gate_counts": dict(self.gate_counts),
                "findings": [{"verdict": f.verdict, "gate": f.gate, "reason": f.reason} for f in self.findings],
                "features": {name: dict(entry) for name, entry in self.features.items()},
            }
        )

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> AuditSummary:
        """Read a summary written by ``to_dict``; EvaluationError names what is wrong with it."""
        if not isinstance(data, Mapping):
            raise EvaluationError(f"an audit summary must be a mapping, got {type(data).__name__}")
        try:
            findings = tuple(
                AuditFinding(verdict=Verdict(f["verdict"]), gate=str(f["gate"]), reason=str(f["reason"]))
                for f in data.get("findings") or ()
            )
            return cls(
                verdict=Verdict(data["verdict"]),
                threshold=data.get("threshold"),
                patients=int(data.get("patients") or 0),
                rows=int(data.get("rows") or 0),
                events=int(data.get("events") or 0),
                gate_counts=MappingProxyType(dict(data.get("gate_counts") or {})),
                findings=findings,
                features=MappingProxyType(dict(data.get("features") or {})),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise EvaluationError(f"not an audit summary written by riskcast.fairness ({type(exc).__name__}: {exc})") from None


@dataclass(frozen=True, eq=False)
class AuditReport:
    """Everything ``audit`` measured, for the report, the store and the dashboard."""

    score: str
    label: str
    threshold: float
    n_rows: int
    n_patients: int
    n_encounters: int
    n_events: int
    patient_days: float
    overall: Mapping[str, float]
    features: Mapping[str, FeatureAudit]
    mitigations: tuple[Mitigation, ...]
    n_boot: int
    seed: int
    confidence: float
    min_patients: int
    min_events: int
    gates_source: str

    @property
    def gates(self) -> tuple[GateResult, ...]:
        """Every gate result, features in order."""
        return tuple(g for f in self.features.values() for g in f.gates)

    @property
    def verdict(self) -> Verdict:
        """pass, warn or fail: the worst gate's verdict."""
        return worst(g.verdict for g in self.gates)

    def summary(self) -> dict[str, Any]:
        """A short JSON-ready summary for the store's audits row and the CLI (an AuditSummary's
        to_dict; read it back with AuditSummary.from_dict)."""
        counts = {str(v): sum(1 for g in self.gates if g.verdict == v) for v in Verdict}
        findings = sorted((g for g in self.gates if g.verdict != Verdict.PASS), key=lambda g: -SEVERITY[g.verdict])
        return AuditSummary(
            verdict=self.verdict,
            threshold=self.threshold,
            patients=self.n_patients,
            rows=self.n_rows,
            events=self.n_events,
            gate_counts=counts,
            findings=tuple(AuditFinding(verdict=g.verdict, gate=g.gate, reason=g.reason) for g in findings),
            features={name: {"verdict": f.verdict, "reference": f.reference, **f.summary} for name, f in self.features.items()},
        ).to_dict()

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> AuditReport:
        """Read back what to_dict wrote (None back to NaN; see FeatureAudit.from_dict for the
        suppressed groups); EvaluationError names a key that is missing or of the wrong kind."""
        if not isinstance(data, Mapping):
            raise EvaluationError(f"an audit should be a JSON object, found {type(data).__name__}")
        hints = typing.get_type_hints(cls)
        fields: dict[str, Any] = {}
        for field in dataclasses.fields(cls):
            if field.name not in data:
                raise EvaluationError(f"{field.name} is missing")
            if field.name != "features":
                fields[field.name] = from_jsonable(hints[field.name], data[field.name], key=field.name)
        if not isinstance(data["features"], Mapping):
            raise EvaluationError("features should be a JSON object")
        features = {name: FeatureAudit.from_dict(feature) for name, feature in data["features"].items()}
        return cls(**fields, features=MappingProxyType(features))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict of the whole audit (suppressed groups carry no numbers)."""
        return {
            "verdict": str(self.verdict),
            "score": self.score,
            "label": self.label,
            "threshold": self.threshold,
            "n_rows": self.n_rows,
            "n_patients": self.n_patients,
            "n_encounters": self.n_encounters,
            "n_events": self.n_events,
            "patient_days": self.patient_days,
            "overall": jsonable(self.overall),
            "n_boot": self.n_boot,
            "seed": self.seed,
            "confidence": self.confidence,
            "min_patients": self.min_patients,
            "min_events": self.min_events,
            "gates_source": self.gates_source,
            "features": {name: f.to_dict() for name, f in self.features.items()},
            "mitigations": [m.to_dict() for m in self.mitigations],
        }


def worst(verdicts: Iterable[Verdict]) -> Verdict:
    """The most severe of ``verdicts`` (pass when there are none)."""
    return max(verdicts, key=lambda v: SEVERITY[v], default=Verdict.PASS)
