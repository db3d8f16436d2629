"""Promotion: a challenger becomes champion only through its gates.

Gates (bounds in schemas/promotion_gates.yaml):

- calibration: on held-out patients, calibration-in-the-large and ECE within bounds, and
  the operating point's promise kept;
- fairness: the version's latest fairness audit did not fail (`riskcast audit`).

A failed gate blocks promotion unless an admin overrides it with a reason; the override
and its reason are recorded in the registry's history and the store. The registry is the
source of truth for the champion; promoting mirrors it into the store's models table
(riskcast.pipeline.store_sync.sync_models), so the dashboard and jobs see the same champion.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from importlib import resources
from typing import Any

import yaml
from sqlalchemy import select
from sqlalchemy.engine import Engine

from riskcast.config import Settings
from riskcast.errors import RegistryError
from riskcast.fairness import AuditSummary
from riskcast.model import ModelRegistry
from riskcast.pipeline.reports import ReportStore
from riskcast.pipeline.store_sync import sync_models
from riskcast.store.tables import audits


MAX_REASONS_SHOWN = 3
"""A failed fairness gate names at most this many of the audit's failed gates; the report has all."""


@dataclass(frozen=True)
class PromotionGate:
    """One promotion gate's verdict for a version, with the reason in words (not to be
    confused with riskcast.fairness.Gate, a bound the fairness audit checks)."""

    name: str
    passed: bool
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "passed": self.passed, "reason": self.reason}


@functools.cache
def gate_bounds() -> dict[str, float]:
    """Bounds from schemas/promotion_gates.yaml."""
    text = resources.files("riskcast.schemas").joinpath("promotion_gates.yaml").read_text()
    return {k: float(v) for k, v in yaml.safe_load(text)["calibration"].items()}


def _evaluation(settings: Settings, version: str) -> dict[str, Any] | None:
    evaluation = ReportStore.of(settings).evaluation(version)  # the model directory's, the source of truth
    return None if evaluation is None else evaluation.to_dict()


def calibration_gate(settings: Settings, version: str) -> PromotionGate:
    """Calibration on held-out patients within bounds, and the promise kept."""
    report = _evaluation(settings, version)
    if report is None:
        return PromotionGate("calibration", False, f"no held-out evaluation of {version} in its model card: `riskcast train` records one")
    bounds = gate_bounds()
    calibration = report["calibration"]
    problems = []
    citl = calibration.get("calibration_in_the_large")
    if citl is None or abs(citl) > bounds["max_abs_calibration_in_the_large"]:
        problems.append(f"calibration-in-the-large {citl} is outside ±{bounds['max_abs_calibration_in_the_large']}")
    ece = calibration.get("ece")
    if ece is None or ece > bounds["max_ece"]:
        problems.append(f"ECE {ece} is above {bounds['max_ece']}")
    promise = report.get("promise_check")
    if promise is not None and not promise["kept"]:
        problems.append(f"the promise '{promise['promise']}' was broken on held-out patients")
    if problems:
        return PromotionGate("calibration", False, "; ".join(problems))
    return PromotionGate("calibration", True, f"ECE {ece:.4f}, calibration-in-the-large {citl:+.4f}, promise kept")


def fairness_gate(engine: Engine, version: str) -> PromotionGate:
    """The version's latest fairness audit did not fail."""
    with engine.connect() as connection:
        row = connection.execute(
            select(audits.c.verdict, audits.c.created_at, audits.c.summary)
            .where(audits.c.model_version == version)
            .order_by(audits.c.created_at.desc(), audits.c.id.desc())
            .limit(1)
        ).first()
    if row is None:
        return PromotionGate("fairness", False, f"no fairness audit of {version} yet: run `riskcast audit --model {version}`")
    if row.verdict == "fail":
        failures = AuditSummary.from_dict(row.summary or {"verdict": row.verdict}).failures
        detail = "; ".join(f"{f.gate}: {f.reason}" for f in failures[:MAX_REASONS_SHOWN])
        if len(failures) > MAX_REASONS_SHOWN:
            detail += f"; and {len(failures) - MAX_REASONS_SHOWN} more failed gate(s)"
        detail = detail or "no failed gate is recorded in its summary"
        return PromotionGate("fairness", False, f"the latest audit ({row.created_at:%Y-%m-%d %H:%M}) failed: {detail} (see `riskcast audit`'s report)")
    return PromotionGate("fairness", True, f"the latest audit ({row.created_at:%Y-%m-%d %H:%M}) says {row.verdict}")


