"""Junk among good files: every good value lands, every bad thing is quarantined with its file,
line and rule, and nothing planted in the junk shows up in any output.

Hypothesis throws random mixtures of junk (empty, binary, truncated, wrong header, ragged,
quoted, semicolon, not UTF-8, corrupt Parquet, unrecognised names) among good canonical and
PhysioNet files. A secret is planted in the junk's cells and ids (SECRET) and in a column
outside the contract (EXTRA); SECRET may be kept in a quarantined row's raw record (that is
what the record is for), but never in a message, a detail, a log line or the summary, and
EXTRA is never kept anywhere. A second test takes one mixture through every door (the
`riskcast` command, the scheduler's ingest job, the store and the dashboard's data-health
page) and searches all they say for both secrets.
"""

from __future__ import annotations

import json
import logging
import re
import tempfile
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from riskcast.cli.data import _ingest_text
from riskcast.ingest.physionet import EXPECTED_COLUMNS
from riskcast.lake import Lake
from riskcast.pipeline.ingest import ingest_paths, quarantine_text

SECRET = "ZQX7SECRET"
EXTRA = "ZQX7EXTRA"
NOW = datetime(2024, 2, 1, 12, tzinfo=timezone.utc)
FIRST_CHARTTIME = datetime(2024, 1, 10, 10, tzinfo=timezone.utc)
ANCHOR = datetime(2000, 1, 1, tzinfo=timezone.utc)
HEADER = ["encounter_id", "charttime", "variable", "value", "unit", "source"]

LINE_KINDS = (
    "good", "good_quoted", "extra_field", "short", "unclosed_quote", "semicolon", "not_utf8",
    "bad_value", "out_of_range", "unknown_encounter", "future",
)  # fmt: skip
FILE_KINDS = ("lines", "truncated", "semicolon_file", "empty", "blank", "binary", "latin1", "wrong_header",
              "unrecognised", "bad_parquet")  # fmt: skip
PSV_KINDS = ("good", "ragged", "text_cell", "truncated", "empty", "binary", "wrong_header")


@dataclass
class Planted:
    """What a generated mixture should come out as."""

    good: set[tuple[str, datetime, str, float]] = field(default_factory=set)
    bad: Counter = field(default_factory=Counter)  # (source_file, source_line, rule)
    ignored: list[Path] = field(default_factory=list)
    encounters: set[str] = field(default_factory=lambda: {"E1", "E2", "E3"})
    patients: set[str] = field(default_factory=lambda: {"P1", "P2", "P3"})
    contents: set[bytes] = field(default_factory=set)
    counter: int = 0

    def next_time(self) -> datetime:
        self.counter += 1
        return FIRST_CHARTTIME + timedelta(minutes=self.counter)


def iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


# ------------------------------------------------------------------ canonical files


