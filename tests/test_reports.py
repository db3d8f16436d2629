"""The report files' one owner (riskcast.pipeline.reports): each name built in one place, every
report read back as it was written (to_dict / from_dict), writes that are whole or absent and
owner-only, and errors that name the file and what to run.

Reports are built in the test: a real riskcast.evaluate report of a small hand-made frame, a
tiny registered model whose card carries it as `riskcast train` records it, and the trade-off
and promise check shaped as training shapes them.
"""

from __future__ import annotations

import json
import math
import os
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import polars as pl
import pytest

from riskcast.errors import EvaluationError, RegistryError
from riskcast.evaluate import EvaluationReport, evaluate
from riskcast.fairness import AuditReport, GateConfig, audit
from riskcast.model import ModelRegistry, RiskModel
from riskcast.pipeline import reports as report_files
from riskcast.pipeline.reports import (
    AUDIT_NAME,
    AuditDocument,
    HeldOutEvaluation,
    ModelCardRecord,
    PromiseCheck,
    ReportStore,
    TradeoffCurve,
    write_private_text,
)

NOW = datetime(2026, 1, 15, 12, 0, tzinfo=UTC)
PROMISE_CHECK = {
    "promise": "risk >= 0.3: at most 15 alert episodes per 100 patient-days",
    "promised_alerts_per_100_patient_days": 15.0, "observed_alerts_per_100_patient_days": 16.5,
    "promised_ppv": 0.2, "observed_ppv": None, "burden_kept": True, "ppv_kept": False, "kept": False,
}  # fmt: skip
UTILITY_CHECK = PROMISE_CHECK | {"kept": True, "promised_utility": 0.31, "observed_utility": 0.29, "utility_kept": True}


def held_out_report() -> EvaluationReport:
    """riskcast.evaluate on 30 four-day stays, every fifth deteriorating at its last hour."""
    rng = np.random.default_rng(3)
    rows = []
    for stay in range(30):
        event = stay % 5 == 0
        start = NOW - timedelta(days=5)
        for hour in range(96):
            label = int(event and hour >= 84)
            rows.append((f"E{stay}", f"P{stay}", start + timedelta(hours=hour), min(1.0, rng.random() * 0.3 + 0.5 * label),
                         label, start + timedelta(hours=96) if event else None, float(rng.integers(0, 9))))  # fmt: skip
    frame = pl.DataFrame(
        rows, orient="row",
        schema={"encounter_id": pl.String, "patient_id": pl.String, "time": pl.Datetime("us", "UTC"), "risk": pl.Float64,
                "label": pl.Int8, "event_time": pl.Datetime("us", "UTC"), "news2": pl.Float64},
    )  # fmt: skip
    return evaluate(frame, threshold=0.3, baselines={"news2": 5.0}, n_boot=5, outcome="deterioration")


@pytest.fixture(scope="module")
def report() -> EvaluationReport:
    return held_out_report()


@pytest.fixture(scope="module")
def audited() -> AuditReport:
    """riskcast.fairness.audit by sex of 48 one-day stays: 24 women, 20 men, 4 "other" (too few
    to report, so suppressed); every fourth patient deteriorates, and is flagged."""
    rows = []
    for index in range(48):
        sex = "female" if index < 24 else ("male" if index < 44 else "other")
        event = index % 4 == 0
        for hour in range(24):
            positive = event and hour >= 12
            rows.append((f"E{index}", f"P{index}", NOW + timedelta(hours=hour), 0.9 if positive else 0.05, int(positive),
                         NOW + timedelta(hours=24) if event else None, sex))  # fmt: skip
    frame = pl.DataFrame(
        rows, orient="row",
        schema={"encounter_id": pl.String, "patient_id": pl.String, "time": pl.Datetime("us", "UTC"), "risk": pl.Float64,
                "label": pl.Int8, "event_time": pl.Datetime("us", "UTC"), "sex": pl.String},
    )  # fmt: skip
    return audit(frame, threshold=0.5, by=("sex",), gates=GateConfig(gates=(), min_patients=10, min_events=3, n_boot=10),
                 mitigate=())  # fmt: skip


@pytest.fixture(scope="module")
def model() -> RiskModel:
    rng = np.random.default_rng(0)
    X = pd.DataFrame(rng.normal(size=(300, 2)), columns=["a", "b"])
    y = (X["a"] + rng.normal(size=300) > 1.2).astype(int).to_numpy()
    return RiskModel(device="cpu", n_jobs=1, n_estimators=10).fit(X, y, groups=np.repeat(np.arange(30), 10))


