"""Promotion gates: a challenger becomes champion only when its gates pass, or an admin overrides."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import select

from riskcast.config import load_settings
from riskcast.errors import RegistryError
from riskcast.lake import Lake
from riskcast.model import ModelRegistry
from riskcast.pipeline.ingest import ingest_paths
from riskcast.pipeline.promotion import promote_model, promotion_gates, sync_models
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
    kwargs = dict(now=NOW, reports_dir=settings.reports_dir, n_boot=0, ablations=False)
    champion = train_and_register(lake, registry, **kwargs).version
    challenger = train_and_register(lake, registry, seed=1, **kwargs).version
    engine = open_store(settings.database_url)
    sync_models(settings, registry, engine, now=NOW)
    yield settings, registry, engine, champion, challenger
    engine.dispose()


def _audit(engine, version: str, verdict: str) -> None:
    with engine.begin() as connection:
        connection.execute(
            audits.insert().values(model_version=version, created_at=NOW, verdict=verdict, summary={"reasons": ["sensitivity ratio 0.6 for Black"]})
        )


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


def test_a_failed_audit_blocks_promotion_and_only_an_admin_may_override(trained) -> None:
    settings, registry, engine, champion, challenger = trained
    _audit(engine, challenger, "fail")
    gates = {g.name: g for g in promotion_gates(settings, engine, challenger)}
    assert not gates["fairness"].passed and "sensitivity ratio 0.6" in gates["fairness"].reason
    with pytest.raises(RegistryError, match="only an admin may override"):
        promote_model(settings, registry, engine, challenger, by="nina", reason="x", now=NOW, role="nurse", override=True)
    promote_model(settings, registry, engine, challenger, by="ada", reason="ward trial", now=NOW, role="admin", override=True)
    assert registry.champion() == challenger
    last = registry.events()[-1]
    assert last["by"] == "ada" and "override of failed gate(s)" in last["reason"] and "fairness" in last["reason"]
    promote_model(settings, registry, engine, champion, by="ada", reason="back", now=NOW, role="admin", override=True)


def test_a_passing_audit_lets_the_challenger_through_when_calibration_passes(trained) -> None:
    settings, registry, engine, champion, challenger = trained
    _audit(engine, challenger, "pass")
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


def test_calibration_gate_needs_a_held_out_evaluation(tmp_path: Path, trained) -> None:
    settings, registry, engine, champion, challenger = trained
    from riskcast.pipeline.promotion import calibration_gate

    other = load_settings(env={"RISKCAST_HOME": str(tmp_path)})
    gate = calibration_gate(other, champion)
    assert not gate.passed and "no held-out evaluation" in gate.reason
