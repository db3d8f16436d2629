"""Benchmark: the dashboard's ward page with about 500 admitted patients (aim: under 1 s).

Three figures, median of --runs (default 5) runs, every run printed:

1. first render -- in a real headless Chromium (Selenium, Debian chromium + chromedriver):
   signed in as a physician (who sees every ward), open the ward page ("/") and wait until
   the ward grid has drawn a row for every patient on the board. Measured inside the page:
   a script injected before each document (Chrome DevTools Page.addScriptToEvaluateOnNewDocument)
   checks on every animation frame how many rows `#ward-grid .ag-center-cols-container .ag-row`
   holds and records performance.now() (milliseconds since navigation start) when the first row
   appears and when all rows have. The grid uses domLayout "autoHeight", so every row is in
   the DOM. The first load after sign-in ("cold": Dash's JavaScript not yet cached) is reported
   apart from the --runs reloads ("warm").
2. callback latency -- the ward grid's refresh callback (pages/ward.py `refresh`), triggered
   in the page as an alert action does (dash_clientside.set_props on "ward-action-done"), and
   timed by the browser's Performance API: the POST to /_dash-update-component from its start
   to the end of its response (performance.getEntriesByType("resource")). The same request made
   during each first render (the largest _dash-update-component response) is reported too.
3. server read -- riskcast.read_models.ward_board as the refresh callback calls it (with the
   lake and catalogue), plus read_models.scoring_freshness, timed in this process.

Set-up (timed once, not part of the runs): a temporary riskcast home; a synthetic cohort
(generate_cohort(--encounters, admitted_fraction=--admitted-fraction), about 500 admitted at
riskcast.synth.DEFAULT_NOW by default) written as Parquet, ingested, a model trained with fast
settings (n_boot=0, no ablations), synced to the store, and the admitted patients scored at
DEFAULT_NOW (which raises alerts). The app (create_app(...).server, clock shifted to
DEFAULT_NOW) is served by werkzeug (threaded) on 127.0.0.1 on a free port in a background thread.

    python bench/dashboard.py            # about 500 admitted patients (a few minutes on 2 cores)
    python bench/dashboard.py --quick    # about 100 admitted, 3 runs: a smoke run

Figures go to a table on stdout and to bench/out/dashboard.json (dashboard-quick.json with
--quick). Without Chromium/chromedriver (or selenium) only figure 3 is measured. The machine is
shared, so wall times are noisy: the browser, the server and this script share its cores.
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
import os
import shutil
import statistics
import tempfile
import threading
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any
import benchkit

REPO_ROOT = Path(__file__).resolve().parent.parent
OUT_DIR = REPO_ROOT / "bench" / "out"
PASSWORD = "bench night shift 0300"
USERNAME = "bench-physician"
WAIT_SECONDS = 120
CHROME_ARGUMENTS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1440,1000")
ROWS_SELECTOR = "#ward-grid .ag-center-cols-container .ag-row"

# Runs before every document: watches the ward grid on each animation frame.
WATCH_SCRIPT = """
(function () {
  const expected = %(expected)d;
  // "allRows": the moment the grid's drawn rows stopped changing (every row for a board
  // that grows with its rows; the visible rows for a fixed-height, virtualised board).
  window.__rcBench = {firstRow: null, allRows: null};
  let lastN = 0, since = null, stable = 0;
  function check() {
    const n = document.querySelectorAll(%(selector)s).length;
    const now = performance.now();
    if (n > 0 && window.__rcBench.firstRow === null) { window.__rcBench.firstRow = now; }
    if (n !== lastN) { lastN = n; since = now; stable = 0; } else if (n > 0) { stable += 1; }
    if (n > 0 && (n >= expected || stable >= 30) && window.__rcBench.allRows === null) {
      window.__rcBench.allRows = since; return;
    }
    requestAnimationFrame(check);
  }
  requestAnimationFrame(check);
})();
"""

CALLBACK_ENTRIES = """
return performance.getEntriesByType('resource')
  .filter(e => e.name.includes('_dash-update-component'))
  .map(e => ({start: e.startTime, end: e.responseEnd, duration: e.responseEnd - e.startTime,
              wait: e.responseStart - e.requestStart, bytes: e.encodedBodySize}));
