"""The alert policy: what an hourly score does to an encounter's alert. Pure; no I/O but YAML.

The policy is read from `schemas/alert_policy.yaml` (defaults for every ward, overrides per
ward) into a `PolicySet`; `PolicySet.for_ward(ward).resolve(model_threshold)` gives the
concrete `AlertPolicy` for one score. `decide` maps (the encounter's open alert, its new
score) to a list of `Action`s; `due_escalations` and `expired_snoozes` find the alerts a
periodic job must move on. The store-backed state machine (riskcast.alerts.state) applies
the actions; nothing here reads the clock: `now` (UTC-aware) is always passed in.

Decisions, so that a reader of an alert's history can tell why it moved:

- **Raise** a risk alert when risk >= raise_threshold and the encounter has no open risk
  alert (the operating point's convention: flagged when risk >= threshold).
- **Hysteresis**: an open alert stays open while the risk hovers between the clear and the
  raise threshold; nothing new is raised for it.
- **Auto-resolve** only an alert nobody has seen: a risk alert in state `new` whose risk
  falls below clear_threshold is resolved by riskcast. Once staff have acknowledged,
  snoozed, or been escalated to, only staff resolve it: clinically, the person who looked
  at the patient decides the concern is over, not the model. A stale-data alert is about
  the record, not the patient: it resolves itself, in any open state, as soon as a score
  has its essential vitals again.
- **Re-alert**: a rise of re_alert_step (absolute) over the open alert's risk (the risk it
  was raised or last re-alerted at) records a re-alert at the new risk. An acknowledged or
  snoozed alert goes back to `new` (it needs a fresh look); a `new` or `escalated` alert
  keeps its state and its escalation clock.
- **Suppression**: within suppression_hours of an alert's resolution (its `updated_at`,
  whoever resolved it) the encounter is not alerted again for the same kind, unless the
  risk is re_alert_step above the resolved alert's risk. Suppression is per encounter (the
  stay), not per patient across stays.
- **Escalation**: a risk alert still `new` escalate_after_minutes after it last entered
  `new` (raised, re-alerted from acknowledged/snoozed, or woken from a snooze) is
  escalated. Stale-data alerts are not escalated (they would page seniors about charting).
- **Snooze expiry**: a snooze whose `snoozed_until` is at or before `now` wakes the alert:
  it returns to `new` (a "reopened" event) and its escalation clock restarts.
- A score with status ScoreStatus.INSUFFICIENT_DATA has no risk: it never raises, clears or
  re-alerts a risk alert; it may raise a stale-data alert (when stale_data_alert is on).
- A score for an hour before the open alert's `raised_for` is ignored (a late rescoring of
  an old hour does not clear a newer alert).
- **Departure**: the exception to "only staff resolve it". When the patient is no longer
  admitted at a scored hour, riskcast resolves their open alerts in any state
  (`departure_resolutions`; reason DEPARTURE_REASON): nobody on a ward can act on them. Such a
  resolution does not suppress a later alert (a discharge that a later feed corrects must
  not silence the patient).
- **Moves**: an open alert follows its patient to the ward the latest score puts them on
  (riskcast.alerts.state records a "moved" event).
"""

from __future__ import annotations

import math
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field, fields, replace
from datetime import datetime, timedelta
from enum import StrEnum
from pathlib import Path
from types import MappingProxyType
from typing import Any


from riskcast.config import read_yaml_config
from riskcast.errors import ConfigError
from riskcast.score_status import ScoreStatus

DEFAULT_POLICY_FILE = "alert_policy.yaml"
MODEL_THRESHOLD = "model"
"""The value of raise_threshold in the policy file meaning "the model's operating point"."""

SYSTEM_ACTOR = "riskcast"
"""The actor recorded on events riskcast makes itself (raise, re-alert, escalate, ...)."""

_RISK_TOLERANCE = 1e-9
"""Risk comparisons against a step allow this much float noise (0.3 + 0.1 vs 0.4)."""


