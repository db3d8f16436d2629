"""Data commands: synth, ingest, quarantine, features."""

from __future__ import annotations

import time
from pathlib import Path

import click
import polars as pl

from riskcast.cli.app import cli, emit, friendly_errors, parse_time, settings_of
from riskcast.clock import wall_clock
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
    """Write a synthetic cohort (patients, encounters, observations, outcomes).

    The cohort is simulated and written a block of encounters at a time, so memory stays the
    same whatever the number of encounters."""
    from riskcast.synth import write_synthetic_cohort

    started = time.perf_counter()
    written = write_synthetic_cohort(
        n_encounters, out, fmt=fmt, seed=seed, malformed_rate=malformed_rate, pulse_ox_bias=not no_pulse_ox_bias
    )
    rows = written.rows
    data = {"out": str(out), "files": [str(p) for p in written.paths], "rows": rows, "seconds": round(time.perf_counter() - started, 2)}
    emit(ctx, data, lambda: "\n".join(
        [f"wrote synthetic cohort to {out} in {data['seconds']} s"] + [f"  {k:<13} {v:>10,} rows" for k, v in rows.items()]
    ))


@cli.command()
@click.argument("paths", nargs=-1, type=str)
@click.option("--site", default=None, help="Site name for sources that do not carry one (PhysioNet, MEDS, FHIR, OMOP).")
@click.option("--format", "fmt", type=click.Choice(["auto", "canonical", "physionet", "meds", "fhir", "omop"]),
              default="auto", show_default=True, help="Source format; auto recognises each path by its layout.")
@click.option("--encounters", type=click.Choice(["hospital", "icu"]), default="hospital", show_default=True,
              help="MEDS, FHIR, OMOP: an encounter is a hospital admission, or an ICU stay.")
@click.pass_context
@friendly_errors
def ingest(ctx: click.Context, paths: tuple[str, ...], site: str | None, fmt: str, encounters: str) -> None:
    """Ingest canonical CSV/Parquet tables, PhysioNet 2019 files, a MEDS dataset, a FHIR R4 bulk
    export (NDJSON) or Bundle, or an OMOP CDM folder or database URL into the lake.

    Bad rows are quarantined with the rule they broke, and a file that cannot be read at all
    is quarantined as a whole; the good rows and files go on. Codes riskcast does not use
    (diagnoses, medications, …) are counted as skipped. Files not recognised as a table are
    listed as ignored; nothing recognised at all is an error. Ingesting the same
    content twice is a no-op.
    """
    from riskcast.pipeline.ingest import ingest_paths
    from riskcast.store import open_store

    settings = settings_of(ctx)
    if not paths:
        raise IngestError("name at least one file or folder to ingest, e.g. `riskcast ingest data/`")
    started = time.perf_counter()
    database = open_store(settings.database_url)
    try:
        summary, _ = ingest_paths(
            list(paths), lake=Lake(settings.lake_dir), now=wall_clock(), source_timezone=settings.source_timezone,
            site=site, format=None if fmt == "auto" else fmt, encounters=encounters, database=database,
        )
    finally:
        database.dispose()
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
    if data.get("skipped"):
        by_rule: dict[tuple[str, str], int] = {}
        for row in data["skipped"]:
            by_rule[(row["table"], row["rule"])] = by_rule.get((row["table"], row["rule"]), 0) + row["rows"]
        for (table, rule), count in sorted(by_rule.items(), key=lambda kv: -kv[1]):
            families = sorted((r for r in data["skipped"] if (r["table"], r["rule"]) == (table, rule)), key=lambda r: -r["rows"])
            shown = ", ".join(f"{printable(r['family'])} {r['rows']:,}" for r in families[:4]) + (", …" if len(families) > 4 else "")
            lines.append(f"  skipped {table}.{rule}: {count:,} ({shown})")
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
@click.option("--out", type=click.Path(path_type=Path), default=None,
              help="Also write the matrix to this Parquet file (shard by shard).")
@click.option("--at", "at_text", default=None,
              help="Write the matrix as the data stood at this time (ISO 8601, UTC if no offset), built in memory "
                   "instead of from the store; needs --out.")
@click.option("--outcome", default=None, help="With --out: attach labels for this outcome (e.g. deterioration, sepsis).")
@click.option("--horizon-hours", type=click.FloatRange(min=0, min_open=True), default=12.0, show_default=True)
@click.option("--rows-per-shard", type=click.IntRange(min=1000), default=None,
              help="Encounter-hours a shard aims at when a store is first built (default 100,000).")