def register(registry: ModelRegistry, model: RiskModel, **metadata: Any) -> str:
    card = {"intended_use": "tests", "data": {"outcome": "sepsis", "horizon_hours": 6.0}, "limits": "one site"}
    return registry.register(model, metadata=card | metadata, now=NOW)


def through_json(data: Any) -> Any:
    return json.loads(json.dumps(data))


# ----------------------------------------------------------------------------- names


def test_each_name_is_built_once_and_the_store_writes_where_it_says(
    tmp_path: Path, report: EvaluationReport, audited: AuditReport
) -> None:
    reports = ReportStore(ModelRegistry(tmp_path / "models"), tmp_path / "reports")
    version = "v0001-20260115T1200-xgboost"
    paths = reports.export_evaluation(version, HeldOutEvaluation(report, None), markdown="# text")
    assert paths == {"json": str(tmp_path / "reports" / f"evaluation-{version}.json"),
                     "markdown": str(tmp_path / "reports" / f"evaluation-{version}.md")}  # fmt: skip
    assert reports.evaluation_path(version).name == report_files.evaluation_name(version)
    assert reports.tradeoff_path(version).name == report_files.tradeoff_name(version) == f"tradeoff-{version}.json"
    html, document = reports.write_audit(version, 7, html="<p>audit</p>", document=AuditDocument({"run_id": 7}, audited))
    assert (html.name, document.name) == (f"audit-{version}-7.html", f"audit-{version}-7.json")
    nightly = reports.write_nightly_evaluation(version, NOW, {"evaluation": {}})
    assert nightly == tmp_path / "reports" / "nightly" / f"evaluation-{version}-20260115T1200.json"


def test_an_audit_name_is_matched_as_it_is_built_and_never_leads_out_of_the_reports(tmp_path: Path) -> None:
    name = report_files.audit_name("v0002-20260122T0900-lightgbm", 12, suffix=".html")
    assert AUDIT_NAME.match(name)
    assert report_files.audit_report_name(f"/old/home/reports/{name}") == name
    for recorded in (None, "", "/etc/passwd", "../audit-v1-1.html.bak", "evaluation-v1.json"):
        assert report_files.audit_report_name(recorded) is None
    reports = ReportStore(ModelRegistry(tmp_path / "models"), tmp_path / "reports")
    assert reports.audit_json_path(f"/old/{name}", "ignored", None) == tmp_path / "reports" / name.replace(".html", ".json")
    assert reports.audit_json_path(None, "v0002-20260122T0900-lightgbm", 12).name == name.replace(".html", ".json")
    assert reports.audit_json_path(None, "v1", None) is None and reports.audit_file("../secrets.html") is None


# ----------------------------------------------------------------------------- round trips


def test_an_evaluation_report_reads_back_as_it_was_written(report: EvaluationReport) -> None:
    written = through_json(report.to_dict())
    back = EvaluationReport.from_dict(written)
    assert back.to_dict() == written
    assert back.discrimination["risk"].auroc == report.discrimination["risk"].auroc
    assert back.calibration.reliability.height == report.calibration.reliability.height
    assert back.to_markdown() == report.to_markdown()


def test_null_numbers_in_a_report_read_back_as_nan_never_as_zero(report: EvaluationReport) -> None:
    written = through_json(report.to_dict())
    written["discrimination"]["risk"]["auroc_ci"] = [None, None]
    back = EvaluationReport.from_dict(written)
    assert all(math.isnan(v) for v in back.discrimination["risk"].auroc_ci)
    assert back.to_dict()["discrimination"]["risk"]["auroc_ci"] == [None, None]


def test_a_report_missing_a_key_says_which(report: EvaluationReport) -> None:
    written = through_json(report.to_dict())
    del written["operating_point"]["alerts_per_100_patient_days"]
    with pytest.raises(EvaluationError, match=r"^operating_point\.alerts_per_100_patient_days is missing$"):
        EvaluationReport.from_dict(written)
    written = through_json(report.to_dict()) | {"n_rows": "1000"}
    with pytest.raises(EvaluationError, match=r"^n_rows should be int, found str$"):
        EvaluationReport.from_dict(written)


