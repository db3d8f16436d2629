"""Promotion gates: a challenger becomes champion only when its gates pass, or an admin overrides."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from sqlalchemy import select

from riskcast.config import load_settings
from riskcast.errors import RegistryError
from riskcast.fairness import audit
from riskcast.lake import Lake
from riskcast.model import ModelRegistry
from riskcast.pipeline.audit import audit_model, load_gates
from riskcast.pipeline.ingest import ingest_paths
from riskcast.pipeline.promotion import (
    PromotionGate,
    PromotionDecision,
    decide_promotion,
    discriminates_worse,
    promote_model,
    promotion_gates,
)
from riskcast.pipeline.training import train_and_register
from riskcast.store import open_store
from riskcast.store.tables import audits, models
from riskcast.synth import generate_cohort, write_cohort

NOW = datetime(2026, 2, 1, tzinfo=UTC)


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory):
    home = tmp_path_factory.mktemp("home")
    settings = load_settings(env={"RISKCAST_HOME": str(home)})
    write_cohort(generate_cohort(400, seed=4), home / "cohort")
    lake = Lake(settings.lake_dir)
    ingest_paths([home / "cohort"], lake=lake, now=NOW)
    registry = ModelRegistry(settings.models_dir)
    engine = open_store(settings.database_url)
    kwargs = dict(now=NOW, reports_dir=settings.reports_dir, n_boot=0, ablations=False, database=engine)
    champion = train_and_register(lake, registry, **kwargs).version
    challenger = train_and_register(lake, registry, seed=1, **kwargs).version
    yield settings, registry, engine, champion, challenger
    engine.dispose()


def _audit(settings, registry, engine, version: str, tmp_path: Path, *, calibration_bound: float):
    """A real `riskcast audit` of `version` by sex on its held-out patients, with one gate:
    each group's calibration-in-the-large within ±`calibration_bound`."""
    gates = tmp_path / "gates.yaml"
    gates.write_text(
        "min_patients: 1\nmin_events: 1\nbootstrap_resamples: 20\nconfidence: 0.95\ngates:\n"
        "  calibration_in_the_large:\n    metric: calibration_in_the_large\n    compare: value\n"
        f"    fail_below: {-calibration_bound}\n    fail_above: {calibration_bound}\n    why: the test's bound\n"
    )
    return audit_model(settings, registry, now=NOW, model_version=version, engine=engine, by=["sex"], gates_path=gates)


def _missed_deteriorations(group: str, n_patients: int, *, events: int, detected: int) -> pl.DataFrame:
    """One 24-hour encounter per patient; the first `events` deteriorate at hour 24 (their last
    12 hours are positive), and only the first `detected` of those are flagged."""
    hours = 24
    patient = np.repeat(np.arange(n_patients), hours)
    hour = np.tile(np.arange(hours), n_patients)
    label = ((patient < events) & (hour >= hours - 12)).astype(np.int8)
    risk = np.where((label == 1) & (patient < detected), 0.8, 0.05)
    return pl.DataFrame(
        {
            "encounter_id": [f"{group}-e{i}" for i in patient],
            "patient_id": [f"{group}-p{i}" for i in patient],
            "time": [NOW + timedelta(hours=int(h)) for h in hour],
            "risk": risk,
            "label": label,
            "event_time": [NOW + timedelta(hours=hours) if i < events else None for i in patient],
            "race_ethnicity": [group] * patient.size,
        },
        schema_overrides={"time": pl.Datetime("us", "UTC"), "event_time": pl.Datetime("us", "UTC")},
    )


