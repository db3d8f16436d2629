"""Mitigation, for discussion: what group-specific thresholds would change. Never applied.

For features with a failed gate (or those asked for), Fairlearn's ``ThresholdOptimizer``
(prefit on the calibrated risk, ``true_positive_rate_parity`` by default, objective balanced
accuracy) is fitted on the audited rows, and so is a simpler rule (per-group thresholds giving
every group the reference group's sensitivity); each ``Mitigation`` shows what the method
would change, group by group, including the alert burden. Neither is ever applied:
group-specific thresholds need the sensitive attribute at scoring time, and are fitted here
on the evaluation rows themselves.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import Any

import numpy as np
import pandas as pd
import polars as pl
from fairlearn.postprocessing import ThresholdOptimizer
from sklearn.base import BaseEstimator, ClassifierMixin

from riskcast import alert_burden
from riskcast.fairness.metrics import COUNTS, ENCOUNTER, LABEL, SCORE, metrics_from_counts
from riskcast.fairness.report import Mitigation

MITIGATION_CONSTRAINTS = ("true_positive_rate_parity",)
MITIGATION_OBJECTIVE = "balanced_accuracy_score"
MITIGATION_RISK_DECIMALS = 4


class _GivenRisk(ClassifierMixin, BaseEstimator):
    """A fitted stand-in classifier whose probability of class 1 is the risk column it is given.

    Lets Fairlearn's ThresholdOptimizer (prefit=True) post-process the calibrated risk without
    the model: X is a one-column frame of risks.
    """

    def fit(self, X: Any, y: Any = None) -> _GivenRisk:  # noqa: N803 (scikit-learn's names)
        self.classes_ = np.array([0, 1])
        return self

    def predict_proba(self, X: Any) -> np.ndarray:  # noqa: N803
        risk = np.asarray(X, dtype=np.float64)[:, 0]
        return np.column_stack([1.0 - risk, risk])

    def predict(self, X: Any) -> np.ndarray:  # noqa: N803
        return (self.predict_proba(X)[:, 1] >= 0.5).astype(int)

    def __sklearn_is_fitted__(self) -> bool:
        return True


def _rate_table(rows: pl.DataFrame, group_label: pl.Series, flags: np.ndarray, names: list[str]) -> dict[str, dict[str, float]]:
    """sensitivity, false_positive_rate, selection_rate, alerts_per_100_patient_days per group and overall."""
    first = (rows.get_column(ENCOUNTER) != rows.get_column(ENCOUNTER).shift(1)).fill_null(True).to_numpy()
    frame = pl.DataFrame(
        {
            "_g": group_label,
            "_rows": np.ones(flags.size),
            "_positives": rows.get_column(LABEL).to_numpy().astype(np.float64),
            "_flagged": flags.astype(np.float64),
            "_true_positives": (flags & (rows.get_column(LABEL).to_numpy() == 1)).astype(np.float64),
            "_false_positives": (flags & (rows.get_column(LABEL).to_numpy() == 0)).astype(np.float64),
            "_episodes": alert_burden.episode_starts(flags, first).astype(np.float64),
        }
    )
    sums = frame.group_by("_g").agg(pl.all().sum())
    keys = ("_rows", "_positives", "_flagged", "_true_positives", "_false_positives", "_episodes")
    out = {}
    for name, totals in [*((r["_g"], r) for r in sums.to_dicts()), ("overall", {k: float(sums.get_column(k).sum()) for k in keys})]:
        if name not in names and name != "overall":
            continue
        counts = np.zeros(len(COUNTS))
        for key in keys:
            counts[COUNTS.index(key[1:])] = totals[key]
        metrics = metrics_from_counts(counts)
        out[name] = {m: float(metrics[m]) for m in ("sensitivity", "false_positive_rate", "selection_rate", "alerts_per_100_patient_days")}
    return out


def _threshold_text(operation: Any) -> str:
    threshold = float(operation.threshold)
    if math.isinf(threshold):
        return "never" if (threshold > 0) == (operation.operator == ">") else "always"
    return f"risk {operation.operator} {threshold:.3g}"


def _mitigation_frame(
    names: list[str], rules: Mapping[str, str], before: Mapping[str, Mapping[str, float]], after: Mapping[str, Mapping[str, float]]
) -> tuple[pl.DataFrame, dict[str, float]]:
    metrics = ("sensitivity", "false_positive_rate", "selection_rate", "alerts_per_100_patient_days")
    rows = [
        {"group": g, "rule": rules[g], **{f"before_{m}": before[g][m] for m in metrics}, **{f"after_{m}": after[g][m] for m in metrics}}
        for g in names
    ]
    overall = {**{f"before_{m}": before["overall"][m] for m in metrics}, **{f"after_{m}": after["overall"][m] for m in metrics}}
    schema = {"group": pl.String, "rule": pl.String, **{f"{p}_{m}": pl.Float64 for p in ("before", "after") for m in metrics}}
    return pl.DataFrame(rows, schema=schema, orient="row"), overall


def mitigations(
    rows: pl.DataFrame,
    group_label: pl.Series,
    *,
    feature: str,
    groups: Sequence[str],
    reference: str | None,
    threshold: float,
    constraints: Sequence[str] = MITIGATION_CONSTRAINTS,
    seed: int = 0,
) -> list[Mitigation]:
    """What each method would do to ``feature``'s reported ``groups`` at the model's ``threshold``:
    Fairlearn's ThresholdOptimizer per constraint, then thresholds lowered until every group
    reaches the ``reference`` group's sensitivity. ``rows`` are the audited rows
    (GroupMetricFrame.rows) and ``group_label`` each row's group; ``seed`` drives the
    optimizer's randomised thresholds. None when fewer than two groups are reported."""
    names = list(groups)
    if len(names) < 2 or reference is None:
        return []
    keep = group_label.is_in(names)
    subset, labels = rows.filter(keep), group_label.filter(keep)
    risk = subset.get_column(SCORE).to_numpy()
    y = subset.get_column(LABEL).to_numpy().astype(int)
    before = _rate_table(subset, labels, risk >= threshold, names)
    current = f"risk >= {threshold:.3g} (the model's threshold)"
    results = []
    sensitive = labels.to_pandas()
    # ThresholdOptimizer walks every distinct score of every group in Python (minutes for a
    # million distinct risks); risk to MITIGATION_RISK_DECIMALS decimals is plenty to discuss.
    X = pd.DataFrame({"risk": np.round(risk, MITIGATION_RISK_DECIMALS)})  # noqa: N806 (scikit-learn's name)
    for constraint in constraints:
        optimizer = ThresholdOptimizer(
            estimator=_GivenRisk(),
            constraints=constraint,
            objective=MITIGATION_OBJECTIVE,
            prefit=True,
            predict_method="predict_proba",
        )
        optimizer.fit(X, y, sensitive_features=sensitive)
        flags = np.asarray(optimizer.predict(X, sensitive_features=sensitive, random_state=seed)).astype(bool)
        after = _rate_table(subset, labels, flags, names)
        rules = {}
        for group, interpolation in optimizer.interpolated_thresholder_.interpolation_dict.items():
            parts = [
                f"{_threshold_text(op)} ({p:.0%} of the time)" if p < 1 else _threshold_text(op)
                for p, op in ((interpolation.p0, interpolation.operation0), (interpolation.p1, interpolation.operation1))
                if p > 0
            ]
            rules[str(group)] = "flag if " + " or ".join(parts) if parts else "never flag"
        table, overall = _mitigation_frame(names, rules, before, after)
        results.append(
            Mitigation(
                feature=feature,
                method=f"Fairlearn ThresholdOptimizer (constraints={constraint}, objective={optimizer.objective}, prefit on the calibrated risk)",
                groups=table,
                overall=MappingProxyType(overall),
                note=(
                    "Group-specific, partly randomised thresholds that maximise the objective under the constraint "
                    f"(on the risk rounded to {MITIGATION_RISK_DECIMALS} decimals). "
                    f"Before: {current} for every group. Fitted and measured on the same rows (optimistic). "
                    "Not applied."
                ),
            )
        )
    # The simpler rule: lower a group's threshold until it reaches the reference group's
    # sensitivity (the highest threshold flagging at least that share of its positive hours);
    # groups already at or above it keep the model's threshold (no levelling down).
    target = before[reference]["sensitivity"]
    thresholds = {}
    for group in names:
        mask = (labels == group).to_numpy()
        positive_risk = np.sort(risk[mask & (y == 1)])[::-1]
        thresholds[group] = threshold
        if math.isfinite(target) and positive_risk.size:
            needed = min(max(1, math.ceil(target * positive_risk.size - 1e-9)), positive_risk.size)
            thresholds[group] = min(threshold, float(positive_risk[needed - 1]))
    per_row = labels.replace_strict(thresholds, return_dtype=pl.Float64).to_numpy()
    after = _rate_table(subset, labels, risk >= per_row, names)
    rules = {g: f"flag if risk >= {t:.3g}" for g, t in thresholds.items()}
    table, overall = _mitigation_frame(names, rules, before, after)
    results.append(
        Mitigation(
            feature=feature,
            method=f"per-group thresholds lowered until every group reaches the reference group's ({reference}) sensitivity",
            groups=table,
            overall=MappingProxyType(overall),
            note=(
                f"Deterministic thresholds; before: {current} for every group, which groups at or above the reference's "
                "sensitivity keep. Shows what equal sensitivity would cost in alerts for each group. Fitted and measured "
                "on the same rows (optimistic). Not applied."
            ),
        )
    )
    return results
