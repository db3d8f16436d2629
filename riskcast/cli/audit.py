"""The fairness audit command: `riskcast audit`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from riskcast.cli.app import cli, emit, friendly_errors, settings_of
from riskcast.clock import wall_clock

DEFAULT_BY = "sex,age_band,race_ethnicity,site,ward"


def _names(value: str | None) -> list[str] | None:
    if value is None:
        return None
    names = [n.strip() for n in value.split(",") if n.strip()]
    if not names:
        raise click.BadParameter("give at least one name, comma-separated")
    return names


def _audit_text(data: dict[str, Any]) -> str:
    summary = data["summary"]
    lines = [
        f"fairness audit of {data['model_version']} on {summary['patients']:,} held-out patients "
        f"({summary['rows']:,} hours, {summary['events']:,} events) at risk >= {summary['threshold']:.4g}: "
        f"{data['verdict'].upper()}",
    ]
    for finding in summary["findings"]:
        lines.append(f"  {finding['verdict']:<4}  {finding['reason']}")
    passed = summary["gate_counts"].get("pass", 0)
    lines.append(f"  ({passed} gate result(s) passed)")
    lines.append(f"  report: {data['report_html']}")
    lines.append(f"  json:   {data['report_json']}")
    if data.get("out"):
        lines.append(f"  copy:   {data['out']}")
    return "\n".join(lines)


@cli.command()
@click.option("--model", "model_version", default=None, help="Model version (default: the champion).")
@click.option("--out", type=click.Path(path_type=Path), default=None,
              help="Also write the report here (HTML, or JSON if the name ends in .json).")
@click.option("--by", default=DEFAULT_BY, show_default=True, help="Sensitive features to audit by, comma-separated.")
@click.option("--intersections", is_flag=True, help="Also audit every pair of the --by features.")
@click.option("--gates", "gates_path", type=click.Path(path_type=Path), default=None,
              help="Gate bounds (default: the packaged schemas/fairness_gates.yaml).")
@click.option("--bootstrap", "n_boot", type=click.IntRange(0), default=None,
              help="Patient-level bootstrap resamples (default: the gates file's, 200).")
@click.option("--mitigate", default=None,
              help="Features to show the mitigation analysis for, comma-separated (default: those that fail a gate).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.pass_context
@friendly_errors
def audit(ctx: click.Context, model_version: str | None, out: Path | None, by: str, intersections: bool,
          gates_path: Path | None, n_boot: int | None, mitigate: str | None, seed: int) -> None:
    """Audit a model's fairness on its held-out patients: metrics by group, gates, an HTML report."""
    from riskcast.model import ModelRegistry
    from riskcast.pipeline.audit import audit_model

    settings = settings_of(ctx)

    def progress(message: str) -> None:
        if not ctx.obj.get("json"):
            click.echo(f"… {message}", err=True)

    run = audit_model(
        settings, ModelRegistry(settings.models_dir), now=wall_clock(), model_version=model_version,
        by=_names(by) or [], intersections=intersections, gates_path=gates_path, n_boot=n_boot,
        mitigate=_names(mitigate), seed=seed, out=out, progress=progress,
    )
    data = run.to_dict()
    emit(ctx, data, lambda: _audit_text(data))