def observation_line(kind: str, plan: Planted, *, extra: bool, file: str, line: int) -> bytes:
    """One observation line of the given kind; records what it should come out as."""
    moment = plan.next_time()
    encounter = f"E{plan.counter % 3 + 1}"
    value = float(40 + plan.counter % 140)
    fields = [encounter, iso(moment), "heart_rate", f"{value:g}", "/min", "monitor"] + ([f"{EXTRA}-{plan.counter}"] if extra else [])
    good = (encounter, moment, "heart_rate", value)
    text: str
    if kind == "good":
        plan.good.add(good)
        text = ",".join(fields)
    elif kind == "good_quoted":
        plan.good.add(good)
        text = ",".join(f'"{f}"' for f in fields[:-1 if extra else None]) + (f",{fields[-1]}" if extra else "")
        text = text.replace('"monitor"', '"monitor, bedside ""A"""')
    elif kind == "extra_field":
        plan.bad[(file, line, "malformed_line")] += 1
        text = ",".join([*fields, SECRET])
    elif kind == "short":
        plan.bad[(file, line, "malformed_line")] += 1
        text = ",".join([f"{SECRET}-{encounter}", *fields[1:-2]])
    elif kind == "unclosed_quote":
        plan.bad[(file, line, "malformed_line")] += 1
        text = ",".join([*fields[:3], f'"{SECRET} {value:g}', *fields[4:]])
    elif kind == "semicolon":
        plan.bad[(file, line, "malformed_line")] += 1
        text = ";".join([f"{SECRET}-{encounter}", iso(moment), "temperature", "37,5", "Cel", "monitor"])
    elif kind == "not_utf8":
        plan.bad[(file, line, "malformed_line")] += 1
        return ",".join([encounter, iso(moment), "temperature", "98.6", "°F", SECRET]).encode("latin-1")
    elif kind == "bad_value":
        plan.bad[(file, line, "unparseable_value")] += 1
        text = ",".join([*fields[:3], SECRET, *fields[4:]])
    elif kind == "out_of_range":
        plan.bad[(file, line, "out_of_range")] += 1
        text = ",".join([*fields[:3], "900", *fields[4:]])
    elif kind == "unknown_encounter":
        plan.bad[(file, line, "unknown_encounter")] += 1
        text = ",".join([f"{SECRET}-E9", *fields[1:]])
    elif kind == "future":
        plan.bad[(file, line, "in_the_future")] += 1
        text = ",".join([fields[0], "2030-01-01T00:00:00Z", *fields[2:]])
    else:
        raise AssertionError(kind)
    return text.encode("utf-8")


def observation_file(folder: Path, index: int, kind: str, lines: list[str], plan: Planted, *, extra: bool,
                     binary: bytes) -> None:  # fmt: skip
    """Write one observations file of the given kind into `folder`."""
    name = f"observations-{index}.csv"
    path = folder / name
    header = ",".join(HEADER + (["nhs_number"] if extra else [])).encode()
    if kind in ("lines", "truncated"):
        body = [observation_line(k, plan, extra=extra, file=name, line=n) for n, k in enumerate(lines, start=2)]
        if kind == "truncated":  # one more good line, cut before its last delimiter and its line end
            last = observation_line("extra_field", plan, extra=extra, file=name, line=len(lines) + 2)
            body.append(last[: last.rindex(b",", 0, last.rindex(b",")) + 1][:-1])
        path.write_bytes(header + b"\n" + b"\n".join(body) + (b"" if kind == "truncated" else b"\n"))
    elif kind == "semicolon_file":
        rows = []
        for n, _ in enumerate(lines, start=2):
            moment = plan.next_time()
            encounter = f"E{plan.counter % 3 + 1}"
            if n % 2:
                plan.bad[(name, n, "unparseable_value")] += 1  # a decimal comma is not a number
                rows.append(f"{encounter};{iso(moment)};temperature;37,{plan.counter % 10};Cel;{SECRET}")
            else:
                plan.good.add((encounter, moment, "resp_rate", float(12 + plan.counter % 10)))
                rows.append(f"{encounter};{iso(moment)};resp_rate;{12 + plan.counter % 10};/min;monitor")
        path.write_text(";".join(HEADER) + "\n" + "\n".join(rows) + "\n", encoding="utf-8")
    elif kind in ("empty", "blank"):
        content = b"" if kind == "empty" else b" " * index + b"\n\r\n"
        if content not in plan.contents:  # the same content twice is read once
            plan.bad[(name, 1, "unreadable_file")] += 1
        plan.contents.add(content)
        path.write_bytes(content)
    elif kind == "binary":
        plan.bad[(name, 1, "unreadable_file")] += 1
        path.write_bytes(b"\x89PNG\x00" + bytes([index]) + binary + SECRET.encode())
    elif kind == "latin1":
        plan.bad[(name, 1, "unreadable_file")] += 1
        path.write_bytes(f"encounter_id,température{index},".encode("latin-1") + SECRET.encode() + b"\n" + binary)
    elif kind == "wrong_header":
        plan.bad[(name, 1, "missing_columns")] += 1
        path.write_text(f"encounter_id,{SECRET},variable,value\nE{index},{SECRET},heart_rate,80\n", encoding="utf-8")
    elif kind == "unrecognised":
        path = folder / (f"obs {index}.csv" if index % 2 else f"notes-{index}.txt")
        plan.ignored.append(path)
        path.write_text(f"{','.join(HEADER)}\nE1,{iso(plan.next_time())},heart_rate,{SECRET},/min,x\n")
    elif kind == "bad_parquet":
        name = f"observations-{index}.parquet"
        plan.bad[(name, None, "unreadable_file")] += 1
        (folder / name).write_bytes(b"PAR1" + SECRET.encode() + bytes([index]) + binary + b"PAR1")
    else:
        raise AssertionError(kind)


