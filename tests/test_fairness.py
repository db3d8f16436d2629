"""riskcast.fairness: metrics by group, patient-bootstrap intervals, suppression, gates, mitigation."""

from __future__ import annotations

import dataclasses
import importlib.resources
import json
import math
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest
from fairlearn.metrics import (
    MetricFrame,
    demographic_parity_ratio,
    equalized_odds_difference,
    false_negative_rate,
    false_positive_rate,
    selection_rate,
    true_positive_rate,
)
from sklearn.metrics import precision_score, recall_score, roc_auc_score

from riskcast.errors import ConfigError, EvaluationError
from riskcast.evaluate import alert_metrics, calibration
from riskcast.fairness import (
    AuditSummary,
    Gate,
    GateConfig,
    GroupMetricFrame,
    Verdict,
    audit,
    parse_gates,
)
from riskcast.pipeline.audit import load_gates
from riskcast.pipeline.audit_html import render_html

T0 = datetime(2025, 6, 1, tzinfo=UTC)
UTC_US = pl.Datetime("us", "UTC")
THRESHOLD = 0.5
SENSITIVITY_ONLY = GateConfig(
    gates=(Gate(name="sensitivity_ratio", metric="sensitivity", compare="ratio_to_reference", fail_below=0.8, warn_below=0.9),)
)
PACKAGED_GATES = load_gates()


def patients(
    group: str,
    n_patients: int,
    *,
    events: int = 0,
    detected: int = 0,
    false_alarm_patients: int = 0,
    hours: int = 24,
    risk_low: float = 0.05,
    risk_high: float = 0.8,
    column: str = "race_ethnicity",
    extra: dict[str, str] | None = None,
) -> pl.DataFrame:
    """n_patients of one group, one encounter each, `hours` hourly rows.

    The first `events` patients deteriorate at hour `hours` (their last 12 rows are positive);
    the first `detected` of those are flagged (risk_high) on every positive row, the others
    never. The next `false_alarm_patients` patients are flagged on every row without an event.
    """
    frames = []
    for i in range(n_patients):
        has_event = i < events
        label = [1 if has_event and h >= hours - 12 else 0 for h in range(hours)]
        if has_event:
            risk = [risk_high if (lab and i < detected) else risk_low for lab in label]
        elif i < events + false_alarm_patients:
            risk = [risk_high] * hours
        else:
            risk = [risk_low] * hours
        encounter = f"{group}-{column}-e{i}"
        frames.append(
            pl.DataFrame(
                {
                    "encounter_id": [encounter] * hours,
                    "patient_id": [f"{group}-{column}-p{i}"] * hours,
                    "time": [T0 + timedelta(hours=h) for h in range(hours)],
                    "risk": risk,
                    "label": label,
                    "event_time": [T0 + timedelta(hours=hours) if has_event else None] * hours,
                    column: [group] * hours,
                    **{k: [v] * hours for k, v in (extra or {}).items()},
                },
                schema_overrides={"time": UTC_US, "event_time": UTC_US, "label": pl.Int8},
            )
        )
    return pl.concat(frames)


def random_cohort(n_patients: int, *, seed: int) -> pl.DataFrame:
    """Patients in three race groups and two sexes with noisy, informative risks (for agreement tests)."""
    rng = np.random.default_rng(seed)
    hours = rng.integers(6, 40, n_patients)
    patient = np.repeat(np.arange(n_patients), hours)
    hour = np.concatenate([np.arange(h) for h in hours])
    event = rng.random(n_patients) < 0.35
    label = (event[patient] & (hour >= hours[patient] - 12)).astype(np.int8)
    risk = np.clip(0.25 * label + 0.6 * rng.random(patient.size) ** 3 + 0.05 * rng.standard_normal(patient.size), 0, 1)
    race = np.array(["White", "Black", "Asian"])[rng.choice(3, n_patients, p=[0.55, 0.3, 0.15])]
    sex = np.array(["female", "male"])[rng.integers(0, 2, n_patients)]
    return pl.DataFrame(
        {
            "encounter_id": [f"e{p}" for p in patient],
            "patient_id": [f"p{p}" for p in patient],
            "time": [T0 + timedelta(hours=int(h)) for h in hour],
            "risk": np.round(risk, 3),
            "label": label,
            "event_time": [T0 + timedelta(hours=int(hours[p])) if event[p] else None for p in patient],
            "race_ethnicity": race[patient],
            "sex": sex[patient],
            "heart_rate_count_24h": rng.integers(0, 12, patient.size),
            "heart_rate_hours_since": rng.exponential(3.0, patient.size),
        },
        schema_overrides={"time": UTC_US, "event_time": UTC_US},
    )


