"""The live demo's pieces: the shifted clock, the demo schedule, and the demo feed file."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl
import pytest

from riskcast.clock import ShiftedClock, offset_of, read_clock_file, resume_clock, shifted_clock, wall_clock
from riskcast.config import Settings
from riskcast.errors import ConfigError, LakeError
from riskcast.jobs.schedule import DEMO_SCHEDULE_FILE, load_schedule
from riskcast.lake import Lake
from riskcast.pipeline.demo_feed import CHARTED_BEFORE_HOUR, write_demo_feed
from riskcast.pipeline.ingest import ingest_paths
from riskcast.synth import DEFAULT_NOW, generate_cohort, write_cohort


@pytest.fixture(scope="module")
def cohort_home(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """A home whose lake holds a 200-encounter cohort ending at DEFAULT_NOW (no model, no scores)."""
    home = tmp_path_factory.mktemp("feed-home")
    write_cohort(generate_cohort(200, seed=3), home / "cohort")
    ingest_paths([home / "cohort"], lake=Lake(home / "lake"), now=DEFAULT_NOW)
    return Settings(home=home)


# --- clock -----------------------------------------------------------------------------------


def test_a_shifted_clock_shows_its_present_and_runs_at_real_speed() -> None:
    clock = shifted_clock(DEFAULT_NOW)
    first = clock()
    assert timedelta(0) <= first - DEFAULT_NOW < timedelta(seconds=5)
    assert clock() >= first
    assert abs((clock() - wall_clock()) - clock.offset) < timedelta(seconds=1)
    assert offset_of(clock) == clock.offset and offset_of(wall_clock) == timedelta(0)


def test_a_saved_clock_is_the_same_clock_in_another_process(tmp_path: Path) -> None:
    clock = shifted_clock(DEFAULT_NOW)
    clock.save(tmp_path / "clock.json")
    again = ShiftedClock.load(tmp_path / "clock.json")
    assert again == clock and again.offset == clock.offset
    assert not list(tmp_path.glob(".*"))  # written aside, then renamed


def test_a_missing_or_broken_clock_file_is_named_in_the_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="nope.json"):
        ShiftedClock.load(tmp_path / "nope.json")
    (tmp_path / "bad.json").write_text('{"present": "yesterday"}')
    with pytest.raises(ConfigError, match="bad.json: not a riskcast clock file"):
        ShiftedClock.load(tmp_path / "bad.json")


def test_a_demo_carries_on_from_where_the_last_one_stopped(tmp_path: Path) -> None:
    path = tmp_path / "demo-clock.json"
    assert abs(resume_clock(path, start=DEFAULT_NOW)() - DEFAULT_NOW) < timedelta(seconds=5)  # first demo
    earlier = ShiftedClock(DEFAULT_NOW + timedelta(minutes=40), wall_clock() - timedelta(days=2))
    earlier.save(path, running=False)  # stopped at about 2 days + 40 min past the cohort's present
    saved = read_clock_file(path)
    assert not saved.is_live() and saved.current() == saved.stopped_at
    resumed = resume_clock(path, start=DEFAULT_NOW)()
    assert abs(resumed - saved.stopped_at) < timedelta(seconds=5)
    ShiftedClock(DEFAULT_NOW - timedelta(days=9), wall_clock()).save(path, running=False)
    assert resume_clock(path, start=DEFAULT_NOW)() >= DEFAULT_NOW  # never before the cohort's present


def test_a_running_clock_file_is_live_only_while_its_process_exists(tmp_path: Path) -> None:
    path = tmp_path / "demo-clock.json"
    shifted_clock(DEFAULT_NOW).save(path)
    assert read_clock_file(path).is_live()  # this process
    data = json.loads(path.read_text())
    finished = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    path.write_text(json.dumps({**data, "pid": int(finished.stdout)}))
    assert not read_clock_file(path).is_live()


def test_a_naive_time_is_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        ShiftedClock(datetime(2026, 1, 15, 12), datetime.now(UTC))


# --- demo schedule ---------------------------------------------------------------------------


def test_the_demo_schedule_shows_a_dropped_file_on_the_ward_board_within_a_minute() -> None:
    """A bound on the work's cadence, not a timing: the file waits at most one ingest
    interval plus its settle time, then one score interval, then one refresh of the board."""
    ward_page = (Path(__file__).parents[1] / "dashboards" / "pages" / "ward.py").read_text()
    REFRESH_SECONDS = int(re.search(r"^REFRESH_SECONDS = (\d+)$", ward_page, re.M).group(1))
    schedule = load_schedule(packaged=DEMO_SCHEDULE_FILE)
    ingest, score = schedule.job("ingest"), schedule.job("score")
    seconds = {job.name: job.trigger.interval.total_seconds() for job in (ingest, score)}
    worst = seconds["ingest"] + float(ingest.options["settle_seconds"]) + seconds["score"] + REFRESH_SECONDS
    assert worst <= 60
    assert {job.name for job in schedule.enabled_jobs} == {"ingest", "score", "escalate", "monitor"}


# --- demo feed -------------------------------------------------------------------------------


def test_the_feed_charts_worsening_vitals_in_the_hour_before_the_present_and_ingests_cleanly(
    cohort_home: Settings, tmp_path: Path
) -> None:
    at = DEFAULT_NOW + timedelta(minutes=7)
    feed = write_demo_feed(cohort_home, at=at, patients=3, seed=1)
    assert feed.path.parent == cohort_home.home / "inbox" and feed.path.exists()
    assert not list(cohort_home.home.glob(".*.part"))
    assert feed.hour == DEFAULT_NOW and feed.charttime == DEFAULT_NOW - timedelta(minutes=1)
    rows = pl.read_csv(feed.path)
    assert rows.height == feed.rows and set(rows["encounter_id"]) == {e["encounter_id"] for e in feed.encounters}
    times = sorted({datetime.fromisoformat(t) for t in rows["charttime"]})
    assert times == sorted(DEFAULT_NOW - before for before in CHARTED_BEFORE_HOUR)
    last_heart_rate = rows.filter(pl.col("variable") == "heart_rate").group_by("encounter_id").agg(pl.col("value").last())
    assert (last_heart_rate["value"] > 120).all()
    lake = Lake(tmp_path / "lake")
    ingest_paths([cohort_home.home / "cohort"], lake=lake, now=DEFAULT_NOW)
    summary, quarantine = ingest_paths([feed.path], lake=lake, now=at)
    assert summary.accepted["observations"] == rows.height and quarantine.height == 0
    feed.path.unlink()


def test_the_feed_only_chooses_admitted_patients_whose_newest_vitals_it_follows(cohort_home: Settings) -> None:
    lake = Lake(cohort_home.lake_dir)
    feed = write_demo_feed(cohort_home, at=DEFAULT_NOW, patients=5, seed=2)
    chosen = [e["encounter_id"] for e in feed.encounters]
    encounters = lake.scan("encounters").filter(pl.col("encounter_id").is_in(chosen)).collect()
    assert (encounters["admit_time"] <= DEFAULT_NOW).all()
    assert encounters["discharge_time"].is_null().all() or (encounters["discharge_time"].drop_nulls() > DEFAULT_NOW).all()
    newest = (
        lake.scan("observations")
        .filter(pl.col("encounter_id").is_in(chosen), pl.col("charttime") <= DEFAULT_NOW,
                pl.col("variable").is_in(["heart_rate", "resp_rate", "sbp", "temperature", "spo2"]))
        .select(pl.col("charttime").max())
        .collect()
        .item()
    )
    assert newest < feed.charttime
    feed.path.unlink()


def test_a_ward_can_be_chosen_and_an_unknown_ward_is_refused_naming_the_wards(cohort_home: Settings) -> None:
    first = write_demo_feed(cohort_home, at=DEFAULT_NOW, patients=1, seed=3)
    ward = first.encounters[0]["ward"]
    first.path.unlink()
    on_ward = write_demo_feed(cohort_home, at=DEFAULT_NOW, patients=1, ward=ward, seed=4)
    assert on_ward.encounters[0]["ward"] == ward
    on_ward.path.unlink()
    with pytest.raises(LakeError, match=f"no patient on ward 'nowhere'.*{ward}"):
        write_demo_feed(cohort_home, at=DEFAULT_NOW, ward="nowhere")


def test_an_empty_lake_or_an_empty_hospital_is_refused(cohort_home: Settings, tmp_path: Path) -> None:
    with pytest.raises(LakeError, match="empty"):
        write_demo_feed(Settings(home=tmp_path), at=DEFAULT_NOW)
    with pytest.raises(LakeError, match="nobody is admitted"):
        write_demo_feed(cohort_home, at=DEFAULT_NOW - timedelta(days=3650))