def table_files(folder: Path, plan: Planted, *, extra: bool, bad_people: bool) -> None:
    """Good patients, encounters and outcomes, with bad rows when asked."""
    nhs = ",nhs_number" if extra else ""
    patients = [f"patient_id,birth_year,age,sex,race_ethnicity,site{nhs}"] + [
        f"P{i},{1940 + i},,F,group-a,site-a" + (f",{EXTRA}-P{i}" if extra else "") for i in (1, 2, 3)
    ]
    encounters = [f"encounter_id,patient_id,admit_time,discharge_time,ward,site{nhs}"] + [
        f"E{i},P{i},2024-01-10T08:00:00Z,,ward-{i},site-a" + (f",{EXTRA}-E{i}" if extra else "") for i in (1, 2, 3)
    ]
    outcomes = ["encounter_id,event_time,event_type", "E2,2024-01-11T18:00:00Z,icu_transfer"]
    if bad_people:
        for birth_year, rule in (("NaN", "unparseable_value"), ("1950.7", "unparseable_value"), ("1e20", "out_of_range"),
                                 ("inf", "unparseable_value")):  # fmt: skip
            patients.append(f"{SECRET}-P{len(patients)},{birth_year},,F,,site-a" + (",x" if extra else ""))
            plan.bad[("patients.csv", len(patients), rule)] += 1
        encounters.append(f"E8,{SECRET}-P,2024-01-10T08:00:00Z,,ward-1,site-a" + (",x" if extra else ""))
        plan.bad[("encounters.csv", len(encounters), "unknown_patient")] += 1
        outcomes.append("E1,2024-01-09T00:00:00Z,death")
        plan.bad[("outcomes.csv", len(outcomes), "outside_encounter")] += 1
    for name, lines in (("patients.csv", patients), ("encounters.csv", encounters), ("outcomes.csv", outcomes)):
        (folder / name).write_text("\n".join(lines) + "\n", encoding="utf-8")


# ------------------------------------------------------------------ PhysioNet files


def psv_line(values: dict[str, Any]) -> str:
    return "|".join(str(values.get(column, "NaN")) for column in EXPECTED_COLUMNS)