class AlertState(StrEnum):
    """Where an alert is in its life; `resolved` is the only closed state."""

    NEW = "new"
    ACKNOWLEDGED = "acknowledged"
    SNOOZED = "snoozed"
    ESCALATED = "escalated"
    RESOLVED = "resolved"


OPEN_STATES: tuple[AlertState, ...] = (
    AlertState.NEW,
    AlertState.ACKNOWLEDGED,
    AlertState.SNOOZED,
    AlertState.ESCALATED,
)


class AlertKind(StrEnum):
    """What an alert is about: the patient's risk, or their record lacking vitals."""

    RISK = "risk"
    STALE_DATA = "stale_data"
    SYSTEM = "system"


class ActionType(StrEnum):
    """What the state machine must do; each value maps to one alert_events action."""

    RAISE = "raise"
    RAISE_STALE = "raise_stale"
    RE_ALERT = "re_alert"
    AUTO_RESOLVE = "auto_resolve"
    ESCALATE = "escalate"
    WAKE = "wake"


@dataclass(frozen=True)
class AlertPolicy:
    """The alert rules of one ward. Probabilities in [0, 1]; times in hours or minutes.

    `raise_threshold` None means "the model's threshold" until `resolve` fills it in;
    `clear_threshold` None means clear_ratio x raise_threshold. `decide` needs a resolved
    policy (both thresholds set).
    """

    raise_threshold: float | None = None
    clear_threshold: float | None = None
    clear_ratio: float = 0.8
    suppression_hours: float = 6.0
    re_alert_step: float = 0.10
    escalate_after_minutes: float = 30.0
    max_snooze_hours: float = 4.0
    max_reason_length: int = 500
    stale_data_alert: bool = True

    @property
    def is_resolved(self) -> bool:
        """Whether both thresholds are concrete probabilities."""
        return self.raise_threshold is not None and self.clear_threshold is not None

    def resolve(self, model_threshold: float | None) -> AlertPolicy:
        """This policy with concrete thresholds: "model" becomes `model_threshold`.

        Raises ConfigError when the policy defers to the model and no threshold is given,
        or when the clear threshold would not be below the raise threshold.
        """
        raise_threshold = self.raise_threshold
        if raise_threshold is None:
            if model_threshold is None or not 0.0 <= model_threshold <= 1.0:
                raise ConfigError(
                    "alert policy raise_threshold is 'model' but no model threshold in [0, 1] was given "
                    f"(got {model_threshold!r}); pass the scoring model's operating-point threshold"
                )
            raise_threshold = float(model_threshold)
        clear_threshold = self.clear_threshold
        if clear_threshold is None:
            clear_threshold = self.clear_ratio * raise_threshold
        if clear_threshold >= raise_threshold:
            raise ConfigError(
                f"alert policy clear_threshold {clear_threshold:.4g} must be below raise_threshold "
                f"{raise_threshold:.4g} (hysteresis)"
            )
        return replace(self, raise_threshold=raise_threshold, clear_threshold=clear_threshold)


@dataclass(frozen=True)
class PolicySet:
    """Policies for all wards: `default`, and `wards` overriding it by ward name."""

    default: AlertPolicy = field(default_factory=AlertPolicy)
    wards: Mapping[str, AlertPolicy] = field(default_factory=lambda: MappingProxyType({}))

    def for_ward(self, ward: str | None) -> AlertPolicy:
        """The policy of `ward` (the default for an unknown or missing ward)."""
        if ward is None:
            return self.default
        return self.wards.get(ward, self.default)


@dataclass(frozen=True)
class ScoreSnapshot:
    """One score of one encounter: `scored_at` is the hour it describes (UTC).

    `risk` is None when `status` is ScoreStatus.INSUFFICIENT_DATA (essential vitals stale or missing).
    """

    encounter_id: str
    patient_id: str
    ward: str | None
    scored_at: datetime
    risk: float | None
    status: str
    model_version: str | None = None

    @property
    def has_risk(self) -> bool:
        """Whether the score carries a usable risk (scored, not null, not NaN)."""
        return self.status == ScoreStatus.SCORED and self.risk is not None and not math.isnan(self.risk)