"""


# --------------------------------------------------------------------------- environment
def machine() -> dict[str, Any]:
    """The machine and the versions of the libraries this benchmark exercises."""
    return benchkit.machine(("riskcast", "dash", "dash_ag_grid", "flask", "werkzeug", "polars", "sqlalchemy", "selenium"))


def median_of(values: list[float]) -> dict[str, Any]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "runs": values}


def _find(variable: str, *names: str) -> str | None:
    if os.environ.get(variable):
        return os.environ[variable] if os.access(os.environ[variable], os.X_OK) else None
    for name in names:
        found = shutil.which(name)
        if found:
            return found
    return None


# --------------------------------------------------------------------------- set-up
def build_home(home: Path, *, encounters: int, admitted_fraction: float, seed: int) -> dict[str, Any]:
    """Synthesise, ingest, train, sync and score at DEFAULT_NOW into `home`; the set-up's figures."""
    from riskcast.config import Settings
    from riskcast.lake import Lake
    from riskcast.model import ModelRegistry
    from riskcast.pipeline.ingest import ingest_paths
    from riskcast.pipeline.scoring import score_admitted
    from riskcast.pipeline.training import train_and_register
    from riskcast.store import open_store
    from riskcast.synth import DEFAULT_NOW, generate_cohort, write_cohort

    settings = Settings(home=home)
    seconds: dict[str, float] = {}
    started = time.perf_counter()
    cohort = generate_cohort(encounters, seed=seed, admitted_fraction=admitted_fraction)
    write_cohort(cohort, home / "cohort")
    seconds["synthesise"] = time.perf_counter() - started
    lake = Lake(settings.lake_dir)
    registry = ModelRegistry(settings.models_dir)
    engine = open_store(settings.database_url)
    try:
        started = time.perf_counter()
        ingest_paths([home / "cohort"], lake=lake, now=DEFAULT_NOW, database=engine)
        seconds["ingest"] = time.perf_counter() - started
        started = time.perf_counter()
        trained = train_and_register(lake, registry, now=DEFAULT_NOW, n_boot=0, ablations=False,
                                     reports_dir=settings.reports_dir, seed=seed, database=engine)  # fmt: skip
        seconds["train"] = time.perf_counter() - started
        started = time.perf_counter()
        scored = score_admitted(lake, registry, engine, at=DEFAULT_NOW, now=DEFAULT_NOW + timedelta(minutes=5))
        seconds["score"] = time.perf_counter() - started
    finally:
        engine.dispose()
    return {
        "encounters": encounters,
        "admitted_fraction": admitted_fraction,
        "model_version": trained.version,
        "score": scored.to_dict(),
        "seconds": {k: round(v, 2) for k, v in seconds.items()},
    }


# --------------------------------------------------------------------------- measurements
def server_read(context_: Any, *, runs: int) -> dict[str, Any]:
    """ward_board + scoring_freshness as the refresh callback calls them, timed `runs` times."""
    from riskcast import read_models

    model = context_.model()
    board_runs: list[float] = []
    fresh_runs: list[float] = []
    height = 0
    for run in range(runs):
        gc.collect()
        now = context_.clock()
        started = time.perf_counter()
        board = read_models.ward_board(context_.engine, model_version=model.version, now=now, wards=None,
                                 lake=context_.lake, catalog=context_.catalog)  # fmt: skip
        board_runs.append(time.perf_counter() - started)
        started = time.perf_counter()
        read_models.scoring_freshness(context_.engine, model_version=model.version, now=now)
        fresh_runs.append(time.perf_counter() - started)
        height = board.height
        print(f"  server read run {run + 1}: ward_board {board_runs[-1] * 1000:7.1f} ms ({height} rows), "
              f"scoring_freshness {fresh_runs[-1] * 1000:6.1f} ms", flush=True)  # fmt: skip
    return {"rows": height, "ward_board_s": median_of(board_runs), "scoring_freshness_s": median_of(fresh_runs)}


def open_browser() -> tuple[Any, str] | tuple[None, str]:
    """(a headless Chromium driver, its version) or (None, why not)."""
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        return None, "selenium is not installed"
    chromium = _find("RISKCAST_CHROMIUM", "chromium", "chromium-browser", "google-chrome")
    driver_path = _find("RISKCAST_CHROMEDRIVER", "chromedriver")
    if chromium is None or driver_path is None:
        return None, "Chromium or chromedriver is not installed (apt-get install chromium chromium-driver)"
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for argument in CHROME_ARGUMENTS:
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(executable_path=driver_path), options=options)
    driver.implicitly_wait(0)
    return driver, str(driver.capabilities.get("browserVersion", "?"))


def wait_for(driver: Any, condition: Callable[[Any], Any], what: str) -> Any:
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, WAIT_SECONDS, poll_frequency=0.05).until(condition, message=f"waiting for {what}")


