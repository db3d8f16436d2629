"""Data commands: synth, ingest, quarantine, features."""

from __future__ import annotations

import time
from pathlib import Path

import click
import polars as pl

from riskcast.cli.app import cli, emit, friendly_errors, now_utc, parse_time, settings_of
from riskcast.errors import IngestError
from riskcast.lake import Lake
from riskcast.printable import printable


@cli.command()
@click.option("--encounters", "n_encounters", type=click.IntRange(1), default=2000, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--out", type=click.Path(path_type=Path), required=True, help="Folder to write the tables to.")
@click.option("--format", "fmt", type=click.Choice(["parquet", "csv"]), default="parquet", show_default=True)
@click.option("--malformed-rate", type=click.FloatRange(0, 0.5), default=0.005, show_default=True,
              help="Share of extra malformed observation rows, to exercise the quarantine.")
@click.option("--no-pulse-ox-bias", is_flag=True, help="Do not plant the pulse-oximetry measurement bias.")
@click.pass_context
@friendly_errors
def synth(ctx: click.Context, n_encounters: int, seed: int, out: Path, fmt: str, malformed_rate: float, no_pulse_ox_bias: bool) -> None:
    """Write a synthetic cohort (patients, encounters, observations, outcomes)."""
    from riskcast.synth import generate_cohort, write_cohort

    started = time.perf_counter()
    tables = generate_cohort(n_encounters, seed=seed, malformed_rate=malformed_rate, pulse_ox_bias=not no_pulse_ox_bias)
    paths = write_cohort(tables, out, fmt=fmt)
    rows = {name: frame.height for name, frame in tables.items()}
    data = {"out": str(out), "files": [str(p) for p in paths], "rows": rows, "seconds": round(time.perf_counter() - started, 2)}
    emit(ctx, data, lambda: "\n".join(
        [f"wrote synthetic cohort to {out} in {data['seconds']} s"] + [f"  {k:<13} {v:>10,} rows" for k, v in rows.items()]
    ))


@cli.command()
@click.argument("paths", nargs=-1, type=click.Path(path_type=Path))
@click.option("--site", default=None, help="Site name for sources that do not carry one (PhysioNet).")
@click.pass_context
@friendly_errors
def ingest(ctx: click.Context, paths: tuple[Path, ...], site: str | None) -> None:
    """Ingest CSV/Parquet tables or PhysioNet 2019 files into the lake.

    Bad rows are quarantined with the rule they broke, and a file that cannot be read at all
    is quarantined as a whole; the good rows and files go on. Files not recognised as a
    table are listed as ignored; nothing recognised at all is an error. Ingesting the same
    content twice is a no-op.
    """
    from riskcast.pipeline.ingest import ingest_paths
    from riskcast.pipeline.store_sync import record_quarantine

    settings = settings_of(ctx)
    if not paths:
        raise IngestError("name at least one file or folder to ingest, e.g. `riskcast ingest data/`")
    started = time.perf_counter()
    summary, quarantine = ingest_paths(
        list(paths), lake=Lake(settings.lake_dir), now=now_utc(), source_timezone=settings.source_timezone, site=site
    )
    if summary.batch_id is not None and quarantine.height:
        record_quarantine(settings, summary.batch_id, quarantine, now=now_utc())
    data = summary.to_dict() | {"seconds": round(time.perf_counter() - started, 2)}
    if summary.batch_id is not None and summary.total_accepted == 0:
        emit(ctx, data, lambda: _ingest_text(data))
        raise IngestError(f"no rows were accepted from {', '.join(map(str, paths))}; see the quarantine reasons above")
    emit(ctx, data, lambda: _ingest_text(data))


IGNORED_LISTED = 20
"""How many ignored files the text summary names before it says how many more."""


def _ingest_text(data: dict) -> str:
    lines = _ingest_lines(data)
    lines += [f"  warning: {printable(w)}" for w in data["warnings"]]
    ignored = data["ignored"]
    lines += [f"  ignored (not recognised as a table): {printable(p)}" for p in ignored[:IGNORED_LISTED]]
    if len(ignored) > IGNORED_LISTED:
        lines.append(f"  ... and {len(ignored) - IGNORED_LISTED:,} more ignored (see --json)")
    return "\n".join(lines)


def _ingest_lines(data: dict) -> list[str]:
    if data["already_ingested"]:
        return ["already ingested: nothing new (same content as batch " + ", ".join(
            sorted({s["batch_id"] for s in data["sources"] if s["batch_id"]})
        ) + ")"]  # fmt: skip
    lines = [f"batch {data['batch_id']} ({data['seconds']} s)"]
    lines.append(f"  {'table':<13} {'read':>11} {'accepted':>11} {'quarantined':>12}")
    for table, read in data["rows_read"].items():
        quarantined = sum(data["quarantined"].get(table, {}).values())
        if read == 0 and quarantined == 0:
            continue
        lines.append(f"  {table:<13} {read:>11,} {data['accepted'].get(table, 0):>11,} {quarantined:>12,}")
    for table, rules in data["quarantined"].items():
        for rule, count in sorted(rules.items(), key=lambda kv: -kv[1]):
            lines.append(f"  quarantined {printable(table)}.{printable(rule)}: {count:,}")
    unreadable = [s for s in data["sources"] if s["status"] == "unreadable"]
    lines += [f"  unreadable, quarantined as a whole: {printable(s['path'])}" for s in unreadable]
    if data["examples"]:
        lines.append("  first quarantined rows (see `riskcast quarantine`):")
        lines += [f"    {printable(e)}" for e in data["examples"]]
    return lines


@cli.command()
@click.option("--batch", default=None, help="Only this batch.")
@click.option("--rule", default=None, help="Only rows that broke this rule.")
@click.option("--limit", type=int, default=20, show_default=True, help="Rows to list after the counts.")
@click.pass_context
@friendly_errors
def quarantine(ctx: click.Context, batch: str | None, rule: str | None, limit: int) -> None:
    """Show quarantined rows: counts by rule, then file, line, rule and reason.

    File names and reasons are printed with control characters escaped (a newline as \\n),
    so a file name can never forge a line of this output."""
    from riskcast.pipeline.ingest import quarantine_text

    frame = Lake(settings_of(ctx).lake_dir).scan_quarantine()
    if batch:
        frame = frame.filter(pl.col("batch_id") == batch)
    if rule:
        frame = frame.filter(pl.col("rule") == rule)
    rows = frame.collect()
    counts = rows.group_by("table", "rule").len().sort("len", descending=True)
    listed = rows.head(limit).select("batch_id", "source_file", "source_line", "table", "rule", "detail")
    data = {"total": rows.height, "counts": counts.to_dicts(), "rows": listed.to_dicts()}
    emit(ctx, data, lambda: "\n".join(
        [f"{rows.height:,} quarantined rows"]
        + [f"  {printable(r['table'])}.{printable(r['rule'])}: {r['len']:,}" for r in data["counts"]]
        + [f"  {printable(quarantine_text(r))}" for r in data["rows"]]
    ))


@cli.command()
@click.option("--out", type=click.Path(path_type=Path), required=True, help="Parquet file to write.")
@click.option("--at", "at_text", default=None, help="Build as of this time (ISO 8601, UTC if no offset).")
@click.option("--outcome", default=None, help="Also attach labels for this outcome (e.g. deterioration, sepsis).")
@click.option("--horizon-hours", type=click.FloatRange(min=0, min_open=True), default=12.0, show_default=True)
@click.pass_context
@friendly_errors
def features(ctx: click.Context, out: Path, at_text: str | None, outcome: str | None, horizon_hours: float) -> None:
    """Build the point-in-time hourly feature matrix from the lake."""
    from riskcast.pipeline.training import feature_matrix

    settings = settings_of(ctx)
    started = time.perf_counter()
    frame = feature_matrix(Lake(settings.lake_dir), at=parse_time(at_text), outcome=outcome, horizon_hours=horizon_hours)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".tmp-{out.name}")
    frame.write_parquet(tmp)
    tmp.replace(out)
    data = {
        "out": str(out),
        "rows": frame.height,
        "encounters": frame["encounter_id"].n_unique(),
        "columns": frame.width,
        "seconds": round(time.perf_counter() - started, 2),
    }
    emit(ctx, data, f"wrote {data['rows']:,} rows x {data['columns']} columns for {data['encounters']:,} encounters to {out} in {data['seconds']} s")