def psv_file(folder: Path, number: int, kind: str, rows: int, plan: Planted, *, binary: bytes) -> None:
    """Write p<number>.psv of the given kind; records what it should come out as."""
    stem = f"p{number:06d}"
    label = f"{folder.name}/{stem}.psv"
    path = folder / f"{stem}.psv"
    header = "|".join(EXPECTED_COLUMNS)
    if kind in ("empty", "binary", "wrong_header"):
        rule = "missing_columns" if kind == "wrong_header" else "unreadable_file"
        plan.bad[(label, 1, rule)] += 1
        content = {
            "empty": b"",
            "binary": b"\x1f\x8b\x08\x00" + binary + SECRET.encode(),
            "wrong_header": ("|".join(c for c in EXPECTED_COLUMNS if c != "ICULOS") + f"\n{SECRET}|1\n").encode(),
        }[kind]
        path.write_bytes(content)
        return
    admit = ANCHOR + timedelta(hours=number)
    lines = [header]
    for hour in range(1, rows + 1):
        line_number = hour + 1
        values = {"Age": 70, "Gender": 1, "Unit1": 1, "Unit2": 0, "HR": 60 + hour, "Resp": 12 + hour % 8,
                  "ICULOS": hour, "SepsisLabel": 0}  # fmt: skip
        if kind == "ragged" and hour == 2:
            plan.bad[(label, line_number, "malformed_line")] += 1
            lines.append(psv_line(values) + f"|{SECRET}")
            continue
        if kind == "text_cell" and hour == 2:
            plan.bad[(label, line_number, "unparseable_value")] += 1
            values["HR"] = f'"{SECRET}'
        else:
            plan.good.add((stem, admit + timedelta(hours=hour), "heart_rate", float(values["HR"])))
        plan.good.add((stem, admit + timedelta(hours=hour), "resp_rate", float(values["Resp"])))
        lines.append(psv_line(values))
    text = "\n".join(lines) + "\n"
    if kind == "truncated":  # one more hour, cut before its last field and its line end
        cut = psv_line({"HR": 99, "ICULOS": rows + 1, "SepsisLabel": 0})
        plan.bad[(label, rows + 2, "malformed_line")] += 1
        text += cut[: cut.rindex("|")]
    path.write_text(text, encoding="utf-8")
    plan.encounters.add(stem)
    plan.patients.add(stem)


# ------------------------------------------------------------------ the mixture

MIXTURES = st.fixed_dictionaries(
    {
        "files": st.lists(
            st.tuples(st.sampled_from(FILE_KINDS), st.lists(st.sampled_from(LINE_KINDS), min_size=1, max_size=6)),
            min_size=1, max_size=4,
        ),
        "psv": st.lists(st.tuples(st.sampled_from(PSV_KINDS), st.integers(2, 4)), min_size=1, max_size=4),
        "extra": st.booleans(),
        "bad_people": st.booleans(),
        "binary": st.binary(min_size=1, max_size=48),
    }
)  # fmt: skip


def write_mixture(root: Path, mixture: dict[str, Any]) -> tuple[list[Path], Planted]:
    """A canonical folder and a PhysioNet folder holding the mixture; what should come out."""
    plan = Planted()
    canonical = root / "feed"
    canonical.mkdir(parents=True)
    table_files(canonical, plan, extra=mixture["extra"], bad_people=mixture["bad_people"])
    for index, (kind, lines) in enumerate(mixture["files"]):
        observation_file(canonical, index, kind, lines, plan, extra=mixture["extra"], binary=mixture["binary"])
    physionet = root / "training_setA"
    physionet.mkdir()
    for number, (kind, rows) in enumerate(mixture["psv"], start=1):
        psv_file(physionet, number, kind, rows, plan, binary=mixture["binary"])
    plan.ignored.sort()
    return [canonical, physionet], plan


def lake_text(lake: Lake) -> str:
    """Everything the lake holds, as text (tables, quarantine with its records, manifests)."""
    parts = [lake.scan(t).collect().write_csv() for t in ("patients", "encounters", "observations", "outcomes")]
    parts.append(lake.scan_quarantine().collect().write_csv())
    parts += [p.read_text() for p in (lake.root / "batches").glob("*.json")]
    return "\n".join(parts)


