"""Model commands: train, score, evaluate, predict, models."""

from __future__ import annotations

import json
import time
from pathlib import Path

import click

from riskcast.cli.app import check_output_file, cli, emit, friendly_errors, parse_time, settings_of, write_output_file
from riskcast.clock import wall_clock
from riskcast.lake import Lake


def _progress(ctx: click.Context):
    def say(message: str) -> None:
        if not ctx.obj.get("json"):
            click.echo(f"… {message}", err=True)
    return say


@cli.command()
@click.option("--outcome", default="deterioration", show_default=True, help="deterioration (ICU transfer, death, rapid response, arrest), sepsis, …")
@click.option("--horizon-hours", type=click.FloatRange(min=0, min_open=True), default=12.0, show_default=True)
@click.option("--engine", type=click.Choice(["xgboost", "lightgbm"]), default="xgboost", show_default=True)
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True)
@click.option("--operating-point", type=click.Choice(["alert_budget", "sensitivity", "utility"]), default=None,
              help="How the threshold is chosen on the calibration patients: an alert budget (wards; the default), a "
                   "target sensitivity, or the PhysioNet 2019 utility (the default for --outcome sepsis).")
@click.option("--alerts-per-100-patient-days", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Choose the threshold from this alert budget (default 15).")
@click.option("--target-sensitivity", type=click.FloatRange(0, 1), default=None,
              help="Choose the threshold for this row-level sensitivity instead of an alert budget.")
@click.option("--families", "families_text", default=None,
              help="Feature families, e.g. 'default', 'all', 'default,-process' or 'values,trends,clocks' "
                   "(see the README's ablation table).")
@click.option("--negative-fraction", type=click.FloatRange(0, 1, min_open=True), default=1.0, show_default=True,
              help="Train, and stop early, on this share of the negative hours (weighted back); calibration and evaluation see all.")
@click.option("--external-memory/--in-memory", default=None,
              help="XGBoost keeps its quantised training matrix in pages on disk, or in memory; by default on "
                   "disk only when it is estimated over --memory-budget-gib. Same trees either way; disk can be slower.")
@click.option("--memory-budget-gib", type=click.FloatRange(min=0, min_open=True), default=1.0, show_default=True,
              help="The in-memory quantised training matrix allowed before XGBoost pages it to disk.")
@click.option("--dask", "dask_address", default=None,
              help="Train on a Dask cluster: a scheduler address (tcp://host:8786) or local[:WORKERS].")
@click.option("--test-fraction", type=click.FloatRange(0.05, 0.5), default=0.2, show_default=True, help="Share of patients held out.")
@click.option("--temporal", is_flag=True, help="Hold out the patients admitted last instead of a random share.")
@click.option("--search", is_flag=True, help="Run a small hyperparameter search first.")
@click.option("--ablations/--no-ablations", default=True, show_default=True,
              help="Also fit clock-only and physiology-only models and report them at the same alert rate.")
@click.option("--promote/--no-promote", default=None, help="Make it champion (default: only if there is none).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.pass_context
@friendly_errors
def train(ctx: click.Context, outcome: str, horizon_hours: float, engine: str, device: str,
          operating_point: str | None, alerts_per_100_patient_days: float | None, target_sensitivity: float | None,
          families_text: str | None, negative_fraction: float, external_memory: bool | None,
          memory_budget_gib: float, dask_address: str | None,
          test_fraction: float, temporal: bool, search: bool, ablations: bool, promote: bool | None, seed: int) -> None:
    """Train, calibrate and evaluate a model on held-out patients, and register it."""
    from riskcast.features.families import parse_families
    from riskcast.model import ModelRegistry
    from riskcast.pipeline.training import train_and_register
    from riskcast.store import open_store

    settings = settings_of(ctx)
    started = time.perf_counter()
    database = open_store(settings.database_url)
    try:
        result = train_and_register(
            Lake(settings.lake_dir), ModelRegistry(settings.models_dir), now=wall_clock(), outcome=outcome,
            horizon_hours=horizon_hours, engine=engine, device=device, operating_point=operating_point,
            alerts_per_100_patient_days=alerts_per_100_patient_days, target_sensitivity=target_sensitivity,
            families=parse_families(families_text) if families_text else None, negative_fraction=negative_fraction,
            external_memory="auto" if external_memory is None else external_memory,
            memory_budget_gib=memory_budget_gib, dask=dask_address,
            test_fraction=test_fraction, temporal=temporal, search=search, ablations=ablations, promote=promote,
            reports_dir=settings.reports_dir, seed=seed, database=database, progress=_progress(ctx),
        )
    finally:
        database.dispose()
    data = result.to_dict() | {"seconds": round(time.perf_counter() - started, 1)}
    emit(ctx, data, lambda: _train_text(data))


FEW_EVENTS = 20
"""Held-out stays with the outcome below which train warns that its figures say little."""


def _fmt_ci(result: dict, metric: str) -> str:
    low, high = result[f"{metric}_ci"]
    interval = f" ({low:.3f}–{high:.3f})" if low is not None and high is not None else ""
    return f"{result[metric]:.3f}{interval}"


def _train_text(data: dict) -> str:
    ev = data["evaluation"]
    scores = ev.get("discrimination", {})
    disc = scores.get("risk", {})
    lines = [
        f"registered {data['version']}{' (champion)' if data['promoted'] else ''} on {data['device']} in {data['seconds']} s",
        f"  {data['rows']:,} rows, {data['patients']:,} patients; evaluated on {data['test_patients']:,} held-out patients, "
        f"{data['test_events']:,} of whose stays had the outcome",
    ]
    if data["test_events"] < FEW_EVENTS:
        lines.append(f"  caution: {data['test_events']} held-out stays with the outcome are too few for these figures to "
                     f"say much; the intervals below understate the uncertainty (aim for {FEW_EVENTS} or more: more "
                     "patients, or `riskcast evaluate --data` on another site's data)")
    if disc:
        lines.append(f"  model        AUROC {_fmt_ci(disc, 'auroc')}   AUPRC {_fmt_ci(disc, 'auprc')}")
    for name, baseline in scores.items():
        if name != "risk":
            lines.append(f"  {name:<12} AUROC {_fmt_ci(baseline, 'auroc')}   AUPRC {_fmt_ci(baseline, 'auprc')}")
    check = data.get("promise_check")
    if check:
        lines.append(f"  promise ({'kept' if check['kept'] else 'BROKEN'} on held-out patients): {check['promise']}")
    if data["reports"]:
        lines.append(f"  report: {data['reports']['markdown']}")
    return "\n".join(lines)


@cli.command()
@click.option("--at", "at_text", default=None, help="Score as of this hour (ISO 8601; default: now).")
@click.option("--model", "model_version", default=None, help="Model version (default: the champion).")
@click.pass_context
@friendly_errors
def score(ctx: click.Context, at_text: str | None, model_version: str | None) -> None:
    """Score every admitted patient at an hour and store scores and drivers."""
    from riskcast.model import ModelRegistry
    from riskcast.pipeline.scoring import score_admitted
    from riskcast.store import open_store

    settings = settings_of(ctx)
    now = wall_clock()
    engine = open_store(settings.database_url)
    try:
        summary = score_admitted(
            Lake(settings.lake_dir), ModelRegistry(settings.models_dir), engine,
            at=parse_time(at_text) or now, now=now, model_version=model_version,
        )
    finally:
        engine.dispose()
    data = summary.to_dict()
    emit(ctx, data, lambda: (
        f"scored {data['admitted']:,} admitted patients at {data['at']} with {data['model_version']}: "
        f"{data['scored']:,} scored, {data['insufficient_data']:,} insufficient data, "
        f"{data['flagged']:,} at or above the alert threshold {data['threshold']:.3f}; {data['written']:,} new scores stored"
    ))


@cli.command()
@click.option("--data", "data_path", type=click.Path(path_type=Path), default=None,
              help="Another site's data to validate on (ingested into a scratch workspace).")
@click.option("--model", "model_version", default=None, help="Model version (default: the champion).")
@click.option("--outcome", default=None, help="Outcome (default: the model's).")
@click.option("--horizon-hours", type=click.FloatRange(min=0, min_open=True), default=None)
@click.option("--out", type=click.Path(path_type=Path), default=None, help="Write the report (JSON, or Markdown if .md).")
@click.option("--bootstrap", "n_boot", type=click.IntRange(0), default=200, show_default=True)
@click.pass_context
@friendly_errors
def evaluate(ctx: click.Context, data_path: Path | None, model_version: str | None, outcome: str | None,
             horizon_hours: float | None, out: Path | None, n_boot: int) -> None:
    """Evaluate a model: on its held-out patients, or on another site's data (--data)."""
    from riskcast.model import ModelRegistry
    from riskcast.pipeline.external import evaluate_model

    settings = settings_of(ctx)
    report, meta = evaluate_model(
        settings, ModelRegistry(settings.models_dir), data_path=data_path, model_version=model_version,
        outcome=outcome, horizon_hours=horizon_hours, n_boot=n_boot, now=wall_clock(), progress=_progress(ctx),
    )
    data = meta | {"evaluation": report.to_dict()}
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(report.to_markdown() if out.suffix == ".md" else json.dumps(data, indent=2))
    from riskcast.pipeline.training import promise_markdown

    check = meta.get("promise_check")
    emit(ctx, data, lambda: f"# {meta['model_version']} on {meta['data']}\n\n"
         + transport_markdown(meta["transport"]) + (promise_markdown(check) if check else "") + report.to_markdown())


def transport_markdown(transport: dict) -> str:
    """How calibration and the threshold carried over, as a short Markdown section."""
    def num(value: float | None, fmt: str) -> str:
        return "n/a" if value is None else format(value, fmt)

    lines = [
        "## At this site\n",
        f"- calibration-in-the-large: {num(transport['calibration_in_the_large'], '+.4f')} "
        f"(mean predicted {num(transport['mean_predicted'], '.4f')}, observed {num(transport['observed_rate'], '.4f')}; "
        "positive: the model over-predicts here)",
        f"- at the model's threshold {transport['threshold']:.4f}: "
        f"{num(transport['alerts_per_100_patient_days'], '.1f')} alert episodes per 100 patient-days, "
        f"{num(transport['flag_rate'], '.1%')} of hours flagged",
    ]
    if transport.get("utility") is not None:
        lines.append(f"- PhysioNet 2019 utility at that threshold: {transport['utility']:.3f}")
    lines.append("- if calibration is off here, `riskcast recalibrate --data` fits a new calibrator on this site's "
                 "first patients as a new model version (never applied silently)\n\n")
    return "\n".join(lines)


@cli.command()
@click.option("--data", "data_path", type=click.Path(path_type=Path), required=True, help="Data to score (any ingestable format).")
@click.option("--out", type=click.Path(path_type=Path), required=True,
              help="Parquet, or CSV if the name ends in .csv; with --format physionet a folder of .psv files.")
@click.option("--format", "out_format", type=click.Choice(["table", "physionet"]), default="table", show_default=True,
              help="physionet: one .psv per stay with PredictedProbability|PredictedLabel, as the 2019 challenge's "
                   "evaluate_sepsis_score.py reads them.")
@click.option("--model", "model_version", default=None, help="Model version (default: the champion).")
@click.pass_context
@friendly_errors
def predict(ctx: click.Context, data_path: Path, out: Path, out_format: str, model_version: str | None) -> None:
    """Score every hour of another dataset (every source row, for PhysioNet files)."""
    from riskcast.model import ModelRegistry
    from riskcast.pipeline.external import predict_dataset, write_physionet_predictions

    settings = settings_of(ctx)
    if out_format == "physionet":
        if out.exists() and (not out.is_dir() or any(out.iterdir())):
            raise click.UsageError(f"{out} already exists and is not an empty folder; --format physionet writes a new folder")
        check_output_file(out.parent / f"{out.name}.psv", kinds="a folder name")
    else:
        check_output_file(out)
    predictions, meta = predict_dataset(
        settings, ModelRegistry(settings.models_dir), data_path=data_path, model_version=model_version,
        now=wall_clock(), progress=_progress(ctx),
    )
    if out_format == "physionet":
        files = write_physionet_predictions(predictions, out)
        data = meta | {"out": str(out), "rows": predictions.height, "files": files}
        emit(ctx, data, f"wrote {predictions.height:,} predictions ({meta['flagged']:,} flagged) in {files:,} .psv "
                        f"files to {out}")
        return
    write_output_file(out, predictions.write_csv if out.suffix == ".csv" else predictions.write_parquet)
    data = meta | {"out": str(out), "rows": predictions.height}
    emit(ctx, data, f"wrote {predictions.height:,} predictions ({meta['flagged']:,} flagged) to {out}")


@cli.command()
@click.option("--data", "data_path", type=click.Path(path_type=Path), required=True,
              help="The new site's data (any ingestable format).")
@click.option("--model", "model_version", default=None, help="Model version (default: the champion).")
@click.option("--first-patients", type=click.IntRange(min=1), default=None,
              help="Recalibrate on this many of the site's first patients (by admission).")
@click.option("--fraction", type=click.FloatRange(0, 1, min_open=True, max_open=True), default=0.3, show_default=True,
              help="Else on this share of its first patients.")
@click.option("--method", type=click.Choice(["auto", "isotonic", "platt"]), default="auto", show_default=True)
@click.pass_context
@friendly_errors
def recalibrate(ctx: click.Context, data_path: Path, model_version: str | None, first_patients: int | None,
                fraction: float, method: str) -> None:
    """Fit a new calibrator on a new site's first patients, as a new model version (not promoted)."""
    from riskcast.model import ModelRegistry
    from riskcast.pipeline.external import recalibrate_model

    settings = settings_of(ctx)
    data = recalibrate_model(
        settings, ModelRegistry(settings.models_dir), data_path=data_path, model_version=model_version,
        first_patients=first_patients, fraction=fraction, method=method, now=wall_clock(), progress=_progress(ctx),
    )
    emit(ctx, data, lambda: (
        f"registered {data['version']}: {data['from_version']} recalibrated ({data['method']}) on the first "
        f"{data['patients']:,} patients of {data['data']} ({data['rows']:,} hours, {data['positives']:,} positive)\n"
        f"  calibration-in-the-large {data['calibration_in_the_large_before']:+.4f} -> "
        f"{data['calibration_in_the_large_after']:+.4f}; threshold {data['threshold_before']:.4f} -> "
        f"{data['threshold_after']:.4f}\n"
        f"  not promoted: check it on the site's later patients (`riskcast evaluate --data ... --model "
        f"{data['version']}`), then `riskcast models promote`"
    ))


@cli.group()
def models() -> None:
    """List and promote model versions."""


@models.command("list")
@click.pass_context
@friendly_errors
def models_list(ctx: click.Context) -> None:
    """Registered model versions; the champion is marked."""
    from riskcast.model import ModelRegistry

    versions = ModelRegistry(settings_of(ctx).models_dir).versions()
    data = {"versions": [
        {"version": v.version, "engine": v.engine, "created_at": v.created_at.isoformat(), "champion": v.is_champion,
         "threshold": v.threshold} for v in versions
    ]}
    emit(ctx, data, lambda: "\n".join(
        f"{'*' if v['champion'] else ' '} {v['version']}  threshold {v['threshold']:.3f}" for v in data["versions"]
    ) or "no models yet: run `riskcast train`")


def _no_role(ctx: click.Context, param: click.Parameter, value: str | None) -> None:
    if value is not None:
        raise click.UsageError(
            "--role is not taken any more: the role comes from the users table. "
            "Give your dashboard user name with --user (you will be asked for its password)."
        )


PROMOTING_ROLES = ("data_scientist", "admin")
"""Who may promote a model; only an admin may override a failed gate (riskcast.pipeline.promotion)."""


@models.command("promote")
@click.argument("version")
@click.option("--user", "--by", "username", envvar="RISKCAST_USER", required=True,
              help="Your dashboard user name (or $RISKCAST_USER): a data scientist or admin; recorded as who promoted.")
@click.option("--password-stdin", is_flag=True, help="Read the password from the first line of standard input (else it is asked for).")
@click.option("--reason", required=True, help="Why.")
@click.option("--override", is_flag=True, help="Promote despite a failed gate (admins only; the reason is recorded).")
@click.option("--role", hidden=True, expose_value=False, callback=_no_role)
@click.pass_context
@friendly_errors
def models_promote(ctx: click.Context, version: str, username: str, password_stdin: bool, reason: str, override: bool) -> None:
    """Make VERSION the champion, if its calibration and fairness gates pass."""
    from riskcast.cli.identity import authenticated_actor, read_password
    from riskcast.errors import ConfigError
    from riskcast.model import ModelRegistry
    from riskcast.pipeline.promotion import promote_model
    from riskcast.store import open_store

    settings = settings_of(ctx)
    password = read_password(username, from_stdin=password_stdin)
    engine = open_store(settings.database_url)
    try:
        actor = authenticated_actor(engine, username, password)
        if actor.user.role not in PROMOTING_ROLES:
            raise ConfigError(f"{actor.user.username} is a {actor.user.role}: only data scientists and admins may promote models")
        gates = promote_model(
            settings, ModelRegistry(settings.models_dir), engine, version,
            by=f"{actor.user.username} (OS user {actor.os_user})", reason=reason, now=wall_clock(), role=actor.user.role,
            override=override,
        )
    finally:
        engine.dispose()
    data = {"champion": version, "by": actor.user.username, "os_user": actor.os_user, "gates": [g.to_dict() for g in gates]}
    emit(ctx, data, lambda: "\n".join(
        [f"{version} is now the champion"] + [f"  {'pass' if g.passed else 'FAIL'} {g.name}: {g.reason}" for g in gates]
    ))


@models.command("gates")
@click.argument("version")
@click.pass_context
@friendly_errors
def models_gates(ctx: click.Context, version: str) -> None:
    """Show whether VERSION would pass its promotion gates."""
    from riskcast.model import ModelRegistry
    from riskcast.pipeline.promotion import promotion_gates
    from riskcast.store import open_store

    settings = settings_of(ctx)
    ModelRegistry(settings.models_dir).path_of(version)
    engine = open_store(settings.database_url)
    try:
        gates = promotion_gates(settings, engine, version)
    finally:
        engine.dispose()
    emit(ctx, {"version": version, "gates": [g.to_dict() for g in gates]}, lambda: "\n".join(
        f"{'pass' if g.passed else 'FAIL'} {g.name}: {g.reason}" for g in gates
    ))
