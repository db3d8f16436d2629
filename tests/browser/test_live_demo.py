"""The live demo in a real Chromium: what `riskcast demo` runs, the scheduler on the demo
schedule beside the dashboard, both on one shifted clock; a file from `demo-feed` dropped
into the inbox shows on the ward board as new alerts.

The home holds a 1,000-encounter cohort ending at DEFAULT_NOW and a model trained on it
(big enough to react to vitals), with the hour DEFAULT_NOW scored.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import polars as pl
import pytest
from werkzeug.serving import make_server

from riskcast import read_models
from riskcast.alerts.state import list_alerts
from riskcast.clock import ShiftedClock, shifted_clock
from riskcast.config import Settings
from riskcast.dashboards import auth
from riskcast.dashboards.app import create_app
from riskcast.jobs.schedule import DEMO_SCHEDULE_FILE, load_schedule
from riskcast.jobs.scheduler import RiskcastScheduler
from riskcast.lake import Lake
from riskcast.model import ModelRegistry
from riskcast.pipeline.demo_feed import write_demo_feed
from riskcast.pipeline.ingest import ingest_paths
from riskcast.pipeline.scoring import score_admitted
from riskcast.pipeline.training import train_and_register
from riskcast.store.records import latest_scores
from riskcast.synth import DEFAULT_NOW, generate_cohort, write_cohort

from .pages import PASSWORD, css, submit_sign_in, wait_for

pytestmark = pytest.mark.browser

FED_PATIENTS = 3
SHOWN_WITHIN_SECONDS = 90
"""The demo schedule's cadence bounds it at a minute (tests/test_demo_feed.py); 90 s allows a busy machine."""


@dataclass(frozen=True)
class Live:
    base: str
    settings: Settings
    engine: Any
    clock: ShiftedClock


@pytest.fixture(scope="module")
def live(browser: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    home = tmp_path_factory.mktemp("live-demo")
    settings = Settings(home=home)
    write_cohort(generate_cohort(1000, seed=5), home / "cohort")
    lake = Lake(settings.lake_dir)
    ingest_paths([home / "cohort"], lake=lake, now=DEFAULT_NOW)
    registry = ModelRegistry(settings.models_dir)
    train_and_register(lake, registry, now=DEFAULT_NOW, n_boot=0, ablations=False)
    clock = shifted_clock(DEFAULT_NOW + timedelta(minutes=5))
    app = create_app(settings, clock=clock)
    engine = app.server.extensions["riskcast"].engine
    score_admitted(lake, registry, engine, at=DEFAULT_NOW, now=clock())
    auth.add_user(engine, "phil", role="physician", password=PASSWORD, now=DEFAULT_NOW)
    server = make_server("127.0.0.1", 0, app.server, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield Live(f"http://127.0.0.1:{server.server_port}", settings, engine, clock)
    finally:
        server.shutdown()
        thread.join()
        engine.dispose()


def needs_action(driver: Any, encounters: set[str]) -> set[str]:
    """The encounters among `encounters` whose ward-board row is marked as needing action."""
    marked = css(driver, "#ward-grid .ag-center-cols-container .ag-row.rc-row-action")
    return {row.get_attribute("row-id") for row in marked} & encounters


def test_a_dropped_file_of_observations_shows_as_new_alerts_on_the_ward_board(browser, live):
    service = RiskcastScheduler(load_schedule(packaged=DEMO_SCHEDULE_FILE), live.settings, engine=live.engine,
                                clock=live.clock)
    submit_sign_in(browser, live.base, "phil")
    wait_for(browser, lambda d: css(d, "#ward-grid .ag-row"), "the ward grid's rows")
    feed = write_demo_feed(live.settings, at=live.clock(), patients=FED_PATIENTS)
    fed = {e["encounter_id"] for e in feed.encounters}
    before = latest_scores(live.engine).filter(pl.col("encounter_id").is_in(fed)).select("encounter_id", "risk")
    assert not list_alerts(live.engine).filter(pl.col("encounter_id").is_in(fed)).height
    assert not needs_action(browser, fed)
    service.start_background()
    try:
        shown = wait_for(browser, lambda d: needs_action(d, fed), "a fed patient's new alert on the ward board",
                         seconds=SHOWN_WITHIN_SECONDS)
    finally:
        service.stop(wait=True)
    assert shown <= fed
    archived = list((live.settings.home / "archive").rglob(feed.path.name))
    assert not feed.path.exists() and len(archived) == 1
    after = latest_scores(live.engine).filter(pl.col("encounter_id").is_in(fed)).select("encounter_id", "risk")
    risen = before.join(after, on="encounter_id", suffix="_after")
    assert risen.height == FED_PATIENTS and (risen["risk_after"] > risen["risk"]).all(), risen
    model = read_models.model_in_use(ModelRegistry(live.settings.models_dir))
    board = read_models.ward_board(live.engine, model_version=model.version, now=live.clock())
    for encounter in shown:
        row = board.filter(pl.col("encounter_id") == encounter).row(0, named=True)
        assert row["needs_action"] and row["risk"] >= model.threshold
