"""The Model and Fairness pages in a real headless Chromium, over data made by the real flow.

One small home per module: a synthetic cohort of 300 encounters is ingested, a model is
trained with fast settings (10 bootstrap rounds, no ablation models) and its evaluation and
trade-off reports written, the admitted patients are scored over the cohort's last day, and
the model is audited twice by riskcast.pipeline.audit: once with the packaged gates (46
held-out patients with a handful of events: groups are too small to report, so suppressed)
and once with a gates file that reports groups of at least 5 patients and 2 events. The app runs in a
thread on a free port with a clock starting 10 minutes after the cohort's present.

Set RISKCAST_SCREENSHOTS=docs/screenshots to keep the model and fairness screenshots.
"""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from importlib import resources
from pathlib import Path
from typing import Any

import pytest
import yaml
from werkzeug.serving import make_server

from riskcast.config import Settings
from riskcast.dashboards import auth
from riskcast.clock import shifted_clock
from riskcast.dashboards.app import create_app
from riskcast.lake import Lake
from riskcast.model import ModelRegistry
from riskcast.pipeline.audit import audit_model
from riskcast.pipeline.ingest import ingest_paths
from riskcast.pipeline.performance import record_weekly_performance
from riskcast.pipeline.scoring import score_admitted
from riskcast.pipeline.training import INTENDED_USE, train_and_register
from riskcast.store import open_store
from riskcast.synth import DEFAULT_NOW, generate_cohort, write_cohort

from .pages import PASSWORD, css, save_screenshot, submit_sign_in, text_of, wait_for

pytestmark = pytest.mark.browser

SCORED_HOURS_BEFORE_NOW = (24, 12, 1, 0)
NOT_AVAILABLE = "This page is not available to your account."


@dataclass(frozen=True)
class Served:
    """The running app and the facts the tests check against."""

    base: str
    version: str
    suppressed_audit: int
    reported_audit: int


def _small_groups_gates(path: Path) -> Path:
    """The packaged gates, reporting groups of at least 5 patients with 2 events."""
    gates = yaml.safe_load(resources.files("riskcast.schemas").joinpath("fairness_gates.yaml").read_text())
    gates |= {"min_patients": 5, "min_events": 2, "bootstrap_resamples": 20}
    path.write_text(yaml.safe_dump(gates))
    return path


def _build_home(home: Path) -> tuple[Settings, str, int, int]:
    settings = Settings(home=home)
    write_cohort(generate_cohort(300, seed=5), home / "cohort")
    lake = Lake(settings.lake_dir)
    ingest_paths([home / "cohort"], lake=lake, now=DEFAULT_NOW)
    registry = ModelRegistry(settings.models_dir)
    trained = train_and_register(lake, registry, now=DEFAULT_NOW, n_boot=10, ablations=False, seed=5,
                                 reports_dir=settings.reports_dir)  # fmt: skip
    engine = open_store(settings.database_url)
    try:
        for hours in SCORED_HOURS_BEFORE_NOW:
            at = DEFAULT_NOW - timedelta(hours=hours)
            score_admitted(lake, registry, engine, at=at, now=at + timedelta(minutes=5))
        # what the nightly job stores for the Model page's weekly table
        record_weekly_performance(engine, lake, registry, now=DEFAULT_NOW, n_boot=20)
        suppressed = audit_model(settings, registry, now=DEFAULT_NOW - timedelta(hours=2), engine=engine, n_boot=20)
        reported = audit_model(settings, registry, now=DEFAULT_NOW - timedelta(hours=1), engine=engine,
                               gates_path=_small_groups_gates(home / "small-groups.yaml"))  # fmt: skip
    finally:
        engine.dispose()
    return settings, trained.version, suppressed.audit_id, reported.audit_id


