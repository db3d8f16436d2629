"""The whole audit: measure by group, compare with a reference, apply the gates, discuss mitigation.

``audit`` is the one call. It measures the audit frame by group (``GroupMetricFrame``), picks
each feature's reference group (the largest reported group by patients, unless one is named),
holds every comparison to the gates (``riskcast.fairness.gates``) and, for the features that
fail one, shows what mitigation would change (``riskcast.fairness.mitigation``). The result
is an ``AuditReport`` (``riskcast.fairness.report``).
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import Any

import polars as pl

from riskcast.errors import EvaluationError
from riskcast.fairness.frame import (
    MEASUREMENT_GAP_HOURS,
    MEASUREMENT_VARIABLE,
    SENSITIVE_FEATURES,
    GroupMetricFrame,
    audited_features,
    checked_resamples,
)
from riskcast.fairness.gates import GateConfig, apply_gates
from riskcast.fairness.metrics import INTERSECTION, LABEL, SCORE
from riskcast.fairness.mitigation import MITIGATION_CONSTRAINTS, mitigations
from riskcast.fairness.report import AuditReport, FeatureAudit, Mitigation, Verdict


def audit(
    frame: pl.DataFrame,
    *,
    threshold: float,
    gates: GateConfig,
    by: Sequence[str] = SENSITIVE_FEATURES,
    intersections: bool = False,
    reference: Mapping[str, str] | None = None,
    mitigate: Sequence[str] | None = None,
    mitigation_constraints: Sequence[str] = MITIGATION_CONSTRAINTS,
    n_boot: int | None = None,
    seed: int = 0,
    score: str = SCORE,
    label: str = LABEL,
    measurement_variable: str = MEASUREMENT_VARIABLE,
    measurement_gap_hours: float = MEASUREMENT_GAP_HOURS,
) -> AuditReport:
    """Audit the model's operating point ``score >= threshold`` by each feature in ``by``.

    ``gates`` are data, not a file: a GateConfig (``parse_gates`` builds one from a gates
    file's parsed contents; the pipeline reads schemas/fairness_gates.yaml). It holds the
    gates and sets the suppression minimums, the bootstrap size (``n_boot`` overrides it) and
    the confidence level. ``intersections`` adds every pair of ``by`` features. ``reference``
    names a feature's reference group (default: its largest reported group by patients).
    ``mitigate`` lists the single features to run the mitigation analysis for (default: those
    with a failed gate; pass () for none). The same ``seed`` drives every
    bootstrap, so results are reproducible.
    """
    if not isinstance(gates, GateConfig):
        raise EvaluationError(
            f"gates must be a GateConfig (riskcast.fairness.parse_gates builds one from a gates file's contents), "
            f"got {type(gates).__name__}"
        )
    config = gates
    if n_boot is not None:
        config = dataclasses.replace(config, n_boot=checked_resamples(n_boot))
    features = audited_features(by)
    unknown_references = sorted(set(reference or {}) - set(features) - {
        INTERSECTION.join(p) for p in itertools.combinations(features, 2)})
    if unknown_references:
        raise EvaluationError(f"reference given for feature(s) {unknown_references} not audited (by: {features})")
    metrics = GroupMetricFrame.measure(
        frame,
        threshold=threshold,
        by=features,
        intersections=intersections,
        min_patients=config.min_patients,
        min_events=config.min_events,
        n_boot=config.n_boot,
        confidence=config.confidence,
        seed=seed,
        score=score,
        label=label,
        measurement_variable=measurement_variable,
        measurement_gap_hours=measurement_gap_hours,
    )
    audits = {name: _feature_audit(metrics, name, reference=(reference or {}).get(name), config=config) for name in metrics.features}

    if mitigate is None:
        to_mitigate = [f for f in features if audits[f].verdict == Verdict.FAIL]
    else:
        not_audited = [f for f in mitigate if f not in features]
        if not_audited:
            raise EvaluationError(f"cannot mitigate {not_audited}: not among the audited features {features}")
        to_mitigate = list(mitigate)
    found: list[Mitigation] = []
    for name in to_mitigate:
        found += mitigations(
            metrics.rows, metrics.group_labels(name), feature=name, groups=metrics.reported_groups(name),
            reference=audits[name].reference, threshold=threshold, constraints=mitigation_constraints, seed=seed,
        )  # fmt: skip

    return AuditReport(
        score=score,
        label=label,
        threshold=metrics.threshold,
        n_rows=metrics.n_rows,
        n_patients=metrics.n_patients,
        n_encounters=metrics.n_encounters,
        n_events=metrics.n_events,
        patient_days=metrics.patient_days,
        overall=metrics.overall,
        features=MappingProxyType(audits),
        mitigations=tuple(found),
        n_boot=config.n_boot,
        seed=seed,
        confidence=config.confidence,
        min_patients=config.min_patients,
        min_events=config.min_events,
        gates_source=config.source,
    )


def _feature_audit(metrics: GroupMetricFrame, feature: str, *, reference: str | None, config: GateConfig) -> FeatureAudit:
    """One feature (or pair) of ``metrics``: its groups with the reference marked, the
    disparities against it, the summary and the gates' verdicts."""
    chosen = metrics.reference_group(feature, reference)
    by_group = metrics.by_group[feature]
    is_reference = pl.Series("reference", [group == chosen for group in by_group.get_column("group")], dtype=pl.Boolean)
    groups = by_group.clone().insert_column(2, is_reference)
    disparities = metrics.disparities(feature, chosen)
    summary: dict[str, Any] = dict(metrics.between_groups[feature])
    sensitivity_ratios = disparities.filter(pl.col("metric") == "sensitivity").drop_nans("ratio").sort("ratio")
    if sensitivity_ratios.height:
        lowest = sensitivity_ratios.row(0, named=True)
        summary |= {"lowest_sensitivity_ratio": lowest["ratio"], "lowest_sensitivity_ratio_group": lowest["group"],
                    "lowest_sensitivity_difference_low": lowest["difference_low"],
                    "lowest_sensitivity_difference_high": lowest["difference_high"]}
    reported = len(metrics.reported_groups(feature))
    summary |= {"reported_groups": reported, "suppressed_groups": by_group.height - reported}
    columns = metrics.columns(feature)
    return FeatureAudit(
        feature=feature,
        columns=columns,
        reference=chosen,
        groups=groups,
        disparities=disparities,
        summary=MappingProxyType(summary),
        gates=apply_gates(feature, groups, disparities, chosen, config=config, is_intersection=len(columns) > 1),
        suppressed_label=metrics.suppressed_label,
    )