def group_row(report, feature: str, group: str) -> dict:
    return report.features[feature].groups.filter(pl.col("group") == group).row(0, named=True)


# --------------------------------------------------------------------------- agreement with sklearn / Fairlearn


def test_rate_metrics_agree_with_sklearn_and_fairlearn_on_the_same_rows() -> None:
    frame = random_cohort(300, seed=1)
    report = audit(frame, threshold=0.3, gates=PACKAGED_GATES, by=("race_ethnicity",), n_boot=0, mitigate=())
    y, flagged = frame["label"].to_numpy(), (frame["risk"].to_numpy() >= 0.3).astype(int)
    race = frame["race_ethnicity"].to_numpy()
    direct = MetricFrame(
        metrics={"selection_rate": selection_rate, "sensitivity": true_positive_rate,
                 "false_positive_rate": false_positive_rate, "false_negative_rate": false_negative_rate},
        y_true=y, y_pred=flagged, sensitive_features=race,
    ).by_group
    for group in ("White", "Black", "Asian"):
        row, mask = group_row(report, "race_ethnicity", group), race == group
        assert not row["suppressed"]
        assert row["sensitivity"] == pytest.approx(recall_score(y[mask], flagged[mask]))
        assert row["ppv"] == pytest.approx(precision_score(y[mask], flagged[mask]))
        assert row["auroc"] == pytest.approx(roc_auc_score(y[mask], frame["risk"].to_numpy()[mask]))
        for metric in ("selection_rate", "sensitivity", "false_positive_rate", "false_negative_rate"):
            assert row[metric] == pytest.approx(direct.loc[group, metric])
    summary = report.features["race_ethnicity"].summary
    assert summary["equalized_odds_difference"] == pytest.approx(
        equalized_odds_difference(y, flagged, sensitive_features=race)
    )
    assert summary["demographic_parity_ratio"] == pytest.approx(
        demographic_parity_ratio(y, flagged, sensitive_features=race)
    )
    assert report.overall["sensitivity"] == pytest.approx(recall_score(y, flagged))


def test_calibration_alert_burden_and_lead_time_agree_with_riskcast_evaluate() -> None:
    frame = random_cohort(200, seed=2)
    report = audit(frame, threshold=0.3, gates=PACKAGED_GATES, by=("sex",), n_boot=0, mitigate=())
    for sex in ("female", "male"):
        rows = frame.filter(pl.col("sex") == sex)
        row = group_row(report, "sex", sex)
        expected_calibration = calibration(rows)
        expected_alerts = alert_metrics(rows, threshold=0.3)
        assert row["calibration_in_the_large"] == pytest.approx(expected_calibration.calibration_in_the_large)
        assert row["ece"] == pytest.approx(expected_calibration.ece)
        assert row["alerts_per_100_patient_days"] == pytest.approx(expected_alerts.alerts_per_100_patient_days)
        assert row["median_lead_time_hours"] == pytest.approx(expected_alerts.median_lead_time_hours)


def test_measurement_frequency_is_mean_daily_count_and_share_of_stale_hours() -> None:
    frame = random_cohort(120, seed=3)
    report = audit(frame, threshold=0.3, gates=PACKAGED_GATES, by=("sex",), n_boot=0, mitigate=())
    rows = frame.filter(pl.col("sex") == "male")
    row = group_row(report, "sex", "male")
    assert row["measurements_per_day"] == pytest.approx(rows["heart_rate_count_24h"].mean())
    assert row["share_hours_unmeasured"] == pytest.approx((rows["heart_rate_hours_since"] > 4).mean())


# --------------------------------------------------------------------------- bootstrap


def test_the_group_metric_frame_gives_overall_by_group_and_disparities_as_data() -> None:
    frame = pl.concat([patients("White", 120, events=40, detected=24), patients("Black", 100, events=40, detected=12)])
    metrics = GroupMetricFrame.measure(frame, threshold=THRESHOLD, by=("race_ethnicity",), n_boot=50, seed=1)
    assert metrics.overall["sensitivity"] == pytest.approx(36 / 80)  # 24 + 12 of 80 event patients, 12 hours each
    groups = metrics.by_group["race_ethnicity"]
    assert groups["group"].to_list() == ["Black", "White"]
    assert groups["sensitivity"].to_list() == pytest.approx([0.3, 0.6])
    assert metrics.reference_group("race_ethnicity") == "White"  # the largest group by patients
    white = metrics.disparities("race_ethnicity", "Black").filter(pl.col("metric") == "sensitivity").row(0, named=True)
    assert (white["group"], white["ratio"], white["difference"]) == ("White", pytest.approx(2.0), pytest.approx(0.3))
    assert white["difference_low"] > 0  # paired resamples: the interval of the difference excludes 0