@pytest.fixture(scope="module")
def served(browser: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    settings, version, suppressed, reported = _build_home(tmp_path_factory.mktemp("report-pages-home"))
    app = create_app(settings, clock=shifted_clock(DEFAULT_NOW + timedelta(minutes=10)))
    engine = app.server.extensions["riskcast"].engine
    auth.add_user(engine, "dana", role="data_scientist", password=PASSWORD, now=DEFAULT_NOW)
    auth.add_user(engine, "nina", role="nurse", wards=["north-medical-1"], password=PASSWORD, now=DEFAULT_NOW)
    server = make_server("127.0.0.1", 0, app.server, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield Served(base=f"http://127.0.0.1:{server.server_port}", version=version, suppressed_audit=suppressed,
                     reported_audit=reported)  # fmt: skip
    finally:
        server.shutdown()
        thread.join()
        engine.dispose()


# ---------------------------------------------------------------------------------- helpers








def sign_in(driver: Any, served: Served, username: str) -> None:
    """A fresh browser session signed in as `username`, on their start page."""
    submit_sign_in(driver, served.base, username)
    wait_for(driver, lambda d: username in text_of(d, "#shell-user"), "the signed-in header")


def open_model_page(driver: Any, served: Served) -> None:
    driver.get(f"{served.base}/model")
    wait_for(driver, lambda d: INTENDED_USE[:40] in text_of(d, "#model-card"), "the model card")
    wait_for(driver, lambda d: "Risk bins" in text_of(d, "#model-reliability"), "the reliability curve")
    wait_for(driver, lambda d: "NEWS2 ≥5" in text_of(d, "#model-tradeoff"), "the trade-off chart")


def open_fairness_page(driver: Any, served: Served) -> None:
    driver.get(f"{served.base}/fairness")
    wait_for(driver, lambda d: css(d, "#fairness-verdict-pill"), "the verdict")
    wait_for(driver, lambda d: css(d, "#fairness-groups .ag-row"), "the groups table")
    wait_for(driver, lambda d: css(d, "#fairness-history .ag-row"), "the audit history")




def callback_status(driver: Any, payload: dict[str, Any]) -> tuple[int, str]:
    """POST a Dash callback request from this browser's session; its status and body."""
    script = """
        const done = arguments[arguments.length - 1];
        fetch('/_dash-update-component', {method: 'POST', headers: {'Content-Type': 'application/json'},
                                          body: arguments[0], credentials: 'same-origin'})
            .then(r => r.text().then(t => done([r.status, t]))).catch(e => done([0, String(e)]));
    """
    status, body = driver.execute_async_script(script, json.dumps(payload))
    return int(status), str(body)


def model_card_request(version: str) -> dict[str, Any]:
    outputs = ["model-summary.children", "model-card.children", "model-promise.children", "model-tradeoff.figure",
               "model-tradeoff-note.children", "model-discrimination.figure", "model-discrimination-table.rowData",
               "model-reliability.figure", "model-reliability-note.children"]  # fmt: skip
    return {
        "output": ".." + "...".join(outputs) + "..",
        "outputs": [dict(zip(("id", "property"), o.rsplit(".", 1), strict=True)) for o in outputs],
        "inputs": [{"id": "model-version", "property": "value", "value": version}],
        "changedPropIds": ["model-version.value"],
    }


def fairness_groups_request(audit_id: int) -> dict[str, Any]:
    outputs = ["fairness-groups-chart.figure", "fairness-groups.rowData", "fairness-feature-note.children"]
    return {
        "output": ".." + "...".join(outputs) + "..",
        "outputs": [dict(zip(("id", "property"), o.rsplit(".", 1), strict=True)) for o in outputs],
        "inputs": [{"id": "fairness-audit", "property": "value", "value": audit_id},
                   {"id": "fairness-feature", "property": "value", "value": "sex"},
                   {"id": "fairness-metric", "property": "value", "value": "sensitivity"}],  # fmt: skip
        "changedPropIds": ["fairness-audit.value"],
    }


# ------------------------------------------------------------------------------------ tests


def test_model_and_fairness_pages_render_for_the_screenshots(browser, served, tmp_path):
    sign_in(browser, served, "dana")
    open_model_page(browser, served)
    wait_for(browser, lambda d: css(d, "#model-over-time-table .ag-row"), "the weekly table")
    model = save_screenshot(browser, "model.png", tmp_path)
    open_fairness_page(browser, served)
    fairness = save_screenshot(browser, "fairness.png", tmp_path)
    for path in (model, fairness):
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 20_000


def test_a_data_scientist_sees_the_card_the_reliability_curve_and_the_tradeoff(browser, served):
    sign_in(browser, served, "dana")
    open_model_page(browser, served)
    assert served.version in text_of(browser, "#model-summary") and "champion" in text_of(browser, "#model-summary")
    assert "Limits" in text_of(browser, "#model-card").title()
    assert css(browser, "#model-reliability .scatterlayer .trace")
    tradeoff = text_of(browser, "#model-tradeoff")
    assert all(f"NEWS2 ≥{level}" in tradeoff for level in (3, 5, 7)) and "Now: risk ≥" in tradeoff
    assert "NEWS2" in text_of(browser, "#model-discrimination-table")


def test_groups_too_small_to_report_show_the_word_suppressed_never_a_number(browser, served):
    sign_in(browser, served, "dana")
    browser.get(f"{served.base}/fairness?audit={served.suppressed_audit}")
    wait_for(browser, lambda d: "schemas/fairness_gates.yaml" in text_of(d, "#fairness-summary"), "the audit with the packaged gates")
    wait_for(browser, lambda d: css(d, "#fairness-groups .ag-center-cols-container .rc-row-insufficient"), "a suppressed group")
    rows = css(browser, "#fairness-groups .ag-center-cols-container .rc-row-insufficient")
    for row in rows:
        cells = [c.text for c in row.find_elements("css selector", ".ag-cell") if c.get_attribute("col-id") != "group_label"]
        assert cells and all(cell == "suppressed" for cell in cells)
    assert "suppressed" in text_of(browser, "#fairness-groups-chart")


def test_a_nurse_is_refused_both_pages_and_their_callbacks(browser, served):
    sign_in(browser, served, "nina")
    assert not css(browser, "#shell-nav-model") and not css(browser, "#shell-nav-fairness")
    for path, data_id in (("/model", "#model-card"), ("/fairness", "#fairness-verdict")):
        browser.get(f"{served.base}{path}")
        wait_for(browser, lambda d: NOT_AVAILABLE in d.page_source, f"the refusal on {path}")
        assert not css(browser, data_id)
    status, body = callback_status(browser, model_card_request(served.version))
    assert (status, body) == (204, "")
    status, body = callback_status(browser, fairness_groups_request(served.reported_audit))
    assert (status, body) == (204, "")


def test_the_same_callbacks_answer_a_data_scientist(browser, served):
    """The refusals above are the role check, not a malformed request."""
    sign_in(browser, served, "dana")
    browser.get(f"{served.base}/model")
    status, body = callback_status(browser, model_card_request(served.version))
    assert status == 200 and INTENDED_USE[:40] in body
    status, body = callback_status(browser, fairness_groups_request(served.reported_audit))
    assert status == 200 and "female" in body


def test_signed_out_callback_requests_get_an_empty_401(served):
    payload = json.dumps(model_card_request(served.version)).encode()
    request = urllib.request.Request(f"{served.base}/_dash-update-component", data=payload,
                                     headers={"Content-Type": "application/json"})  # fmt: skip
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request)
    assert refused.value.code == 401 and refused.value.read() == b""
