"""The store's copies of the lake's quarantine and the registry's models, made by the flows
themselves: every caller (the CLI, the ingest job, the demo) gets the same rows."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import polars as pl
from click.testing import CliRunner
from sqlalchemy import Engine, delete, select

from riskcast.cli import cli
from riskcast.config import Settings
from riskcast.jobs.definitions import JobContext, run_ingest
from riskcast.lake import Lake
from riskcast.model import ModelRegistry, RiskModel
from riskcast.pipeline.ingest import ingest_paths
from riskcast.pipeline.store_sync import delete_quarantine_before, record_quarantine, sync_models
from riskcast.store import open_store
from riskcast.store.tables import models, quarantine
from riskcast.synth import generate_cohort, write_cohort

NOW = datetime(2026, 2, 2, 10, 0, tzinfo=UTC)


def write_drop(folder: Path) -> Path:
    """A small cohort as CSV with a share of malformed rows, so there is a quarantine."""
    write_cohort(generate_cohort(25, seed=1, malformed_rate=0.05, now=datetime(2026, 2, 2, 9, tzinfo=UTC)), folder,
                 fmt="csv")  # fmt: skip
    return folder


def stored_quarantine(engine: Engine) -> pl.DataFrame:
    """The store's quarantine rows, comparable across homes (file names without their folders)."""
    with engine.connect() as connection:
        rows = connection.execute(
            select(quarantine.c.table_name, quarantine.c.source_file, quarantine.c.source_line, quarantine.c.rule,
                   quarantine.c.detail, quarantine.c.record)
        ).all()  # fmt: skip
    frame = pl.DataFrame([tuple(r) for r in rows], orient="row",
                         schema=["table_name", "source_file", "source_line", "rule", "detail", "record"])  # fmt: skip
    return frame.with_columns(pl.col("source_file").map_elements(lambda p: Path(p).name, return_dtype=pl.String)).sort(
        "table_name", "source_file", "source_line", "rule"
    )


def test_the_cli_and_the_ingest_job_store_the_same_quarantine_as_the_lake_holds(tmp_path: Path) -> None:
    by_cli, by_job = Settings(home=tmp_path / "cli"), Settings(home=tmp_path / "job")
    drop = write_drop(tmp_path / "drop")
    result = CliRunner().invoke(cli, ["--home", str(by_cli.home), "--json", "ingest", str(drop)], obj={})
    assert result.exit_code == 0, result.output
    shutil.copytree(drop, by_job.home / "inbox" / "drop")
    engine = open_store(by_job.database_url)
    counts = run_ingest(JobContext(job="ingest", scheduled_for=NOW, settings=by_job, engine=engine,
                                   options={"settle_seconds": 0}))  # fmt: skip
    cli_engine = open_store(by_cli.database_url)
    from_cli, from_job = stored_quarantine(cli_engine), stored_quarantine(engine)
    assert from_cli.height == counts["quarantine_rows_stored"] == Lake(by_cli.lake_dir).scan_quarantine().collect().height > 0
    assert from_cli.equals(from_job)
    cli_engine.dispose()
    engine.dispose()


def test_an_ingest_that_finds_its_content_in_the_lake_copies_that_batchs_quarantine_again(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path / "home")
    drop = write_drop(tmp_path / "drop")
    lake = Lake(settings.lake_dir)
    first, held = ingest_paths([drop], lake=lake, now=NOW)  # no store: as if it died before writing there
    engine = open_store(settings.database_url)
    again, _ = ingest_paths([drop], lake=lake, now=NOW, database=engine)
    assert again.already_ingested and again.quarantine_rows_stored == held.height > 0
    with engine.connect() as connection:
        assert set(connection.execute(select(quarantine.c.batch_id)).scalars()) == {first.batch_id}
    third, _ = ingest_paths([drop], lake=lake, now=NOW, database=engine)
    assert third.quarantine_rows_stored == 0  # idempotent per batch
    assert first.quarantine_rows_stored is None  # no store given, nothing said about it
    engine.dispose()


def test_record_quarantine_of_no_batches_writes_nothing(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path / "home")
    engine = open_store(settings.database_url)
    assert record_quarantine(engine, Lake(settings.lake_dir), [], now=NOW) == 0
    engine.dispose()


def test_the_stored_copy_of_an_old_batch_is_deleted_and_the_lakes_rows_bring_it_back(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path / "home")
    drop, lake = write_drop(tmp_path / "drop"), Lake(settings.lake_dir)
    engine = open_store(settings.database_url)
    first, _ = ingest_paths([drop], lake=lake, now=NOW, database=engine)
    assert delete_quarantine_before(engine, NOW) == 0
    assert delete_quarantine_before(engine, NOW + timedelta(seconds=1)) == first.quarantine_rows_stored > 0
    again, _ = ingest_paths([drop], lake=lake, now=NOW + timedelta(days=400), database=engine)
    assert again.quarantine_rows_stored == first.quarantine_rows_stored
    engine.dispose()


def tiny_model() -> RiskModel:
    rng = np.random.default_rng(0)
    features = pd.DataFrame(rng.normal(size=(200, 2)), columns=["a", "b"])
    return RiskModel(device="cpu", n_jobs=1, n_estimators=5).fit(
        features, (features["a"] > 1).astype(int).to_numpy(), groups=np.repeat(np.arange(20), 10)
    )


def test_the_store_takes_its_champion_and_metrics_from_the_registry(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path / "home")
    registry = ModelRegistry(settings.models_dir)
    evaluation = {"discrimination": {"risk": {"auroc": 0.81, "auprc": 0.2}}}
    first = registry.register(tiny_model(), metadata={"intended_use": "tests", "limits": [], "metrics": evaluation},
                              now=NOW)  # fmt: skip
    second = registry.register(tiny_model(), metadata={"intended_use": "tests", "limits": []}, now=NOW)
    registry.promote(first, by="alice", reason="first model", now=NOW)
    registry.promote(second, by="bob", reason="better calibration", now=NOW)
    engine = open_store(settings.database_url)
    sync_models(registry, engine)
    with engine.connect() as connection:
        rows = {r.version: r for r in connection.execute(select(models))}
    assert [v for v, r in rows.items() if r.is_champion] == [second] == [registry.champion()]
    assert (rows[first].status, rows[first].metrics) == ("retired", {"auroc": 0.81, "auprc": 0.2})
    assert (rows[second].promoted_by, rows[second].promotion_reason, rows[second].metrics) == ("bob", "better calibration", {})
    with engine.begin() as connection:  # a store rebuilt from scratch: the registry is the truth
        connection.execute(delete(models))
    sync_models(registry, engine)
    with engine.connect() as connection:
        assert connection.execute(select(models.c.version).where(models.c.is_champion)).scalars().all() == [second]
    engine.dispose()