def test_intervals_resample_patients_not_hours() -> None:
    # 12 event patients with 12 positive hours each, 6 detected: sensitivity 0.5 over 144 hours.
    # Resampling hours would give about 0.42-0.58; resampling patients, about 0.2-0.8.
    frame = pl.concat([patients("White", 60, events=12, detected=6), patients("Black", 40, events=20, detected=10)])
    report = audit(frame, threshold=THRESHOLD, by=("race_ethnicity",), gates=SENSITIVITY_ONLY, seed=4, mitigate=())
    row = group_row(report, "race_ethnicity", "White")
    assert row["sensitivity"] == pytest.approx(0.5)
    assert row["sensitivity_low"] < 0.3 and row["sensitivity_high"] > 0.7


def test_the_same_seed_gives_the_same_intervals() -> None:
    frame = random_cohort(150, seed=5)
    first = audit(frame, threshold=0.3, gates=PACKAGED_GATES, by=("race_ethnicity",), n_boot=50, seed=9, mitigate=())
    second = audit(frame, threshold=0.3, gates=PACKAGED_GATES, by=("race_ethnicity",), n_boot=50, seed=9, mitigate=())
    assert first.to_dict() == second.to_dict()


# --------------------------------------------------------------------------- small cells


def test_groups_under_ten_patients_are_suppressed_never_a_number() -> None:
    frame = pl.concat([
        patients("White", 60, events=20, detected=10),
        patients("Black", 40, events=15, detected=8),
        patients("Asian", 7, events=7, detected=1),
    ])
    report = audit(frame, threshold=THRESHOLD, by=("race_ethnicity",), gates=SENSITIVITY_ONLY, n_boot=20, mitigate=())
    row = group_row(report, "race_ethnicity", "Asian")
    assert row["suppressed"]
    assert all(v is None for k, v in row.items() if k not in ("group", "suppressed", "reference"))
    listed = next(g for g in report.to_dict()["features"]["race_ethnicity"]["groups"] if g["group"] == "Asian")
    assert listed == {"group": "Asian", "suppressed": True, "note": "suppressed (n<10)"}
    assert all(g.group != "Asian" for g in report.gates)
    page = render_html(report, meta={"model_version": "v-test"})
    asian_row = page.split(">Asian")[1].split("</tr>")[0]
    assert "suppressed (n&lt;10)" in asian_row and not any(ch.isdigit() for ch in asian_row.replace("n&lt;10", ""))


def test_groups_with_under_ten_events_are_suppressed() -> None:
    frame = pl.concat([patients("White", 60, events=20, detected=10), patients("Black", 50, events=9, detected=1)])
    report = audit(frame, threshold=THRESHOLD, by=("race_ethnicity",), gates=SENSITIVITY_ONLY, n_boot=20, mitigate=())
    assert group_row(report, "race_ethnicity", "Black")["suppressed"]
    assert report.verdict == Verdict.PASS  # nothing left to compare: no gate result at all
    assert report.gates == ()


def test_a_missing_attribute_is_its_own_group_not_recorded() -> None:
    frame = random_cohort(150, seed=6).with_columns(
        pl.when(pl.col("patient_id").str.ends_with("7")).then(None).otherwise(pl.col("race_ethnicity")).alias("race_ethnicity")
    )
    report = audit(frame, threshold=0.3, gates=PACKAGED_GATES, by=("race_ethnicity",), n_boot=0, mitigate=())
    assert "not recorded" in report.features["race_ethnicity"].groups["group"].to_list()


# --------------------------------------------------------------------------- reference and gates


def test_the_reference_is_the_largest_group_unless_named() -> None:
    frame = pl.concat([patients("White", 60, events=20, detected=10), patients("Black", 40, events=20, detected=10)])
    default = audit(frame, threshold=THRESHOLD, by=("race_ethnicity",), gates=SENSITIVITY_ONLY, n_boot=20, mitigate=())
    named = audit(frame, threshold=THRESHOLD, by=("race_ethnicity",), gates=SENSITIVITY_ONLY, n_boot=20, mitigate=(),
                  reference={"race_ethnicity": "Black"})
    assert default.features["race_ethnicity"].reference == "White"
    assert named.features["race_ethnicity"].reference == "Black"