@dataclass(frozen=True)
class AlertSnapshot:
    """An alert as the policy sees it (a row of the alerts table, plus `pending_since`).

    `risk`: the risk it was raised or last re-alerted at (None for stale-data alerts).
    `updated_at`: its last change; for a resolved alert, when it was resolved.
    `pending_since`: when it last entered state `new` (the escalation clock); None when it
    is not `new`.
    """

    alert_id: int
    encounter_id: str
    patient_id: str
    ward: str | None
    kind: AlertKind
    state: AlertState
    raised_at: datetime
    raised_for: datetime
    risk: float | None
    updated_at: datetime
    episode: int = 1
    model_version: str | None = None
    snoozed_until: datetime | None = None
    pending_since: datetime | None = None
    version: int = 1

    @property
    def is_open(self) -> bool:
        """Whether the alert still needs someone (any state but resolved)."""
        return self.state != AlertState.RESOLVED


@dataclass(frozen=True)
class Action:
    """One thing the state machine must do, and why (the text goes into alert_events.reason).

    `alert_id` is None for RAISE and RAISE_STALE (the alert does not exist yet); `risk` is
    the score's risk for RAISE and RE_ALERT.
    """

    type: ActionType
    alert_id: int | None
    reason: str
    risk: float | None = None


# --- loading ------------------------------------------------------------------------------

_PROBABILITY_KEYS = {"raise_threshold", "clear_threshold", "clear_ratio", "re_alert_step"}
_KNOWN_KEYS = tuple(f.name for f in fields(AlertPolicy))


def _policy_values(raw: Any, where: str) -> dict[str, Any]:
    """The checked values of one `defaults` or ward mapping; ConfigError names `where`."""
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: expected a mapping of policy keys, got {type(raw).__name__}")
    unknown = sorted(set(raw) - set(_KNOWN_KEYS))
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {unknown}; known: {sorted(_KNOWN_KEYS)}")
    values: dict[str, Any] = {}
    for key, value in raw.items():
        if key == "raise_threshold" and value == MODEL_THRESHOLD:
            values[key] = None
            continue
        if key == "stale_data_alert":
            if not isinstance(value, bool):
                raise ConfigError(f"{where}.{key}: expected true or false, got {value!r}")
            values[key] = value
            continue
        if key == "max_reason_length":
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"{where}.{key}: expected a positive whole number of characters, got {value!r}")
            values[key] = value
            continue
        expected = "a probability in [0, 1]" if key in _PROBABILITY_KEYS else "a number >= 0"
        if key == "raise_threshold":
            expected += f" or '{MODEL_THRESHOLD}'"
        is_number = not isinstance(value, bool) and isinstance(value, int | float) and not math.isnan(value)
        if not is_number or value < 0 or (key in _PROBABILITY_KEYS and value > 1):
            raise ConfigError(f"{where}.{key}: expected {expected}, got {value!r}")
        values[key] = float(value)
    return values


def _checked_policy(values: dict[str, Any], where: str) -> AlertPolicy:
    policy = AlertPolicy(**values)
    if policy.raise_threshold is not None:
        try:
            policy.resolve(None)
        except ConfigError as exc:
            raise ConfigError(f"{where}: {exc}") from None
    return policy


def parse_policy(data: Any, *, source: str = DEFAULT_POLICY_FILE) -> PolicySet:
    """A PolicySet from the parsed YAML mapping `data`; `source` names it in errors.

    Ward entries override the defaults key by key; a ward that sets `raise_threshold`
    without `clear_threshold` clears at clear_ratio x its own raise threshold.
    """
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a mapping with 'defaults' and 'wards' at the top level")
    unknown = sorted(set(data) - {"defaults", "wards"})
    if unknown:
        raise ConfigError(f"{source}: unknown top-level key(s) {unknown}; known: ['defaults', 'wards']")
    default_values = _policy_values(data.get("defaults"), f"{source}: defaults")
    default = _checked_policy(default_values, f"{source}: defaults")
    wards_raw = data.get("wards") or {}
    if not isinstance(wards_raw, dict):
        raise ConfigError(f"{source}: wards: expected a mapping of ward name to policy keys")
    wards: dict[str, AlertPolicy] = {}
    for ward, raw in wards_raw.items():
        where = f"{source}: wards.{ward}"
        overrides = _policy_values(raw, where)
        merged = {**default_values, **overrides}
        if "raise_threshold" in overrides and "clear_threshold" not in overrides:
            merged.pop("clear_threshold", None)
        wards[str(ward)] = _checked_policy(merged, where)
    return PolicySet(default=default, wards=MappingProxyType(wards))