def _render_figures(driver: Any, expected: int) -> dict[str, Any]:
    """After a navigation: wait until every row is drawn; the page's own timings (ms)."""
    wait_for(driver, lambda d: d.execute_script("return window.__rcBench && window.__rcBench.allRows"),
             f"the ward grid's rows (up to {expected}) to be drawn")  # fmt: skip
    marks = driver.execute_script("return window.__rcBench")
    navigation = driver.execute_script(
        "const n = performance.getEntriesByType('navigation')[0];"
        "return {dom_content_loaded: n.domContentLoadedEventEnd, load: n.loadEventEnd};"
    )
    callbacks = driver.execute_script(CALLBACK_ENTRIES)
    refresh = max(callbacks, key=lambda e: e["bytes"]) if callbacks else None
    rows = len(driver.find_elements("css selector", ROWS_SELECTOR))
    return {
        "first_row_ms": marks["firstRow"],
        "all_rows_ms": marks["allRows"],
        "rows_drawn": rows,
        "dom_content_loaded_ms": navigation["dom_content_loaded"],
        "load_ms": navigation["load"],
        "callbacks": len(callbacks),
        "refresh_post_start_ms": refresh["start"] if refresh else None,
        "refresh_post_ms": refresh["duration"] if refresh else None,
        "refresh_response_bytes": refresh["bytes"] if refresh else None,
    }


def browser_figures(driver: Any, base: str, *, expected: int, runs: int) -> dict[str, Any]:
    """First render (cold after sign-in, then `runs` reloads) and the refresh callback latency."""
    driver.execute_cdp_cmd(
        "Page.addScriptToEvaluateOnNewDocument",
        {"source": WATCH_SCRIPT % {"expected": expected, "selector": json.dumps(ROWS_SELECTOR)}},
    )
    driver.get(f"{base}/logout")
    wait_for(driver, lambda d: d.find_elements("css selector", "#username"), "the sign-in form")
    driver.find_element("css selector", "#username").send_keys(USERNAME)
    driver.find_element("css selector", "#password").send_keys(PASSWORD)
    driver.find_element("css selector", "#signin-submit").click()
    cold = _render_figures(driver, expected)
    print(f"  first render cold (after sign-in): first row {cold['first_row_ms']:7.0f} ms, "
          f"all {cold['rows_drawn']} rows {cold['all_rows_ms']:7.0f} ms", flush=True)  # fmt: skip

    warm: list[dict[str, Any]] = []
    for run in range(runs):
        driver.get(f"{base}/")
        figures = _render_figures(driver, expected)
        warm.append(figures)
        print(f"  first render run {run + 1}: first row {figures['first_row_ms']:7.0f} ms, "
              f"all {figures['rows_drawn']} rows {figures['all_rows_ms']:7.0f} ms, "
              f"refresh POST {figures['refresh_post_ms']:6.0f} ms "
              f"({figures['refresh_response_bytes'] / 1024:.0f} KiB), {figures['callbacks']} callbacks", flush=True)  # fmt: skip

    # The refresh callback on its own, triggered as an alert action triggers it.
    latency: list[float] = []
    for run in range(runs):
        driver.execute_script("performance.clearResourceTimings();")
        driver.execute_script("window.dash_clientside.set_props('ward-action-done', {data: arguments[0]});", 1000 + run)
        entries = wait_for(driver, lambda d: [e for e in d.execute_script(CALLBACK_ENTRIES) if e["end"] > 0],
                           "the refresh callback's response")  # fmt: skip
        entry = max(entries, key=lambda e: e["bytes"])
        latency.append(entry["duration"])
        print(f"  refresh callback run {run + 1}: POST {entry['duration']:6.0f} ms "
              f"(server wait {entry['wait']:6.0f} ms, {entry['bytes'] / 1024:.0f} KiB)", flush=True)  # fmt: skip
        time.sleep(0.3)
    return {
        "cold": cold,
        "warm_runs": warm,
        "load_ms": median_of([w["load_ms"] for w in warm]),
        "refresh_post_start_ms": median_of([w["refresh_post_start_ms"] for w in warm if w["refresh_post_start_ms"] is not None]),
        "first_row_ms": median_of([w["first_row_ms"] for w in warm]),
        "all_rows_ms": median_of([w["all_rows_ms"] for w in warm]),
        "refresh_post_in_render_ms": median_of([w["refresh_post_ms"] for w in warm if w["refresh_post_ms"] is not None]),
        "refresh_callback_ms": median_of(latency),
        "refresh_response_bytes": warm[-1]["refresh_response_bytes"],
    }