def test_a_suppressed_reference_is_refused_with_the_group_named() -> None:
    frame = pl.concat([patients("White", 60, events=20, detected=10), patients("Asian", 5, events=5, detected=2)])
    with pytest.raises(EvaluationError, match="race_ethnicity=Asian .* suppressed"):
        audit(frame, threshold=THRESHOLD, by=("race_ethnicity",), gates=SENSITIVITY_ONLY, n_boot=20,
              reference={"race_ethnicity": "Asian"})


def test_lower_sensitivity_with_an_interval_excluding_no_difference_fails_with_reason_in_words() -> None:
    frame = pl.concat([patients("White", 120, events=40, detected=24), patients("Black", 100, events=40, detected=12)])
    report = audit(frame, threshold=THRESHOLD, by=("race_ethnicity",), gates=SENSITIVITY_ONLY, seed=1, mitigate=())
    (result,) = report.gates
    assert result.verdict == Verdict.FAIL and report.verdict == Verdict.FAIL
    assert result.interval[1] < 0
    assert result.reason.startswith(
        "sensitivity for race_ethnicity=Black is 0.30 vs 0.60 for White (ratio 0.50, 95% CI of the difference \u2212"
    )
    assert result.reason.endswith("): below the 0.80 bound")


def test_a_low_ratio_whose_interval_includes_no_difference_only_warns() -> None:
    # Same ratio (0.5) but only 10 events in the smaller group: could be noise.
    frame = pl.concat([patients("White", 120, events=40, detected=24), patients("Black", 12, events=10, detected=3)])
    report = audit(frame, threshold=THRESHOLD, by=("race_ethnicity",), gates=SENSITIVITY_ONLY, seed=1, mitigate=())
    (result,) = report.gates
    assert result.value == pytest.approx(0.5)
    assert result.interval[0] < 0 < result.interval[1]
    assert result.verdict == Verdict.WARN
    assert "below the 0.80 bound, but the 95% CI includes no difference, so it may be noise" in result.reason


def test_equal_groups_pass() -> None:
    frame = pl.concat([patients("White", 80, events=30, detected=15), patients("Black", 60, events=20, detected=10)])
    report = audit(frame, threshold=THRESHOLD, by=("race_ethnicity",), gates=SENSITIVITY_ONLY, seed=2, mitigate=())
    assert [g.verdict for g in report.gates] == [Verdict.PASS]
    assert report.verdict == Verdict.PASS


def test_a_group_over_predicted_beyond_the_calibration_bound_fails() -> None:
    gates = GateConfig(gates=(Gate(name="citl", metric="calibration_in_the_large", compare="value",
                                   fail_below=-0.02, fail_above=0.02),))
    well = patients("White", 80, events=20, detected=10, risk_low=0.02, risk_high=0.6)
    over = patients("Black", 60, events=15, detected=8, risk_low=0.25, risk_high=0.6)
    report = audit(pl.concat([well, over]), threshold=THRESHOLD, by=("race_ethnicity",), gates=gates, seed=3, mitigate=())
    verdicts = {g.group: g.verdict for g in report.gates}
    assert verdicts["Black"] == Verdict.FAIL
    black = next(g for g in report.gates if g.group == "Black")
    assert "calibration-in-the-large for race_ethnicity=Black is" in black.reason and "above the 0.02 bound" in black.reason


def test_intersections_audit_pairs_of_features_and_only_warn() -> None:
    white = patients("White", 120, events=40, detected=24, extra={"sex": "female"})
    black = patients("Black", 100, events=40, detected=12, extra={"sex": "female"})
    report = audit(pl.concat([white, black]), threshold=THRESHOLD, by=("race_ethnicity", "sex"), intersections=True,
                   gates=SENSITIVITY_ONLY, seed=1, mitigate=())
    pair = report.features["race_ethnicity & sex"]
    assert set(pair.groups["group"]) == {"White & female", "Black & female"}
    (result,) = pair.gates
    assert result.verdict == Verdict.WARN and "intersections of features only warn" in result.reason
    assert report.features["race_ethnicity"].verdict == Verdict.FAIL


# --------------------------------------------------------------------------- mitigation