def load_policy(path: str | Path | None = None) -> PolicySet:
    """The alert policy from `path`, or the packaged schemas/alert_policy.yaml when None."""
    data, source = read_yaml_config(path, packaged=DEFAULT_POLICY_FILE, what="alert policy")
    return parse_policy(data, source=source)


# --- deciding -----------------------------------------------------------------------------


def _require_resolved(policy: AlertPolicy) -> tuple[float, float]:
    if policy.raise_threshold is None or policy.clear_threshold is None:
        raise ConfigError(
            "decide needs a resolved alert policy (raise_threshold is 'model'); "
            "call policy.resolve(model_threshold) first"
        )
    return policy.raise_threshold, policy.clear_threshold


def _rose_by_step(risk: float, reference: float | None, step: float) -> bool:
    return reference is not None and risk - reference >= step - _RISK_TOLERANCE


def _escalation_is_due(alert: AlertSnapshot, policy: AlertPolicy, now: datetime) -> bool:
    if alert.kind != AlertKind.RISK or alert.state != AlertState.NEW:
        return False
    pending_since = alert.pending_since or alert.raised_at
    return now - pending_since >= timedelta(minutes=policy.escalate_after_minutes)


def _escalate(alert: AlertSnapshot, policy: AlertPolicy) -> Action:
    return Action(
        ActionType.ESCALATE,
        alert.alert_id,
        f"not acknowledged within {policy.escalate_after_minutes:g} minutes",
    )


def _wake(alert: AlertSnapshot) -> Action:
    return Action(ActionType.WAKE, alert.alert_id, "snooze expired")


def _snooze_expired(alert: AlertSnapshot, now: datetime) -> bool:
    return alert.state == AlertState.SNOOZED and alert.snoozed_until is not None and alert.snoozed_until <= now


def _suppressed(last_resolved: AlertSnapshot | None, risk: float | None, policy: AlertPolicy, now: datetime) -> bool:
    """Whether a new alert is held back by a recent resolution (see the module notes)."""
    if last_resolved is None or last_resolved.state != AlertState.RESOLVED:
        return False
    if now - last_resolved.updated_at >= timedelta(hours=policy.suppression_hours):
        return False
    return risk is None or not _rose_by_step(risk, last_resolved.risk, policy.re_alert_step)