def _record_failed_audit(engine, version: str):
    """Audit a cohort whose Black patients' deteriorations are flagged a third as often as White
    patients' (a real fairness.audit, which fails), and record it for `version` as `riskcast
    audit` does: the audit's own summary in the audits table."""
    frame = pl.concat([
        _missed_deteriorations("White", 100, events=40, detected=24),
        _missed_deteriorations("Black", 100, events=40, detected=8),
    ])
    report = audit(frame, threshold=0.5, gates=load_gates(), by=("race_ethnicity",), seed=1, mitigate=())
    assert report.verdict == "fail"
    with engine.begin() as connection:
        connection.execute(audits.insert().values(model_version=version, created_at=NOW, verdict=str(report.verdict),
                                                  summary=report.summary()))
    return report


def test_the_first_model_is_champion_and_the_store_mirrors_the_registry(trained) -> None:
    settings, registry, engine, champion, challenger = trained
    assert registry.champion() == champion
    with engine.connect() as connection:
        rows = {r.version: r for r in connection.execute(select(models))}
    assert rows[champion].is_champion and rows[champion].status == "champion"
    assert not rows[challenger].is_champion and rows[challenger].status == "challenger"


def test_a_challenger_without_a_fairness_audit_is_not_promoted(trained) -> None:
    settings, registry, engine, champion, challenger = trained
    with pytest.raises(RegistryError, match=r"fairness gate failed \(no fairness audit of .* yet: run `riskcast audit"):
        promote_model(settings, registry, engine, challenger, by="ds", reason="better AUROC", now=NOW)
    assert registry.champion() == champion


def test_a_failed_fairness_gate_says_which_gate_failed_and_why(trained) -> None:
    settings, registry, engine, champion, challenger = trained
    report = _record_failed_audit(engine, challenger)
    failed = next(g for g in report.gates if g.verdict == "fail")
    gate = {g.name: g for g in promotion_gates(settings, engine, challenger)}["fairness"]
    assert not gate.passed
    assert f"{failed.gate}: {failed.reason}" in gate.reason and "race_ethnicity=Black" in gate.reason
    with pytest.raises(RegistryError, match=r"fairness gate failed \(the latest audit .* failed: " + re.escape(f"{failed.gate}: ")):
        promote_model(settings, registry, engine, challenger, by="ds", reason="better AUROC", now=NOW)


def test_a_failed_audit_blocks_promotion_and_only_an_admin_may_override(trained) -> None:
    settings, registry, engine, champion, challenger = trained
    _record_failed_audit(engine, challenger)
    gates = {g.name: g for g in promotion_gates(settings, engine, challenger)}
    assert not gates["fairness"].passed
    with pytest.raises(RegistryError, match="only an admin may override"):
        promote_model(settings, registry, engine, challenger, by="nina", reason="x", now=NOW, role="nurse", override=True)
    promote_model(settings, registry, engine, challenger, by="ada", reason="ward trial", now=NOW, role="admin", override=True)
    assert registry.champion() == challenger
    last = registry.events()[-1]
    assert last["by"] == "ada" and "override of failed gate(s)" in last["reason"] and "fairness" in last["reason"]
    promote_model(settings, registry, engine, champion, by="ada", reason="back", now=NOW, role="admin", override=True)


def test_a_passing_audit_lets_the_challenger_through_when_calibration_passes(trained, tmp_path: Path) -> None:
    settings, registry, engine, champion, challenger = trained
    assert _audit(settings, registry, engine, challenger, tmp_path, calibration_bound=5.0).verdict == "pass"
    gates = {g.name: g for g in promotion_gates(settings, engine, challenger)}
    assert gates["fairness"].passed
    if not gates["calibration"].passed:
        with pytest.raises(RegistryError, match="calibration gate failed"):
            promote_model(settings, registry, engine, challenger, by="ds", reason="audit passed", now=NOW)
    else:
        promote_model(settings, registry, engine, challenger, by="ds", reason="audit passed", now=NOW)
        assert registry.champion() == challenger


def test_promoting_an_unknown_version_names_the_known_ones(trained) -> None:
    settings, registry, engine, champion, challenger = trained
    with pytest.raises(RegistryError, match="unknown model version 'v9999'.*known:"):
        promote_model(settings, registry, engine, "v9999", by="ds", reason="x", now=NOW)