def test_mitigation_is_shown_for_a_failing_feature_and_never_changes_the_audit() -> None:
    white = patients("White", 120, events=40, detected=24, false_alarm_patients=10)
    black = patients("Black", 100, events=40, detected=12, false_alarm_patients=5)
    # The missed deteriorations in Black patients score 0.10-0.49, one level per patient, below the threshold.
    index = pl.col("patient_id").str.extract(r"p(\d+)$").cast(pl.Float64)
    black = black.with_columns(
        pl.when((pl.col("label") == 1) & (pl.col("risk") < THRESHOLD)).then(0.1 + 0.01 * index).otherwise(pl.col("risk")).alias("risk")
    )
    frame = pl.concat([white, black])
    with_mitigation = audit(frame, threshold=THRESHOLD, by=("race_ethnicity",), gates=SENSITIVITY_ONLY, seed=1)
    without = audit(frame, threshold=THRESHOLD, by=("race_ethnicity",), gates=SENSITIVITY_ONLY, seed=1, mitigate=())
    assert with_mitigation.features["race_ethnicity"].groups.equals(without.features["race_ethnicity"].groups)
    methods = [m.method for m in with_mitigation.mitigations]
    assert any("ThresholdOptimizer" in m and "true_positive_rate_parity" in m for m in methods)
    equal = next(m for m in with_mitigation.mitigations if m.method.startswith("per-group thresholds lowered"))
    after = {r["group"]: r for r in equal.groups.to_dicts()}
    assert after["Black"]["before_sensitivity"] == pytest.approx(0.3)
    assert after["Black"]["after_sensitivity"] == pytest.approx(after["White"]["after_sensitivity"], abs=0.05)
    assert after["White"]["after_sensitivity"] == after["White"]["before_sensitivity"]  # the reference keeps its threshold
    assert after["Black"]["after_alerts_per_100_patient_days"] > after["Black"]["before_alerts_per_100_patient_days"]
    optimizer = next(m for m in with_mitigation.mitigations if "ThresholdOptimizer" in m.method)
    rates = {r["group"]: r["after_sensitivity"] for r in optimizer.groups.to_dicts()}
    assert rates["Black"] == pytest.approx(rates["White"], abs=0.1)
    assert without.mitigations == ()


# --------------------------------------------------------------------------- gates file and errors


def test_the_packaged_gates_hold_sensitivity_ratio_to_0_8_fail_and_0_9_warn() -> None:
    gates = {g.name: g for g in load_gates().gates}
    assert gates["sensitivity_ratio"].fail_below == 0.8 and gates["sensitivity_ratio"].warn_below == 0.9
    citl = gates["calibration_in_the_large"]
    assert (citl.fail_below, citl.fail_above) == (-0.02, 0.02)
    assert load_gates().min_patients == 10 and load_gates().n_boot == 200


def test_a_gates_file_with_an_unknown_key_is_refused_by_name(tmp_path: Path) -> None:
    path = tmp_path / "gates.yaml"
    path.write_text("gates:\n  sensitivity_ratio:\n    metric: sensitivity\n    compare: ratio_to_reference\n    fail_belw: 0.8\n")
    with pytest.raises(ConfigError, match=r"gates.sensitivity_ratio: unknown key\(s\) \['fail_belw'\]"):
        load_gates(path)


def test_a_fail_bound_on_a_metric_without_an_interval_is_refused() -> None:
    with pytest.raises(ConfigError, match="ece has no paired interval .* can only warn"):
        parse_gates({"gates": {"ece": {"metric": "ece", "compare": "value", "fail_above": 0.05}}}, source="g.yaml")