@pytest.mark.parametrize("check", [PROMISE_CHECK, UTILITY_CHECK], ids=["alert budget", "utility"])
def test_a_promise_check_reads_back_as_check_promise_wrote_it(check: dict[str, Any]) -> None:
    back = PromiseCheck.from_dict(check)
    assert back.to_dict() == check and list(back.to_dict()) == list(check)
    assert back.kept is check["kept"] and back.observed_ppv is None


def test_a_held_out_evaluation_is_the_report_with_its_promise_check_beside_it(report: EvaluationReport) -> None:
    evaluation = HeldOutEvaluation(report, PromiseCheck.from_dict(PROMISE_CHECK))
    written = through_json(evaluation.to_dict())
    assert written == report.to_dict() | {"promise_check": PROMISE_CHECK}
    assert HeldOutEvaluation.from_dict(written).to_dict() == written


def test_a_model_card_reads_back_as_the_artefact_wrote_it(tmp_path: Path, model: RiskModel, report: EvaluationReport) -> None:
    registry = ModelRegistry(tmp_path / "models")
    version = register(registry, model, metrics=report.to_dict(), top_variables=[{"name": "resp_rate", "mean_abs_contribution": 0.3}])
    written = json.loads((registry.path_of(version) / "model_card.json").read_text())
    card = ModelCardRecord.from_dict(written)
    assert card.to_dict() == written
    assert (card.outcome, card.horizon_hours, card.limit_list, card.top_variables) == ("sepsis", 6.0, ("one site",),
                                                                                      (("resp_rate", 0.3),))  # fmt: skip


def test_a_tradeoff_reads_back_as_strict_json() -> None:
    curve = {
        "model": [{"threshold": 0.4, "alerts_per_100_patient_days": 5.0, "sensitivity": 0.3, "ppv": float("nan")},
                  {"threshold": 0.2, "alerts_per_100_patient_days": 14.0, "sensitivity": 0.55, "ppv": 0.12}],
        "news2": [{"threshold": 5.0, "score": "NEWS2", "n_rows": 1000, "median_lead_time_hours": None}],
    }  # fmt: skip
    written = TradeoffCurve.from_dict(curve).to_dict()
    assert written["model"][0]["ppv"] is None and written["news2"] == curve["news2"]
    assert TradeoffCurve.from_dict(through_json(written)).to_dict() == written


def test_an_audit_document_reads_back_as_it_was_written(audited: AuditReport) -> None:
    written = through_json(AuditDocument({"model_version": "v1", "run_id": 3}, audited).to_dict())
    back = AuditDocument.from_dict(written)
    assert back.to_dict() == written and json.loads(back.to_json()) == written
    sex = back.audit.features["sex"]
    assert sex.groups.filter(pl.col("suppressed"))["group"].to_list() == ["other"]
    assert sex.suppressed_label == audited.features["sex"].suppressed_label and back.audit.verdict == audited.verdict


def test_a_suppressed_group_reads_back_without_numbers_even_when_its_json_has_them(audited: AuditReport) -> None:
    written = through_json(audited.to_dict())
    for group in written["features"]["sex"]["groups"]:
        if group["suppressed"]:
            group |= {"n_patients": 4, "sensitivity": 1.0}
    other = AuditReport.from_dict(written).features["sex"].groups.filter(pl.col("group") == "other").row(0, named=True)
    assert other["n_patients"] is None and other["sensitivity"] is None


def test_an_audit_missing_a_key_says_which(audited: AuditReport) -> None:
    written = through_json(audited.to_dict())
    del written["features"]["sex"]["gates"]
    with pytest.raises(EvaluationError, match=r"^audit\.features\.sex\.gates is missing$"):
        AuditDocument.from_dict({"meta": {}, "audit": written})


# ----------------------------------------------------------------------------- the source of truth


def test_the_evaluation_of_record_is_the_model_cards_whatever_the_export_says(
    tmp_path: Path, model: RiskModel, report: EvaluationReport
) -> None:
    registry = ModelRegistry(tmp_path / "models")
    version = register(registry, model, metrics=report.to_dict(), promise_check_held_out=PROMISE_CHECK)
    reports = ReportStore(registry, tmp_path / "reports")
    reports.export_evaluation(version, reports.require_evaluation(version), markdown="# export")
    reports.evaluation_path(version).write_text('{"edited": "by hand"}')
    evaluation = reports.evaluation(version)
    assert evaluation.to_dict() == through_json(report.to_dict()) | {"promise_check": PROMISE_CHECK}