def measure(args: argparse.Namespace, scratch: Path) -> dict[str, Any]:
    from werkzeug.serving import make_server

    from riskcast.dashboards import auth
    from riskcast.clock import shifted_clock
    from riskcast.dashboards.app import create_app
    from riskcast.dashboards.context import EXTENSION
    from riskcast.synth import DEFAULT_NOW

    print(f"Set-up: {args.encounters:,} encounters, admitted_fraction {args.admitted_fraction} ...", flush=True)
    setup = build_home(scratch, encounters=args.encounters, admitted_fraction=args.admitted_fraction, seed=args.seed)
    print(f"  set-up seconds: {setup['seconds']}; scoring: {setup['score']}", flush=True)
    from riskcast.config import Settings

    settings = Settings(home=scratch)
    app = create_app(settings, clock=shifted_clock(DEFAULT_NOW))
    context_ = app.server.extensions[EXTENSION]
    auth.add_user(context_.engine, USERNAME, role="physician", password=PASSWORD, now=DEFAULT_NOW)

    print("Server read (ward_board for all wards):", flush=True)
    read = server_read(context_, runs=args.runs)
    admitted = read["rows"]
    print(f"  admitted patients on the board: {admitted}", flush=True)
    results: dict[str, Any] = {"setup": setup, "admitted_on_board": admitted, "server_read": read}

    driver, why = open_browser()
    if driver is None:
        print(f"NOTE: no browser figures: {why}", flush=True)
        results["browser"] = {"skipped": why}
        return results
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # no line per request
    server = make_server("127.0.0.1", 0, app.server, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        print(f"Browser: headless Chromium {why} against http://127.0.0.1:{server.server_port}/", flush=True)
        results["browser"] = browser_figures(driver, f"http://127.0.0.1:{server.server_port}", expected=admitted, runs=args.runs)
        results["browser"]["chromium"] = why
    finally:
        driver.quit()
        server.shutdown()
        thread.join()
        context_.engine.dispose()
    return results


def print_table(env: dict[str, Any], results: dict[str, Any]) -> None:
    print()
    print(f"Machine: {env['cpu']}, {env['cores']} cores, {env['ram_gib']} GiB RAM; "
          f"load average at start {env['load_average_at_start']}")  # fmt: skip
    print("Versions: " + ", ".join(f"{k} {v}" for k, v in env["versions"].items()))
    n = results["admitted_on_board"]
    print(f"\nWard page, {n} admitted patients, median of {len(results['server_read']['ward_board_s']['runs'])} runs\n")
    print(f"| {'measure':<62} | {'median':>9} | {'min–max':>15} |")
    print(f"|{'-' * 64}|{'-' * 11}|{'-' * 17}|")

    def row(label: str, figure: dict[str, Any], scale: float = 1.0) -> None:
        spread = f"{figure['min'] * scale:.0f}–{figure['max'] * scale:.0f} ms"
        print(f"| {label:<62} | {figure['median'] * scale:6.0f} ms | {spread:>15} |")

    browser = results["browser"]
    if "skipped" not in browser:
        cold = browser["cold"]
        print(f"| {'first render, cold (after sign-in): board drawn':<62} | {cold['all_rows_ms']:6.0f} ms | {'(1 run)':>15} |")
        row("first render (reload): load event (HTML, scripts)", browser["load_ms"])
        row("first render (reload): refresh POST sent", browser["refresh_post_start_ms"])
        row("first render (reload): first row drawn", browser["first_row_ms"])
        row(f"first render (reload): board drawn ({n} patients)", browser["all_rows_ms"])
        row("refresh callback POST during first render", browser["refresh_post_in_render_ms"])
        row(f"refresh callback POST, triggered ({browser['refresh_response_bytes'] / 1024:.0f} KiB)", browser["refresh_callback_ms"])
    else:
        print(f"| {'browser figures skipped: ' + browser['skipped'][:37]:<62} | {'—':>9} | {'':>15} |")
    row("server: read_models.ward_board (all wards, lake + catalogue)", results["server_read"]["ward_board_s"], 1000)
    row("server: read_models.scoring_freshness", results["server_read"]["scoring_freshness_s"], 1000)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--encounters", type=int, default=1500, help="cohort size (default 1500: ~500 admitted)")
    parser.add_argument("--admitted-fraction", type=float, default=0.34, help="share still admitted at DEFAULT_NOW")
    parser.add_argument("--runs", type=int, default=5, help="timed runs per figure (default 5)")
    parser.add_argument("--quick", action="store_true", help="300 encounters (~100 admitted), 3 runs: a smoke run")
    parser.add_argument("--seed", type=int, default=2026)
    args = parser.parse_args()
    if args.quick:
        args.encounters, args.runs = 300, 3
    env = machine()
    with tempfile.TemporaryDirectory(prefix="riskcast-bench-dashboard-") as scratch:
        results = measure(args, Path(scratch))
    browser = results.get("browser", {})
    if "chromium" in browser:
        env["versions"]["chromium"] = browser["chromium"]
    results = {"machine": env, "quick": args.quick, "runs": args.runs, **results}
    print_table(env, results)
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    path = OUT_DIR / ("dashboard-quick.json" if args.quick else "dashboard.json")
    path.write_text(json.dumps(results, indent=2, default=str))
    print(f"\nwrote {path.relative_to(REPO_ROOT)}")


if __name__ == "__main__":
    main()