def test_the_gates_come_in_as_data_and_decide_the_verdict_without_any_file(monkeypatch: pytest.MonkeyPatch) -> None:
    files, read_text = importlib.resources.files, Path.read_text

    def no_packaged_file(package: Any, *args: Any) -> Any:
        assert not str(package).startswith("riskcast"), "the audit read a file of the package"
        return files(package, *args)

    def no_yaml(path: Path, *args: Any, **kwargs: Any) -> str:
        assert path.suffix not in (".yaml", ".yml"), f"the audit read {path}"
        return read_text(path, *args, **kwargs)

    monkeypatch.setattr(importlib.resources, "files", no_packaged_file)
    monkeypatch.setattr(Path, "read_text", no_yaml)
    frame = pl.concat([patients("White", 120, events=40, detected=24), patients("Black", 100, events=40, detected=12)])

    def sensitivity_gate(fail_below: float) -> GateConfig:
        gate = Gate(name="sensitivity_ratio", metric="sensitivity", compare="ratio_to_reference", fail_below=fail_below)
        return GateConfig(gates=(gate,), source="written in the test")

    strict = audit(frame, threshold=THRESHOLD, gates=sensitivity_gate(0.8), by=("race_ethnicity",), seed=1, mitigate=())
    lenient = audit(frame, threshold=THRESHOLD, gates=sensitivity_gate(0.4), by=("race_ethnicity",), seed=1, mitigate=())
    assert (strict.verdict, lenient.verdict) == (Verdict.FAIL, Verdict.PASS)  # ratio 0.5: below 0.8, above 0.4
    assert strict.gates_source == lenient.gates_source == "written in the test"
    assert strict.features["race_ethnicity"].groups.equals(lenient.features["race_ethnicity"].groups)


def test_the_suppression_minimums_come_with_the_gates() -> None:
    frame = pl.concat([patients("White", 60, events=20, detected=10), patients("Asian", 7, events=7, detected=1)])
    default = audit(frame, threshold=THRESHOLD, gates=SENSITIVITY_ONLY, by=("race_ethnicity",), n_boot=0, mitigate=())
    smaller = dataclasses.replace(SENSITIVITY_ONLY, min_patients=5, min_events=5)
    relaxed = audit(frame, threshold=THRESHOLD, gates=smaller, by=("race_ethnicity",), n_boot=0, mitigate=())
    assert group_row(default, "race_ethnicity", "Asian")["suppressed"]
    assert not group_row(relaxed, "race_ethnicity", "Asian")["suppressed"]
    assert relaxed.features["race_ethnicity"].suppressed_label == "suppressed (n<5)"


def test_an_audit_without_a_gate_config_is_refused_by_name() -> None:
    frame = random_cohort(50, seed=7)
    with pytest.raises(TypeError, match="gates"):
        audit(frame, threshold=0.3, by=("sex",))  # type: ignore[call-arg]
    with pytest.raises(EvaluationError, match="gates must be a GateConfig .*got str"):
        audit(frame, threshold=0.3, gates="schemas/fairness_gates.yaml", by=("sex",))  # type: ignore[arg-type]


def test_a_missing_sensitive_column_is_named() -> None:
    frame = random_cohort(50, seed=7)
    with pytest.raises(EvaluationError, match="no column\\(s\\) 'ward'"):
        audit(frame, threshold=0.3, gates=PACKAGED_GATES, by=("race_ethnicity", "ward"))


def test_censored_rows_must_be_dropped_first() -> None:
    frame = random_cohort(50, seed=8).with_columns(pl.lit(None, dtype=pl.Int8).alias("label"))
    with pytest.raises(EvaluationError, match="label column 'label' has .* null row"):
        audit(frame, threshold=0.3, gates=PACKAGED_GATES, by=("sex",))


def test_the_report_is_json_serialisable_without_nan() -> None:
    frame = random_cohort(200, seed=9)
    report = audit(frame, threshold=0.3, gates=PACKAGED_GATES, by=("race_ethnicity", "sex"), intersections=True, n_boot=30,
                   mitigate=("sex",))
    text = json.dumps(report.to_dict(), allow_nan=False)
    assert json.loads(text)["verdict"] in ("pass", "warn", "fail")
    assert json.dumps(report.summary(), allow_nan=False)
    assert not math.isnan(report.overall["sensitivity"])


def test_the_summary_reads_back_as_the_audits_own_type_with_its_failures() -> None:
    frame = pl.concat([patients("White", 120, events=40, detected=24), patients("Black", 100, events=40, detected=12)])
    report = audit(frame, threshold=THRESHOLD, by=("race_ethnicity",), gates=SENSITIVITY_ONLY, seed=1, mitigate=())
    summary = AuditSummary.from_dict(json.loads(json.dumps(report.summary())))
    assert summary.to_dict() == report.summary()
    assert summary.verdict == Verdict.FAIL
    assert [(f.gate, f.reason) for f in summary.failures] == [(g.gate, g.reason) for g in report.gates if g.verdict == Verdict.FAIL]


def test_a_summary_of_another_shape_is_refused_by_name() -> None:
    with pytest.raises(EvaluationError, match="not an audit summary written by riskcast.fairness"):
        AuditSummary.from_dict({"reasons": ["sensitivity ratio 0.6 for Black"]})