def decide(
    open_alert: AlertSnapshot | None,
    score: ScoreSnapshot,
    *,
    policy: AlertPolicy,
    now: datetime,
    kind: AlertKind = AlertKind.RISK,
    last_resolved: AlertSnapshot | None = None,
) -> list[Action]:
    """What `score` does to the encounter's alert of `kind`; [] when nothing happens.

    `open_alert`: the encounter's open alert of `kind`, or None. `last_resolved`: its most
    recently resolved alert of `kind`, for the suppression window. `policy` must be
    resolved (`AlertPolicy.resolve`). Actions come in the order to apply them: a WAKE of
    an expired snooze comes first, an ESCALATE last. See the module docstring for the rules.
    """
    raise_threshold, clear_threshold = _require_resolved(policy)
    if open_alert is not None and (open_alert.kind != kind or not open_alert.is_open):
        raise ValueError(
            f"decide: open_alert {open_alert.alert_id} is a {open_alert.state} {open_alert.kind} alert; "
            f"expected an open {kind} alert or None"
        )
    if kind == AlertKind.SYSTEM:
        raise ValueError("decide: system alerts are not raised from scores")

    actions: list[Action] = []
    alert = open_alert
    if alert is not None and score.scored_at < alert.raised_for:
        return []  # a late score for an hour before the alert: it says nothing new
    if alert is not None and _snooze_expired(alert, now):
        actions.append(_wake(alert))
        alert = replace(alert, state=AlertState.NEW, snoozed_until=None, pending_since=now)

    if kind == AlertKind.STALE_DATA:
        if alert is None:
            if score.status == ScoreStatus.INSUFFICIENT_DATA and policy.stale_data_alert and not _suppressed(
                last_resolved, None, policy, now
            ):
                actions.append(Action(ActionType.RAISE_STALE, None, "essential vitals stale or missing"))
        elif score.has_risk:
            actions.append(Action(ActionType.AUTO_RESOLVE, alert.alert_id, "essential vitals recorded again"))
        return actions

    if not score.has_risk:
        if alert is not None and _escalation_is_due(alert, policy, now):
            actions.append(_escalate(alert, policy))
        return actions
    risk = float(score.risk)  # type: ignore[arg-type]  # has_risk checked it

    if alert is None:
        if risk >= raise_threshold and not _suppressed(last_resolved, risk, policy, now):
            actions.append(
                Action(
                    ActionType.RAISE, None, f"risk {risk:.3f} at or above raise threshold {raise_threshold:.3f}", risk
                )
            )
        return actions

    if alert.state == AlertState.NEW and risk < clear_threshold:
        actions.append(
            Action(
                ActionType.AUTO_RESOLVE,
                alert.alert_id,
                f"risk {risk:.3f} fell below clear threshold {clear_threshold:.3f} before anyone acknowledged",
                risk,
            )
        )
        return actions
    if _rose_by_step(risk, alert.risk, policy.re_alert_step):
        actions.append(
            Action(
                ActionType.RE_ALERT,
                alert.alert_id,
                f"risk rose to {risk:.3f}, at least {policy.re_alert_step:.2f} above {alert.risk:.3f}",
                risk,
            )
        )
        if alert.state in (AlertState.ACKNOWLEDGED, AlertState.SNOOZED):
            alert = replace(alert, state=AlertState.NEW, snoozed_until=None, pending_since=now)
    if _escalation_is_due(alert, policy, now):
        actions.append(_escalate(alert, policy))
    return actions


def due_escalations(
    open_alerts: Iterable[AlertSnapshot],
    *,
    policy: AlertPolicy | PolicySet,
    now: datetime,
) -> list[Action]:
    """ESCALATE actions for the risk alerts still `new` escalate_after_minutes after they
    last entered `new`; with a PolicySet, each alert follows its ward's policy."""
    actions = []
    for alert in open_alerts:
        ward_policy = policy.for_ward(alert.ward) if isinstance(policy, PolicySet) else policy
        if _escalation_is_due(alert, ward_policy, now):
            actions.append(_escalate(alert, ward_policy))
    return actions


def expired_snoozes(open_alerts: Iterable[AlertSnapshot], *, now: datetime) -> list[Action]:
    """WAKE actions for the snoozed alerts whose snoozed_until is at or before `now`."""
    return [_wake(alert) for alert in open_alerts if _snooze_expired(alert, now)]


DEPARTURE_REASON = "patient no longer admitted"
"""How a departure resolution's reason begins (the state machine recognises it by this)."""


def departure_resolutions(
    open_alerts: Iterable[AlertSnapshot], *, admitted: Collection[str], at: datetime
) -> list[Action]:
    """AUTO_RESOLVE actions for the open patient alerts (risk, stale data) raised at or
    before the hour `at` whose encounter is not in `admitted` at `at`: the patient was
    discharged or left, and nobody on a ward can act on the alert any more. Alerts raised
    after `at` are kept (a late rescoring of an earlier hour must not close them)."""
    return [
        Action(ActionType.AUTO_RESOLVE, alert.alert_id,
               f"{DEPARTURE_REASON} at {at.isoformat(timespec='minutes')} (discharged or left)")
        for alert in open_alerts
        if alert.kind != AlertKind.SYSTEM and alert.is_open and alert.raised_for <= at
        and alert.encounter_id not in admitted
    ]  # fmt: skip