@click.option("--dask", "dask_address", default=None,
              help="Build the shards on a Dask cluster (tcp://host:8786, or local[:WORKERS]); its workers must see the home.")
@click.pass_context
@friendly_errors
def features(ctx: click.Context, out: Path | None, at_text: str | None, outcome: str | None, horizon_hours: float,
             rows_per_shard: int | None, dask_address: str | None) -> None:
    """Build or refresh the feature store (only shards the new lake batches touched are rebuilt)."""
    from riskcast.feature_store import DEFAULT_ROWS_PER_SHARD, refresh_store
    from riskcast.pipeline.training import feature_matrix
    from riskcast.pipeline.training_data import Labelling, export_matrix, store_for

    settings = settings_of(ctx)
    started = time.perf_counter()
    lake = Lake(settings.lake_dir)
    if at_text is not None:
        if out is None:
            raise click.UsageError("--at writes a matrix as of that time: give --out FILE too")
        frame = feature_matrix(lake, at=parse_time(at_text), outcome=outcome, horizon_hours=horizon_hours)
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_name(f".tmp-{out.name}")
        frame.write_parquet(tmp)
        tmp.replace(out)
        data = {"out": str(out), "rows": frame.height, "columns": frame.width,
                "seconds": round(time.perf_counter() - started, 2)}
        emit(ctx, data, f"wrote {data['rows']:,} rows x {data['columns']} columns to {out} in {data['seconds']} s")
        return
    store = store_for(lake)
    if dask_address:
        from riskcast.model.distributed import dask_client

        with dask_client(dask_address) as client:
            summary = refresh_store(lake, store, rows_per_shard=rows_per_shard or DEFAULT_ROWS_PER_SHARD,
                                    progress=_say(ctx), client=client)
    else:
        summary = refresh_store(lake, store, rows_per_shard=rows_per_shard or DEFAULT_ROWS_PER_SHARD, progress=_say(ctx))
    data = summary.to_dict() | {"store": str(store.root)}
    if out is not None:
        labelling = Labelling(outcome, horizon_hours, keep_after_event=outcome == "sepsis") if outcome else None
        rows, width = export_matrix(store.open(), lake, out, labelling=labelling)
        data |= {"out": str(out), "out_rows": rows, "out_columns": width}
    data["seconds"] = round(time.perf_counter() - started, 2)
    emit(ctx, data, lambda: (
        f"feature store {data['store']}: {data['rows']:,} rows of {data['encounters']:,} encounters in "
        f"{data['n_shards']} shard(s), {data['features']} features; rebuilt {data['rebuilt']}, unchanged "
        f"{data['unchanged']}, in {data['seconds']} s"
        + (f"\nwrote {data['out_rows']:,} rows x {data['out_columns']} columns to {out}" if out is not None else "")
    ))


def _say(ctx: click.Context):
    def say(message: str) -> None:
        if not ctx.obj.get("json"):
            click.echo(f"… {message}", err=True)
    return say


@cli.command()
@click.option("--format", "fmt", type=click.Choice(["meds"]), default="meds", show_default=True, help="Export format.")
@click.option("--out", type=click.Path(path_type=Path), required=True, help="New (or empty) folder to write the dataset to.")
@click.option("--outcome", default="deterioration", show_default=True, help="Outcome whose labels are written as MEDS label files.")
@click.option("--horizon-hours", type=click.FloatRange(min=0, min_open=True), default=12.0, show_default=True)
@click.option("--no-labels", is_flag=True, help="Write no label files.")
@click.pass_context
@friendly_errors
def export(ctx: click.Context, fmt: str, out: Path, outcome: str, horizon_hours: float, no_labels: bool) -> None:
    """Export the lake as a MEDS dataset (and outcome labels as MEDS label files)."""
    from riskcast.pipeline.export import export_meds

    settings = settings_of(ctx)
    started = time.perf_counter()
    written = export_meds(
        Lake(settings.lake_dir), out, now=wall_clock(), outcome=None if no_labels else outcome, horizon_hours=horizon_hours
    )
    data = written.to_dict() | {"format": fmt, "seconds": round(time.perf_counter() - started, 2)}
    labels = data["labels"]
    emit(ctx, data, lambda: "\n".join(
        [f"wrote a MEDS dataset to {out} in {data['seconds']} s: {data['events']:,} events of "
         f"{sum(data['subjects'].values()):,} subjects ("
         + ", ".join(f"{k} {v:,}" for k, v in data["subjects"].items()) + ")"]
        + ([f"  labels {labels['task']}: {labels['rows']:,} prediction times, {labels['positive']:,} positive"] if labels else [])
    ))