def promotion_gates(settings: Settings, engine: Engine, version: str) -> list[PromotionGate]:
    """Every gate's verdict for promoting `version`."""
    return [calibration_gate(settings, version), fairness_gate(engine, version)]


def promote_model(
    settings: Settings,
    registry: ModelRegistry,
    engine: Engine,
    version: str,
    *,
    by: str,
    reason: str,
    now: datetime,
    role: str | None = None,
    override: bool = False,
) -> list[PromotionGate]:
    """Make `version` champion if its gates pass, or an admin overrides them with a reason."""
    registry.path_of(version)  # unknown versions fail here, with the known ones listed
    gates = promotion_gates(settings, engine, version)
    failed = [g for g in gates if not g.passed]
    if failed and not override:
        raise RegistryError(
            f"{version} cannot be promoted: "
            + "; ".join(f"{g.name} gate failed ({g.reason})" for g in failed)
            + ". An admin may override with --override and a reason."
        )
    if failed and role != "admin":
        raise RegistryError(f"only an admin may override a failed gate (role: {role or 'none'})")
    note = reason if not failed else f"{reason} [override of failed gate(s): {', '.join(g.name for g in failed)}]"
    registry.promote(version, by=by, reason=note, now=now)
    sync_models(registry, engine)
    return gates


# ------------------------------------------------------------------------- a retrain's decision

AUROC_MARGIN = 0.01
"""Automatic promotion needs the challenger's held-out AUROC at least the champion's minus this."""


class PromotionDecision(StrEnum):
    """What becomes of a freshly trained challenger."""

    PROMOTE = "promoted"
    LEAVE_TO_A_PERSON = "left to a person"
    BLOCKED = "blocked by the gates"


@dataclass(frozen=True)
class PromotionVerdict:
    """The decision on a challenger and why, in words a person can act on."""

    decision: PromotionDecision
    why: str

    def to_dict(self) -> dict[str, Any]:
        return {"decision": self.decision.value, "why": self.why}


def discriminates_worse(challenger_auroc: float | None, champion_auroc: float | None, *,
                        champion: str | None) -> str | None:  # fmt: skip
    """Why the challenger must not be promoted automatically on discrimination, or None.

    The gates judge calibration and fairness, not whether the challenger ranks patients as
    well as the champion; each model's AUROC is from its own held-out patients, so this is a
    rough check, and a person decides when it fails or cannot be made. With no `champion`
    there is nothing to compare with.
    """
    if champion is None:
        return None
    if challenger_auroc is None or champion_auroc is None:
        return "the AUROC of the challenger or the champion is unknown, so they cannot be compared"
    if challenger_auroc < champion_auroc - AUROC_MARGIN:
        return (f"the challenger's held-out AUROC {challenger_auroc:.3f} is below the champion's {champion_auroc:.3f} "
                f"by more than {AUROC_MARGIN}")
    return None


def decide_promotion(
    gates: Sequence[PromotionGate],
    *,
    challenger: str,
    champion: str | None,
    challenger_auroc: float | None,
    champion_auroc: float | None,
    automatic: bool,
) -> PromotionVerdict:
    """Whether a retrain promotes `challenger` itself, leaves it to a person, or is blocked.

    It promotes only when `automatic` (the retrain job's promote_when_gates_pass), every gate
    passed and the challenger discriminates no worse than the champion (`discriminates_worse`);
    a failed gate blocks it (an admin may override); otherwise a person decides. The reasons
    name the command to run.
    """
    failed = [g for g in gates if not g.passed]
    command = f"`riskcast models promote {challenger} --user NAME --reason WHY`"
    if failed:
        return PromotionVerdict(
            PromotionDecision.BLOCKED,
            "; ".join(f"{g.name}: {g.reason}" for g in failed) + f". An admin may override with {command} --override",
        )
    worse = discriminates_worse(challenger_auroc, champion_auroc, champion=champion)
    if worse is not None:
        return PromotionVerdict(PromotionDecision.LEAVE_TO_A_PERSON, f"{worse}; decide, then {command}")
    if automatic:
        return PromotionVerdict(PromotionDecision.PROMOTE, "every promotion gate passed; AUROC no worse")
    return PromotionVerdict(
        PromotionDecision.LEAVE_TO_A_PERSON,
        f"every gate passed; compare the evaluations and the shadow scores, then {command} "
        "(or set the job's option promote_when_gates_pass)",
    )