def test_the_gates_read_the_evaluation_sealed_with_the_version_and_reports_has_its_export(trained) -> None:
    settings, registry, engine, champion, challenger = trained
    from riskcast.pipeline.promotion import calibration_gate
    from riskcast.pipeline.reports import ReportStore

    reports = ReportStore.of(settings, registry)
    export = reports.evaluation_path(challenger)
    written = json.loads(export.read_text())
    assert written == reports.require_evaluation(challenger).to_dict()
    assert reports.evaluation_markdown_path(challenger).read_text().startswith(f"# Evaluation of {challenger}")
    before = calibration_gate(settings, challenger)
    try:
        export.write_text('{"calibration": {"ece": 0, "calibration_in_the_large": 0}}')  # edited by hand
        assert calibration_gate(settings, challenger) == before
    finally:
        export.write_text(json.dumps(written, indent=2))


def test_calibration_gate_needs_a_held_out_evaluation(tmp_path: Path, trained) -> None:
    settings, registry, engine, champion, challenger = trained
    from riskcast.pipeline.promotion import calibration_gate

    other = load_settings(env={"RISKCAST_HOME": str(tmp_path)})
    gate = calibration_gate(other, champion)
    assert not gate.passed and "no held-out evaluation" in gate.reason


# --- a retrain's decision: automatic promotion needs discrimination no worse than the champion's


@pytest.mark.parametrize(
    ("champion", "challenger_auroc", "champion_auroc", "blocked"),
    [
        (None, 0.70, None, None),
        ("v1", 0.80, 0.805, None),
        ("v1", 0.78, 0.80, "below the champion's 0.800"),
        ("v1", None, 0.80, "unknown"),
        ("v1", 0.80, None, "unknown"),
    ],
)
def test_automatic_promotion_is_held_back_when_the_challenger_ranks_worse_or_cannot_be_compared(
    champion, challenger_auroc, champion_auroc, blocked
) -> None:
    reason = discriminates_worse(challenger_auroc, champion_auroc, champion=champion)
    assert (reason is None) == (blocked is None)
    if blocked is not None:
        assert blocked in reason


PASSED = [PromotionGate("calibration", True, "ECE 0.01"), PromotionGate("fairness", True, "pass")]


def decide_on_v2(challenger_auroc: float, *, automatic: bool):
    return decide_promotion(PASSED, challenger="v2", champion="v1", challenger_auroc=challenger_auroc,
                            champion_auroc=0.80, automatic=automatic)  # fmt: skip


def test_a_retrain_promotes_only_when_asked_every_gate_passes_and_it_ranks_no_worse() -> None:
    promoted = decide_on_v2(0.80, automatic=True)
    assert promoted.to_dict() == {"decision": "promoted", "why": "every promotion gate passed; AUROC no worse"}
    by_hand = decide_on_v2(0.80, automatic=False)
    assert by_hand.decision is PromotionDecision.LEAVE_TO_A_PERSON and "promote_when_gates_pass" in by_hand.why
    worse = decide_on_v2(0.70, automatic=True)
    assert worse.decision is PromotionDecision.LEAVE_TO_A_PERSON
    assert worse.why.endswith("decide, then `riskcast models promote v2 --user NAME --reason WHY`")


def test_a_failed_gate_blocks_a_retrains_promotion_and_names_the_override() -> None:
    gates = [PromotionGate("calibration", False, "ECE 0.2 is above 0.05"), PASSED[1]]
    verdict = decide_promotion(gates, challenger="v2", champion="v1", challenger_auroc=0.9, champion_auroc=0.8,
                               automatic=True)  # fmt: skip
    assert verdict.decision is PromotionDecision.BLOCKED
    assert verdict.why == ("calibration: ECE 0.2 is above 0.05. An admin may override with "
                           "`riskcast models promote v2 --user NAME --reason WHY` --override")
