"""Gates: the bounds each comparison is held to, and the verdict (pass / warn / fail) in words.

The gates come in as data, a ``GateConfig``: ``parse_gates`` builds one from the parsed
mapping of a gates file (the packaged ``schemas/fairness_gates.yaml``, which the pipeline
reads), and a caller or a test may build one directly. Nothing here reads a file.

Each reported group is compared with its feature's reference group (``riskcast.fairness.frame``).
**A gate fails only when its estimate is beyond the fail bound and the 95% interval excludes
no difference** (the interval of the difference to the reference excludes 0; for a group's
own calibration-in-the-large, the interval excludes 0). An estimate beyond the fail bound
whose interval includes no difference is a *warn*, saying so: with few events a sensitivity
ratio of 0.7 can be noise, and noise must not fail a model. Estimates beyond a warn bound
warn. Gates on feature pairs (intersections) never fail, only warn: they are many small
comparisons, and some will cross a bound by chance.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import polars as pl

from riskcast.errors import ConfigError
from riskcast.fairness.frame import BOOTSTRAP_RESAMPLES, CONFIDENCE, MIN_EVENTS, MIN_PATIENTS
from riskcast.fairness.metrics import BOOTSTRAP_METRICS, METRIC_LABELS, POINT_METRICS
from riskcast.fairness.report import GateResult, Verdict

DEFAULT_GATES_FILE = "fairness_gates.yaml"
"""The packaged gates file, in schemas/."""
COMPARES = ("ratio_to_reference", "difference_to_reference", "value")


@dataclass(frozen=True)
class Gate:
    """One bound a group's metric is held to (one entry of schemas/fairness_gates.yaml).

    ``compare``: ``ratio_to_reference`` (group / reference), ``difference_to_reference``
    (group - reference) or ``value`` (the group's own value). A ``*_below`` bound is broken by
    a smaller estimate, ``*_above`` by a larger one. ``fail_*`` bounds are allowed only where
    an interval exists to test no difference against (the bootstrap metrics).
    """

    name: str
    metric: str
    compare: str
    fail_below: float | None = None
    warn_below: float | None = None
    fail_above: float | None = None
    warn_above: float | None = None
    why: str = ""


@dataclass(frozen=True)
class GateConfig:
    """The gates and the audit's statistical settings, as data (see ``parse_gates``).

    ``min_patients`` / ``min_events``: a group with fewer is suppressed; ``n_boot``: the
    patient-bootstrap resamples; ``confidence``: the intervals' level; ``source``: where the
    gates came from, as the report names it.
    """

    gates: tuple[Gate, ...]
    min_patients: int = MIN_PATIENTS
    min_events: int = MIN_EVENTS
    n_boot: int = BOOTSTRAP_RESAMPLES
    confidence: float = CONFIDENCE
    source: str = f"schemas/{DEFAULT_GATES_FILE}"


_GATE_KEYS = {"metric", "compare", "fail_below", "warn_below", "fail_above", "warn_above", "why"}
_CONFIG_KEYS = {"min_patients", "min_events", "bootstrap_resamples", "confidence", "gates"}


def parse_gates(data: Any, *, source: str = DEFAULT_GATES_FILE) -> GateConfig:
    """A GateConfig from the parsed YAML mapping ``data``; ``source`` names it in errors."""
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a mapping with 'gates' at the top level")
    unknown = sorted(set(data) - _CONFIG_KEYS)
    if unknown:
        raise ConfigError(f"{source}: unknown top-level key(s) {unknown}; known: {sorted(_CONFIG_KEYS)}")
    raw_gates = data.get("gates") or {}
    if not isinstance(raw_gates, dict):
        raise ConfigError(f"{source}: gates: expected a mapping of gate name to its metric and bounds")
    gates = []
    for name, raw in raw_gates.items():
        where = f"{source}: gates.{name}"
        if not isinstance(raw, dict):
            raise ConfigError(f"{where}: expected a mapping with metric, compare and bounds")
        unknown = sorted(set(raw) - _GATE_KEYS)
        if unknown:
            raise ConfigError(f"{where}: unknown key(s) {unknown}; known: {sorted(_GATE_KEYS)}")
        metric, compare = raw.get("metric"), raw.get("compare")
        known_metrics = (*BOOTSTRAP_METRICS, *POINT_METRICS)
        if metric not in known_metrics:
            raise ConfigError(f"{where}: metric {metric!r} is not one of {list(known_metrics)}")
        if compare not in COMPARES:
            raise ConfigError(f"{where}: compare {compare!r} is not one of {list(COMPARES)}")
        bounds: dict[str, float | None] = {}
        for key in ("fail_below", "warn_below", "fail_above", "warn_above"):
            value = raw.get(key)
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
                raise ConfigError(f"{where}: {key} must be a number, got {value!r}")
            bounds[key] = None if value is None else float(value)
        if not any(v is not None for v in bounds.values()):
            raise ConfigError(f"{where}: give at least one of fail_below, warn_below, fail_above, warn_above")
        has_fail = bounds["fail_below"] is not None or bounds["fail_above"] is not None
        if has_fail and metric not in BOOTSTRAP_METRICS:
            raise ConfigError(
                f"{where}: {metric} has no paired interval to tell a difference from noise, so it can only "
                f"warn (use warn_below / warn_above); metrics that can fail: {list(BOOTSTRAP_METRICS)}"
            )
        if has_fail and compare == "value" and metric != "calibration_in_the_large":
            raise ConfigError(
                f"{where}: compare 'value' can fail only for calibration_in_the_large (whose no-difference "
                "value is 0); compare other metrics with the reference group"
            )
        for low, high in (("fail_below", "warn_below"), ("warn_above", "fail_above")):
            if bounds[low] is not None and bounds[high] is not None and bounds[low] > bounds[high]:
                raise ConfigError(f"{where}: {low} ({bounds[low]}) must not be above {high} ({bounds[high]})")
        gates.append(Gate(name=str(name), metric=metric, compare=compare, why=str(raw.get("why", "")), **bounds))
    settings: dict[str, Any] = {}
    for key, attribute, kind in (
        ("min_patients", "min_patients", int),
        ("min_events", "min_events", int),
        ("bootstrap_resamples", "n_boot", int),
        ("confidence", "confidence", float),
    ):
        if key in data:
            value = data[key]
            if isinstance(value, bool) or not isinstance(value, (int, float)) or (kind is int and value != int(value)):
                raise ConfigError(f"{source}: {key} must be a {'whole ' if kind is int else ''}number, got {value!r}")
            settings[attribute] = kind(value)
    config = GateConfig(gates=tuple(gates), source=source, **settings)
    if config.min_patients < 1 or config.min_events < 1:
        raise ConfigError(f"{source}: min_patients and min_events must be at least 1")
    if config.n_boot < 0:
        raise ConfigError(f"{source}: bootstrap_resamples must be 0 or more, got {config.n_boot}")
    if not 0.5 <= config.confidence < 1:
        raise ConfigError(f"{source}: confidence must be in [0.5, 1), got {config.confidence}")
    return config


# --------------------------------------------------------------------------- applying the gates


def _num(value: float | None) -> str:
    """A number for a sentence: two decimals, or two significant digits when small; a real minus."""
    if value is None or not math.isfinite(value):
        return "n/a"
    text = f"{value:.2f}" if abs(value) >= 0.095 or value == 0 else f"{value:.2g}"
    return text.replace("-", "\u2212")


def _broken(value: float, gate: Gate, kind: str) -> tuple[float, str] | None:
    """The ``kind`` ('fail' or 'warn') bound that ``value`` breaks and on which side, if any."""
    below, above = getattr(gate, f"{kind}_below"), getattr(gate, f"{kind}_above")
    if below is not None and value < below:
        return below, "below"
    if above is not None and value > above:
        return above, "above"
    return None


def apply_gates(
    feature: str,
    groups: pl.DataFrame,
    disparities: pl.DataFrame,
    reference: str | None,
    *,
    config: GateConfig,
    is_intersection: bool,
) -> tuple[GateResult, ...]:
    """Every gate of ``config`` applied to each reported group of ``feature`` (``groups``: its
    by-group table; ``disparities``: each group against ``reference``), with the reason in words."""
    results = []
    confidence = f"{config.confidence:.0%}"
    group_rows = {r["group"]: r for r in groups.filter(~pl.col("suppressed")).to_dicts()}
    for gate in config.gates:
        label = METRIC_LABELS[gate.metric].split(",")[0]
        if gate.compare == "value":
            candidates = [(g, r[gate.metric], None, None) for g, r in group_rows.items()]
        else:
            if reference is None:
                continue
            rows = disparities.filter(pl.col("metric") == gate.metric).to_dicts()
            candidates = [(r["group"], r["value"], r, reference) for r in rows]
        for group, group_value, disparity, ref in candidates:
            if group_value is None or not math.isfinite(group_value):
                continue
            if gate.compare == "value":
                value = group_value
                row = group_rows[group]
                low, high = row.get(f"{gate.metric}_low"), row.get(f"{gate.metric}_high")
                interval = (low, high) if low is not None and high is not None and math.isfinite(low) and math.isfinite(high) else None
                reference_value = None
                described = f"{label} for {feature}={group} is {_num(value)}"
                if interval:
                    described += f" ({confidence} CI {_num(interval[0])} to {_num(interval[1])})"
                null_text = "includes 0"
            else:
                reference_value = disparity["reference_value"]
                value = disparity["ratio"] if gate.compare == "ratio_to_reference" else disparity["difference"]
                if value is None or not math.isfinite(value):
                    continue
                low, high = disparity["difference_low"], disparity["difference_high"]
                interval = (low, high) if math.isfinite(low) and math.isfinite(high) else None
                measure = "ratio" if gate.compare == "ratio_to_reference" else "difference"
                ci_text = f", {confidence} CI of the difference {_num(low)} to {_num(high)}" if interval else ""
                described = (
                    f"{label} for {feature}={group} is {_num(group_value)} vs {_num(reference_value)} for {ref} "
                    f"({measure} {_num(value)}{ci_text})"
                )
                null_text = "includes no difference"
            excludes_null = interval is not None and (interval[0] > 0 or interval[1] < 0)
            fail_bound, warn_bound = _broken(value, gate, "fail"), _broken(value, gate, "warn")
            if fail_bound is not None and excludes_null and not is_intersection:
                verdict, (bound, side) = Verdict.FAIL, fail_bound
                reason = f"{described}: {side} the {_num(bound)} bound"
            elif fail_bound is not None:
                verdict, (bound, side) = Verdict.WARN, fail_bound
                if is_intersection and excludes_null:
                    why_not = " and its interval excludes no difference, but gates on intersections of features only warn"
                elif interval is None:
                    why_not = ", but there is no interval to tell it from noise"
                else:
                    why_not = f", but the {confidence} CI {null_text}, so it may be noise"
                reason = f"{described}: {side} the {_num(bound)} bound{why_not}"
            elif warn_bound is not None:
                verdict, (bound, side) = Verdict.WARN, warn_bound
                reason = f"{described}: {side} the {_num(bound)} warning bound"
            else:
                verdict, bound = Verdict.PASS, None
                reason = f"{described}: within bounds"
            results.append(
                GateResult(
                    gate=gate.name,
                    feature=feature,
                    group=group,
                    reference=ref,
                    metric=gate.metric,
                    compare=gate.compare,
                    verdict=verdict,
                    value=float(value),
                    group_value=float(group_value),
                    reference_value=None if reference_value is None else float(reference_value),
                    interval=None if interval is None else (float(interval[0]), float(interval[1])),
                    bound=bound,
                    reason=reason,
                )
            )
    return tuple(results)