def test_a_version_registered_without_an_evaluation_has_none(tmp_path: Path, model: RiskModel) -> None:
    registry = ModelRegistry(tmp_path / "models")
    version = register(registry, model, promise_check_held_out=PROMISE_CHECK)  # a recalibrated version keeps a stale check
    reports = ReportStore(registry)
    assert reports.evaluation(version) is None and reports.evaluation("v9999-20260101T0000-xgboost") is None
    with pytest.raises(RegistryError, match=rf"{version!r} has no held-out evaluation in .*model_card\.json; "
                                            r"train a model with `riskcast train`"):
        reports.require_evaluation(version)


def test_held_out_patients_and_the_promise_are_written_into_the_stage(tmp_path: Path, model: RiskModel) -> None:
    registry = ModelRegistry(tmp_path / "models")
    with registry.staging(model, metadata={}, now=NOW) as stage:
        ReportStore.write_held_out_patients(stage, {"P2", "P1"})
        ReportStore.write_promise(stage, {"threshold": 0.3, "text": "at most 15 per 100 patient-days"})
    reports = ReportStore(registry)
    assert reports.held_out_patients(stage.version) == ["P1", "P2"]
    assert reports.promise(stage.version)["threshold"] == 0.3
    bare = registry.register(model, metadata={}, now=NOW)
    assert reports.held_out_patients(bare) is None and reports.promise(bare) is None


# ----------------------------------------------------------------------------- writing


def test_a_report_is_written_whole_and_owner_only(tmp_path: Path) -> None:
    previous = os.umask(0o022)
    try:
        path = write_private_text(tmp_path / "home" / "reports" / "nightly" / "evaluation-v1-20260115T1200.json", "{}")
    finally:
        os.umask(previous)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == stat.S_IMODE((tmp_path / "home").stat().st_mode) == 0o700
    assert [p.name for p in path.parent.iterdir()] == [path.name]


def test_a_write_that_fails_leaves_the_old_report_and_no_temporary_file(tmp_path: Path, monkeypatch) -> None:
    path = write_private_text(tmp_path / "reports" / "tradeoff-v1.json", '{"old": true}')

    def disk_full(descriptor: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(report_files.os, "fsync", disk_full)
    with pytest.raises(OSError, match="No space left"):
        write_private_text(path, '{"new": true}')
    assert path.read_text() == '{"old": true}' and [p.name for p in path.parent.iterdir()] == [path.name]


# ----------------------------------------------------------------------------- broken files


def test_a_corrupt_tradeoff_names_its_file_and_what_to_run(tmp_path: Path) -> None:
    reports = ReportStore(ModelRegistry(tmp_path / "models"), tmp_path)
    assert reports.tradeoff("v1") is None
    reports.tradeoff_path("v1").write_text('{"model": [')
    with pytest.raises(EvaluationError, match=r"tradeoff-v1\.json: the threshold trade-off is not valid JSON \(line 1: "
                                              r".*\); run `riskcast train` to write it again"):
        reports.tradeoff("v1")
    reports.tradeoff_path("v1").write_text('{"model": []}')
    with pytest.raises(EvaluationError, match=r"tradeoff-v1\.json: not a threshold trade-off written by riskcast "
                                              r"\(news2 is missing\); run `riskcast train`"):
        reports.tradeoff("v1")


def test_a_card_cut_short_names_the_version_and_what_to_run(tmp_path: Path, model: RiskModel) -> None:
    registry = ModelRegistry(tmp_path / "models")
    version = register(registry, model)
    (registry.path_of(version) / "model_card.json").write_text('{"model": {}, "other": {}}')
    with pytest.raises(RegistryError, match=r"model_card\.json: not a model card written by riskcast \(data is missing\); "
                                            r"train a new model with `riskcast train`"):
        ReportStore(registry).model_card(version)
    (registry.path_of(version) / "model_card.json").unlink()
    assert ReportStore(registry).model_card(version) is None
    with pytest.raises(RegistryError, match=r"model_card\.json is missing: model version .* is incomplete"):
        ReportStore(registry).require_model_card(version)


def test_held_out_patients_that_are_not_a_list_of_ids_are_refused_without_showing_them(tmp_path: Path, model: RiskModel) -> None:
    registry = ModelRegistry(tmp_path / "models")
    version = register(registry, model)
    (registry.path_of(version) / "heldout_patients.json").write_text('{"P123": 1}')
    with pytest.raises(RegistryError, match=r"heldout_patients\.json: should list the held-out patients' ids") as raised:
        ReportStore(registry).held_out_patients(version)
    assert "P123" not in str(raised.value)