def check_mixture(lake: Lake, plan: Planted, summary: Any, quarantine: pl.DataFrame, logs: str) -> None:
    """The properties every mixture has (see the module docstring)."""
    observations = lake.scan("observations").collect()
    landed = {(e, t, v, x) for e, t, v, x in observations.select("encounter_id", "charttime", "variable", "value").rows()}
    assert landed == plan.good
    assert set(lake.scan("encounters").collect()["encounter_id"]) == plan.encounters
    assert set(lake.scan("patients").collect()["patient_id"]) == plan.patients
    found = Counter(quarantine.select("source_file", "source_line", "rule").rows())
    assert found == plan.bad
    assert quarantine["rule"].null_count() == 0 and quarantine["source_file"].null_count() == 0
    assert summary.ignored == [str(p) for p in plan.ignored]
    said = [json.dumps(summary.to_dict()), _ingest_text(summary.to_dict() | {"seconds": 0.0}), logs,
            *quarantine["detail"].to_list(), *(quarantine_text(r) for r in quarantine.iter_rows(named=True))]  # fmt: skip
    for text in said:
        assert SECRET not in text and EXTRA not in text
    assert max((len(d) for d in quarantine["detail"]), default=0) < 500  # a sentence, never a file
    assert EXTRA not in lake_text(lake)


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(mixture=MIXTURES)
def test_junk_among_good_files_never_stops_a_good_value_nor_leaks_what_it_holds(mixture, caplog) -> None:
    caplog.clear()
    with tempfile.TemporaryDirectory() as folder, caplog.at_level(logging.DEBUG):
        root = Path(folder)
        paths, plan = write_mixture(root, mixture)
        lake = Lake(root / "lake")
        summary, quarantine = ingest_paths(paths, lake=lake, now=NOW)
        check_mixture(lake, plan, summary, quarantine, caplog.text)
        again, nothing = ingest_paths(paths, lake=lake, now=NOW)  # the same content twice is a no-op
        assert again.already_ingested and nothing.height == 0


# ------------------------------------------------------------------ every door at once

EVERY_KIND = {
    "files": [("lines", list(LINE_KINDS)), ("truncated", ["good", "semicolon"]), ("semicolon_file", ["good"] * 3),
              *((kind, ["good"]) for kind in FILE_KINDS[3:])],
    "psv": [(kind, 3) for kind in PSV_KINDS],
    "extra": True,
    "bad_people": True,
    "binary": b"\xff\xfe\x00" + SECRET.encode() + b"\x80\x81",
}  # fmt: skip


def test_every_kind_of_junk_at_once_is_sorted_out_by_the_pure_ingest(tmp_path: Path) -> None:
    paths, plan = write_mixture(tmp_path, EVERY_KIND)
    lake = Lake(tmp_path / "lake")
    summary, quarantine = ingest_paths(paths, lake=lake, now=NOW)
    check_mixture(lake, plan, summary, quarantine, "")
    assert set(quarantine["rule"]) >= {"unreadable_file", "missing_columns", "malformed_line", "unparseable_value"}


@pytest.mark.slow
def test_junk_through_the_command_the_scheduler_the_store_and_the_dashboard_leaks_nothing(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from click.testing import CliRunner
    from sqlalchemy import select

    from riskcast.cli import cli
    from riskcast.config import Settings
    from riskcast.jobs.runner import execute_job
    from riskcast.jobs.schedule import parse_schedule
    from riskcast.store import open_store
    from riskcast.store.tables import alert_events, job_runs, quarantine, runs

    settings = Settings(home=tmp_path / "home")
    paths, plan = write_mixture(tmp_path / "drop", EVERY_KIND)
    runner = CliRunner()
    said: list[str] = []
    with caplog.at_level(logging.DEBUG):
        for args in (["ingest", *map(str, paths)], ["quarantine", "--limit", "1000"], ["--json", "quarantine", "--limit", "1000"],
                     ["--json", "ingest", *map(str, paths)]):  # fmt: skip
            result = runner.invoke(cli, ["--home", str(settings.home), *args], obj={})
            assert result.exit_code == 0, result.output
            said += [result.stdout, result.stderr]
        assert "unreadable_file" in said[0] and "ignored (not recognised as a table)" in said[0]

        # The scheduler: the same mixture (copied afresh) and two entries nothing of which can be ingested.
        inbox = settings.home / "inbox"
        write_mixture(inbox, {**EVERY_KIND, "binary": b"\x00other"})  # inbox/feed and inbox/training_setA
        (inbox / "observations-late.csv").write_text(f'encounter_id,charttime,variable,value,unit\nE1,"{SECRET}\n')
        (inbox / f"notes-{SECRET[:3]}.txt").write_text(SECRET)
        (inbox / "observations-empty.csv").write_bytes(b"")
        schedule = parse_schedule({"timezone": "UTC", "lease_seconds": 30,
                                   "jobs": {"ingest": {"every_seconds": 60, "options": {"settle_seconds": 0}}}}, source="test")  # fmt: skip
        engine = open_store(settings.database_url)
        outcome = execute_job("ingest", NOW, settings=settings, engine=engine, schedule=schedule)
        assert outcome.status == "succeeded", outcome.reason
        assert sorted(outcome.record.counts["rejected"]) == [f"notes-{SECRET[:3]}.txt", "observations-empty.csv"]
        notes = sorted((inbox / "rejected").glob("*.why.txt"))
        said += [note.read_text() for note in notes]
        assert "the same content came before" in said[-1] and "line 1: unreadable_file: the file is empty" in said[-1]

        # A run that fails: its error is stored and raises a system alert.
        (inbox / "drop-3").mkdir()
        (inbox / "drop-3" / "observations.csv").write_text(f"encounter_id,charttime,variable,value,unit\n{SECRET},x,y,z,w\n")
        settings.lake_dir.rename(settings.home / "lake-away")
        settings.lake_dir.write_text(SECRET)
        failed = execute_job("ingest", NOW + timedelta(minutes=1), settings=settings, engine=engine, schedule=schedule)
        assert failed.status == "failed"
    said.append(caplog.text)

    with engine.connect() as connection:
        said += [str(v) for v in connection.execute(select(job_runs.c.error)).scalars()]
        said += [str(v) for v in connection.execute(select(runs.c.error)).scalars()]
        said += [str(v) for v in connection.execute(select(alert_events.c.reason)).scalars()]
        details = connection.execute(select(quarantine.c.detail, quarantine.c.record)).all()
    said += [d for d, _ in details]
    assert any("inbox entries could not be ingested" in text for text in said)
    for text in said:
        assert SECRET not in text and EXTRA not in text, text[:2000]
    assert not any(EXTRA in (record or "") for _, record in details)

    said_by_dashboard = data_health_responses(settings, engine)
    engine.dispose()
    assert "unreadable_file" in said_by_dashboard and "job: ingest" in said_by_dashboard
    assert SECRET not in said_by_dashboard and EXTRA not in said_by_dashboard


def data_health_responses(settings: Any, engine: Any) -> str:
    """The data-health page and its data callback, as a signed-in data scientist gets them."""
    from riskcast.dashboards import auth
    from riskcast.dashboards.app import create_app

    password = "correct horse battery staple 7"
    auth.add_user(engine, "dana", role="data_scientist", wards=[], password=password, now=NOW, replace=True)
    client = create_app(settings, clock=lambda: NOW).server.test_client()
    page = client.get("/login").get_data(as_text=True)
    token = re.search(r'name="csrf" value="([^"]+)"', page).group(1)
    assert client.post("/login", data={"csrf": token, "username": "dana", "password": password}).status_code in (302, 303)
    dependencies = json.loads(client.get("/_dash-dependencies").get_data())
    spec = next(d for d in dependencies if "data-health-quarantine" in d["output"])
    outputs = [dict(zip(("id", "property"), part.rsplit(".", 1), strict=True)) for part in spec["output"].strip(".").split("...")]
    payload = {"output": spec["output"], "outputs": outputs,
               "inputs": [{**i, "value": 1} for i in spec["inputs"]], "state": [],
               "changedPropIds": [f"{spec['inputs'][0]['id']}.{spec['inputs'][0]['property']}"]}  # fmt: skip
    response = client.post("/_dash-update-component", json=payload)
    assert response.status_code == 200, response.get_data(as_text=True)[:500]
    return client.get("/data-health").get_data(as_text=True) + response.get_data(as_text=True)
