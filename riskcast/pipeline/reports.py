"""The report files of a riskcast home: the one owner that names, writes and reads them.

    models/<version>/                         sealed with the version (riskcast.model.registry)
      model_card.json, model_card.md          the card (written by riskcast.model.artefact)
      heldout_patients.json                   pseudonymous ids of the held-out patients
      promise.json                            what the operating point promises
    reports/                                  the export for people
      evaluation-<version>.json, .md          the held-out evaluation, as `riskcast train` measured it
      tradeoff-<version>.json                 sensitivity, PPV and alert burden across thresholds
      audit-<version>-<run id>.html, .json    each fairness audit (`riskcast audit`)
      nightly/evaluation-<version>-<YYYYmmddTHHMM>.json   each nightly re-evaluation of the champion

Every name is built by a function here and nowhere else (the card's by riskcast.model.artefact,
which writes it); `AUDIT_NAME` matches what `audit_name` builds.

**One copy is the truth.** A version's held-out evaluation is the one sealed into its model
directory with it: the model card's `metrics.evaluation`, with its promise check under
`other.promise_check_held_out`. It is published in the same atomic step as the model, exists
for every version `riskcast train` made whether or not reports were asked for, and nothing
outside the registry changes it. reports/evaluation-<version>.json and .md are its export for
people, written from the same objects at the same time; nothing reads them back, so editing or
deleting them changes no gate, job or page. The trade-off and the audits exist only in
reports/, so that copy is theirs.

Files of a version are written into its stage plainly: the registry fsyncs them, makes them
owner-only and publishes the folder whole. Files in reports/ are written under a temporary name
and renamed into place (a reader never sees half a report), 0600 in 0700 folders like
everything under the home.

Readers get typed objects (each with `from_dict` beside its `to_dict`). A missing file reads as
None and the caller says what to run; a file that is there but cannot be read raises
RegistryError (the model directory) or EvaluationError (reports/) naming the file and what to
run. No message carries a patient identifier.
"""

from __future__ import annotations

import json
import math
import os
import re
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import polars as pl

from riskcast.config import Settings, make_private_dir
from riskcast.errors import ConfigError, EvaluationError, RegistryError
from riskcast.evaluate import EvaluationReport
from riskcast.fairness import AuditReport
from riskcast.model import ModelRegistry
from riskcast.model.artefact import CARD_FILE, CARD_MARKDOWN_FILE
from riskcast.model.registry import StagedVersion

HELD_OUT_FILE = "heldout_patients.json"
PROMISE_FILE = "promise.json"
NIGHTLY_DIR = "nightly"
AUDIT_NAME = re.compile(r"^audit-[A-Za-z0-9._-]+-\d+\.(html|json)$")
"""What `audit_name` builds, for reading back a name the store recorded (never a folder)."""

_RUN_TRAIN = "run `riskcast train` to write it again"
_RUN_AUDIT = "run `riskcast audit` again"


# ----------------------------------------------------------------------------- names


def evaluation_name(version: str, *, suffix: str = ".json") -> str:
    """The file name of `version`'s exported held-out evaluation (".json" or ".md")."""
    return f"evaluation-{version}{suffix}"


def tradeoff_name(version: str) -> str:
    """The file name of `version`'s threshold trade-off."""
    return f"tradeoff-{version}.json"


def audit_name(version: str, run_id: int, *, suffix: str) -> str:
    """The file name of an audit's report (".html" or ".json"): one per run of `riskcast audit`."""
    return f"audit-{version}-{run_id}{suffix}"


def nightly_evaluation_name(version: str, at: datetime) -> str:
    """The file name of the nightly job's evaluation of `version` scheduled for `at` (UTC)."""
    return f"evaluation-{version}-{at:%Y%m%dT%H%M}.json"


def audit_report_name(report_path: str | None) -> str | None:
    """The file name in a recorded audit report path, when it is one `audit_name` builds; the
    folder is never kept (the home may have moved, and a name cannot lead out of reports/)."""
    if not report_path:
        return None
    name = Path(report_path).name
    return name if AUDIT_NAME.match(name) else None


# ----------------------------------------------------------------------------- writing


def write_private_text(path: Path, text: str) -> Path:
    """Write `text` to `path` under a temporary name in the same folder and rename it into
    place: a reader sees the old file or the new one, never half of one. The file is the
    owner's only (0600) and missing folders are made 0700. Returns `path`."""
    path = Path(path)
    make_private_dir(path.parent)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as file:
            file.write(text)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return path


def _read_json(path: Path, *, what: str, then: str) -> Any | None:
    """The JSON in `path`; None when there is no such file."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else type(exc).__name__
        raise EvaluationError(f"{path}: cannot read the {what} ({reason}); {then}") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise EvaluationError(f"{path}: the {what} is not valid JSON (line {exc.lineno}: {exc.msg}); {then}") from None


def _json_rows(frame: pl.DataFrame) -> list[dict[str, Any]]:
    """A frame's rows as strict JSON values (NaN and infinities as None)."""
    return [
        {k: None if isinstance(v, float) and not math.isfinite(v) else v for k, v in row.items()}
        for row in frame.to_dicts()
    ]


# ----------------------------------------------------------------------------- what they hold


def _number(data: Mapping[str, Any], key: str, *, optional: bool = False) -> float | None:
    value = data.get(key)
    if value is None and optional and key in data:
        return None
    if key not in data:
        raise EvaluationError(f"{key} is missing")
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise EvaluationError(f"{key} should be a number, found {type(value).__name__}")
    return float(value)


def _flag(data: Mapping[str, Any], key: str) -> bool:
    if not isinstance(data.get(key), bool):
        raise EvaluationError(f"{key} should be true or false" if key in data else f"{key} is missing")
    return bool(data[key])


@dataclass(frozen=True)
class PromiseCheck:
    """Did these patients get what the operating point promised on the calibration patients?
    (riskcast.pipeline.training.check_promise measures it.) Kept when the alert burden stays
    within the tolerance above the promise and the hourly PPV within it below; for a threshold
    chosen by the PhysioNet 2019 utility, when the utility does (`promised_utility` is then set)."""

    promise: str
    promised_alerts_per_100_patient_days: float | None
    observed_alerts_per_100_patient_days: float | None
    promised_ppv: float | None
    observed_ppv: float | None
    burden_kept: bool
    ppv_kept: bool
    kept: bool
    promised_utility: float | None = None
    observed_utility: float | None = None
    utility_kept: bool | None = None

    def to_dict(self) -> dict[str, Any]:
        """As check_promise writes it (the utility keys only for a utility promise)."""
        data: dict[str, Any] = {
            "promise": self.promise,
            "promised_alerts_per_100_patient_days": self.promised_alerts_per_100_patient_days,
            "observed_alerts_per_100_patient_days": self.observed_alerts_per_100_patient_days,
            "promised_ppv": self.promised_ppv,
            "observed_ppv": self.observed_ppv,
            "burden_kept": self.burden_kept,
            "ppv_kept": self.ppv_kept,
            "kept": self.kept,
        }
        if self.promised_utility is not None:
            data |= {"promised_utility": self.promised_utility, "observed_utility": self.observed_utility,
                     "utility_kept": self.utility_kept}  # fmt: skip
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PromiseCheck:
        """Read what to_dict (or check_promise) wrote; EvaluationError names a missing or
        malformed key."""
        if not isinstance(data, Mapping):
            raise EvaluationError(f"the promise check should be a JSON object, found {type(data).__name__}")
        if not isinstance(data.get("promise"), str):
            raise EvaluationError("promise should be the promise in words" if "promise" in data else "promise is missing")
        utility = "promised_utility" in data
        return cls(
            promise=data["promise"],
            promised_alerts_per_100_patient_days=_number(data, "promised_alerts_per_100_patient_days", optional=True),
            observed_alerts_per_100_patient_days=_number(data, "observed_alerts_per_100_patient_days", optional=True),
            promised_ppv=_number(data, "promised_ppv", optional=True),
            observed_ppv=_number(data, "observed_ppv", optional=True),
            burden_kept=_flag(data, "burden_kept"),
            ppv_kept=_flag(data, "ppv_kept"),
            kept=_flag(data, "kept"),
            promised_utility=_number(data, "promised_utility") if utility else None,
            observed_utility=_number(data, "observed_utility", optional=True) if utility else None,
            utility_kept=_flag(data, "utility_kept") if utility else None,
        )


@dataclass(frozen=True, eq=False)
class HeldOutEvaluation:
    """A version's evaluation on its own held-out patients, as `riskcast train` measured it:
    the report (riskcast.evaluate) and whether the operating point's promise was kept there
    (None for a card without one). `to_dict` is the export's JSON, reports/evaluation-<version>.json."""

    report: EvaluationReport
    promise_check: PromiseCheck | None

    def to_dict(self) -> dict[str, Any]:
        """The report's dict with its promise check beside it, as the export holds it."""
        check = None if self.promise_check is None else self.promise_check.to_dict()
        return self.report.to_dict() | {"promise_check": check}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> HeldOutEvaluation:
        """Read what to_dict wrote; EvaluationError names a missing or malformed key."""
        if not isinstance(data, Mapping):
            raise EvaluationError(f"the evaluation should be a JSON object, found {type(data).__name__}")
        check = data.get("promise_check")
        return cls(EvaluationReport.from_dict(data), None if check is None else PromiseCheck.from_dict(check))


def _section(data: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    if key not in data:
        raise RegistryError(f"{key} is missing")
    if not isinstance(data[key], Mapping):
        raise RegistryError(f"{key} should be a JSON object, found {type(data[key]).__name__}")
    return data[key]


@dataclass(frozen=True)
class ModelCardRecord:
    """A version's model card as riskcast.model.artefact writes it (model_card.json), typed.

    `model` is what the artefact says of itself (engine, device, rounds, features, calibration,
    threshold and its rule); `data_description` and `limits` are as given when training
    (text, a list or a mapping); `evaluation_metrics` the evaluation passed in (for a version
    `riskcast train` made, an EvaluationReport's dict: read it with ReportStore.evaluation);
    `other` every other key of the training metadata (outcome, horizon, top variables, the
    promise and its check on the held-out patients...).
    """

    model: Mapping[str, Any]
    intended_use: Any
    data_description: Any
    fingerprint: Mapping[str, Any]
    training_metrics: Mapping[str, Any]
    evaluation_metrics: Mapping[str, Any]
    limits: Any
    other: Mapping[str, Any]

    def to_dict(self) -> dict[str, Any]:
        """The card's JSON, as written."""
        return {
            "model": dict(self.model),
            "intended_use": self.intended_use,
            "data": {"description": self.data_description, "fingerprint": dict(self.fingerprint)},
            "metrics": {"training": dict(self.training_metrics), "evaluation": dict(self.evaluation_metrics)},
            "limits": self.limits,
            "other": dict(self.other),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ModelCardRecord:
        """Read what to_dict (or the artefact) wrote; RegistryError names a missing section."""
        if not isinstance(data, Mapping):
            raise RegistryError(f"a model card should be a JSON object, found {type(data).__name__}")
        described, metrics = _section(data, "data"), _section(data, "metrics")
        for key in ("intended_use", "limits"):
            if key not in data:
                raise RegistryError(f"{key} is missing")
        if "description" not in described:
            raise RegistryError("data.description is missing")
        return cls(
            model=_section(data, "model"),
            intended_use=data["intended_use"],
            data_description=described["description"],
            fingerprint=_section(described, "fingerprint"),
            training_metrics=_section(metrics, "training"),
            evaluation_metrics=_section(metrics, "evaluation"),
            limits=data["limits"],
            other=_section(data, "other"),
        )

    @property
    def described(self) -> Mapping[str, Any]:
        """The training data's description when it is a mapping (outcome, rows, split...), else empty."""
        return self.data_description if isinstance(self.data_description, Mapping) else {}

    @property
    def outcome(self) -> str | None:
        """The outcome the model predicts, as its training metadata says (None when it does not)."""
        value = self.other.get("outcome", self.described.get("outcome"))
        return None if value is None else str(value)

    @property
    def horizon_hours(self) -> float | None:
        """The label horizon in hours, as its training metadata says (None when it does not)."""
        value = self.other.get("horizon_hours", self.described.get("horizon_hours"))
        return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None

    @property
    def limit_list(self) -> tuple[str, ...]:
        """The limits as a list of sentences (one when they were given as text)."""
        if isinstance(self.limits, str):
            return (self.limits,)
        return tuple(str(item) for item in self.limits) if isinstance(self.limits, list) else ()

    @property
    def top_variables(self) -> tuple[tuple[str, float | None], ...]:
        """(feature or variable name, mean |SHAP| on held-out rows), largest first, as training listed them."""
        rows = self.other.get("top_variables")
        if not isinstance(rows, list):
            return ()
        return tuple(
            (str(row.get("name")), float(row["mean_abs_contribution"])
             if isinstance(row.get("mean_abs_contribution"), int | float) else None)
            for row in rows if isinstance(row, Mapping)
        )  # fmt: skip


@dataclass(frozen=True, eq=False)
class TradeoffCurve:
    """Sensitivity, PPV and alert burden across thresholds on the held-out patients, for choosing
    an alert budget by eye (riskcast.pipeline.training.tradeoff_curve): `model` one row per
    threshold of the model's risk; `news2` NEWS2 at its usual alert levels (the AlertMetrics of
    each, with `threshold` the NEWS2 total)."""

    model: pl.DataFrame
    news2: pl.DataFrame

    def to_dict(self) -> dict[str, Any]:
        """Strict JSON (NaN as null), as reports/tradeoff-<version>.json holds it."""
        return {"model": _json_rows(self.model), "news2": _json_rows(self.news2)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TradeoffCurve:
        """Read what to_dict wrote; EvaluationError names a missing or malformed key."""
        if not isinstance(data, Mapping):
            raise EvaluationError(f"the trade-off should be a JSON object, found {type(data).__name__}")
        frames = {}
        for key in ("model", "news2"):
            rows = data.get(key)
            if not isinstance(rows, list) or not all(isinstance(row, Mapping) for row in rows):
                raise EvaluationError(f"{key} should be a list of rows" if key in data else f"{key} is missing")
            frames[key] = pl.DataFrame(rows, infer_schema_length=None)
        return cls(**frames)


@dataclass(frozen=True, eq=False)
class AuditDocument:
    """One fairness audit's JSON report as `riskcast audit` writes it: `meta`, what the flow
    adds (the model version, run, outcome, horizon, held-out patients, threshold, when), and
    the audit itself (riskcast.fairness)."""

    meta: Mapping[str, Any]
    audit: AuditReport

    def to_dict(self) -> dict[str, Any]:
        """As the report file holds it."""
        return {"meta": dict(self.meta), "audit": self.audit.to_dict()}

    def to_json(self) -> str:
        """The report file's text."""
        return json.dumps(self.to_dict(), indent=2)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> AuditDocument:
        """Read what to_dict wrote; EvaluationError names a missing or malformed key."""
        if not isinstance(data, Mapping):
            raise EvaluationError(f"the audit report should be a JSON object, found {type(data).__name__}")
        for key in ("meta", "audit"):
            if not isinstance(data.get(key), Mapping):
                raise EvaluationError(f"{key} should be a JSON object" if key in data else f"{key} is missing")
        try:
            return cls(meta=data["meta"], audit=AuditReport.from_dict(data["audit"]))
        except EvaluationError as exc:
            raise EvaluationError(f"audit.{exc}") from None


# ----------------------------------------------------------------------------- the store


class ReportStore:
    """The report files of one home: a version's files in its model directory (through the
    registry) and the exported reports in `reports_dir` (None: a flow that writes none).

        reports = ReportStore.of(settings)
        reports.evaluation(version)        # HeldOutEvaluation | None, from the model directory
        reports.tradeoff(version)          # TradeoffCurve | None, from reports/
    """

    def __init__(self, registry: ModelRegistry, reports_dir: Path | None = None) -> None:
        self.registry = registry
        self.reports_dir = None if reports_dir is None else Path(reports_dir)

    @classmethod
    def of(cls, settings: Settings, registry: ModelRegistry | None = None) -> ReportStore:
        """The store of the home in `settings` (its registry unless one is given)."""
        return cls(registry if registry is not None else ModelRegistry(settings.models_dir), settings.reports_dir)

    # ----------------------------------------------------------------- paths

    def _reports(self) -> Path:
        if self.reports_dir is None:
            raise ConfigError("no reports folder was given to write or read reports in")
        return self.reports_dir

    def model_card_path(self, version: str) -> Path:
        """Where `version`'s model card is (RegistryError for an unknown version)."""
        return self.registry.path_of(version) / CARD_FILE

    def evaluation_path(self, version: str) -> Path:
        """The exported held-out evaluation of `version` (JSON)."""
        return self._reports() / evaluation_name(version)

    def evaluation_markdown_path(self, version: str) -> Path:
        """The exported held-out evaluation of `version`, for reading (Markdown)."""
        return self._reports() / evaluation_name(version, suffix=".md")

    def tradeoff_path(self, version: str) -> Path:
        """The threshold trade-off of `version`."""
        return self._reports() / tradeoff_name(version)

    def audit_paths(self, version: str, run_id: int) -> tuple[Path, Path]:
        """The HTML and JSON reports of the audit run `run_id` of `version`."""
        folder = self._reports()
        return folder / audit_name(version, run_id, suffix=".html"), folder / audit_name(version, run_id, suffix=".json")

    def nightly_evaluation_path(self, version: str, at: datetime) -> Path:
        """The nightly evaluation of `version` scheduled for `at`."""
        return self._reports() / NIGHTLY_DIR / nightly_evaluation_name(version, at)

    # ----------------------------------------------------------------- a version's own files

    @staticmethod
    def write_held_out_patients(stage: StagedVersion, patient_ids: Iterable[str]) -> None:
        """Record the held-out patients (pseudonymous ids, sorted) in a version being staged, so
        `riskcast evaluate` and `riskcast audit` re-check the same patients later."""
        (stage.path / HELD_OUT_FILE).write_text(json.dumps(sorted(patient_ids)))

    @staticmethod
    def write_promise(stage: StagedVersion, promise: Mapping[str, Any]) -> None:
        """Record what the operating point promises (riskcast.pipeline.training.make_promise)
        in a version being staged."""
        (stage.path / PROMISE_FILE).write_text(json.dumps(dict(promise), indent=2))

    def held_out_patients(self, version: str) -> list[str] | None:
        """The held-out patients' ids of `version`; None for a version without the record (one
        that `riskcast train` did not make). RegistryError for an unknown version or a broken file."""
        ids = self.registry.read_json(version, HELD_OUT_FILE)
        if ids is not None and not (isinstance(ids, list) and all(isinstance(i, str) for i in ids)):
            raise RegistryError(f"{self.registry.path_of(version) / HELD_OUT_FILE}: should list the held-out "
                                "patients' ids; train a new model with `riskcast train`")  # fmt: skip
        return ids

    def promise(self, version: str) -> dict[str, Any] | None:
        """What `version`'s operating point promises, as make_promise wrote it; None for a version
        without one. RegistryError for an unknown version or a broken file."""
        promise = self.registry.read_json(version, PROMISE_FILE)
        if promise is not None and not isinstance(promise, dict):
            raise RegistryError(f"{self.registry.path_of(version) / PROMISE_FILE}: should hold a JSON object; "
                                "train a new model with `riskcast train`")  # fmt: skip
        return promise

    def _registered(self, version: Any) -> bool:
        return isinstance(version, str) and any(v.version == version for v in self.registry.versions())

    def model_card(self, version: str) -> ModelCardRecord | None:
        """The card of `version`; None when the version is not registered or has no card.
        RegistryError, naming the file, when the card is there but cannot be read."""
        if not self._registered(version):
            return None
        card = self.registry.read_json(version, CARD_FILE)
        if card is None:
            return None
        try:
            return ModelCardRecord.from_dict(card)
        except RegistryError as exc:
            raise RegistryError(f"{self.model_card_path(version)}: not a model card written by riskcast ({exc}); "
                                "train a new model with `riskcast train`") from None  # fmt: skip

    def require_model_card(self, version: str) -> ModelCardRecord:
        """The card of `version`; RegistryError when the version is unknown (the known ones are
        listed) or its card is missing or broken."""
        path = self.model_card_path(version)
        card = self.model_card(version)
        if card is None:
            raise RegistryError(f"{path} is missing: model version {version!r} is incomplete; "
                                "train a new model with `riskcast train`")  # fmt: skip
        return card

    def model_card_markdown(self, version: str) -> str | None:
        """model_card.md of `version` as written beside the JSON; None when there is none."""
        if not self._registered(version):
            return None
        path = self.registry.path_of(version) / CARD_MARKDOWN_FILE
        try:
            return path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        except (OSError, UnicodeDecodeError) as exc:
            raise RegistryError(f"{path}: cannot read the model card ({type(exc).__name__}); "
                                "train a new model with `riskcast train`") from None  # fmt: skip

    def evaluation(self, version: str) -> HeldOutEvaluation | None:
        """The held-out evaluation of `version` (the source of truth: its model card); None when
        the version is not registered or its card holds none (a recalibrated version, one
        registered without an evaluation). RegistryError, naming the file and what to run, when
        the card cannot be read or its evaluation is not one `riskcast train` wrote."""
        card = self.model_card(version)
        if card is None or not card.evaluation_metrics:
            return None
        check = card.other.get("promise_check_held_out")
        try:
            return HeldOutEvaluation(
                EvaluationReport.from_dict(card.evaluation_metrics),
                None if check is None else PromiseCheck.from_dict(check),
            )
        except EvaluationError as exc:
            raise RegistryError(f"{self.model_card_path(version)}: its held-out evaluation is not one `riskcast "
                                f"train` wrote ({exc}); train a new model with `riskcast train`") from None  # fmt: skip

    def require_evaluation(self, version: str) -> HeldOutEvaluation:
        """The held-out evaluation of `version`; RegistryError, saying what to run, when it has none."""
        evaluation = self.evaluation(version)
        if evaluation is None:
            raise RegistryError(f"model version {version!r} has no held-out evaluation in {self.model_card_path(version)}; "
                                "train a model with `riskcast train`")  # fmt: skip
        return evaluation

    # ----------------------------------------------------------------- reports/

    def export_evaluation(self, version: str, evaluation: HeldOutEvaluation, *, markdown: str) -> dict[str, str]:
        """Write the export of `version`'s held-out evaluation: its JSON and `markdown` (the text
        for people). Returns their paths {"json": ..., "markdown": ...}."""
        json_path = write_private_text(self.evaluation_path(version), json.dumps(evaluation.to_dict(), indent=2))
        markdown_path = write_private_text(self.evaluation_markdown_path(version), markdown)
        return {"json": str(json_path), "markdown": str(markdown_path)}

    def write_tradeoff(self, version: str, curve: TradeoffCurve) -> Path:
        """Write `version`'s threshold trade-off (strict JSON)."""
        return write_private_text(self.tradeoff_path(version), json.dumps(curve.to_dict(), indent=2, allow_nan=False))

    def tradeoff(self, version: str) -> TradeoffCurve | None:
        """The threshold trade-off of `version`; None when there is none (a model trained without
        reports). EvaluationError, naming the file, when it cannot be read."""
        path = self.tradeoff_path(version)
        data = _read_json(path, what="threshold trade-off", then=_RUN_TRAIN)
        if data is None:
            return None
        try:
            return TradeoffCurve.from_dict(data)
        except EvaluationError as exc:
            raise EvaluationError(f"{path}: not a threshold trade-off written by riskcast ({exc}); {_RUN_TRAIN}") from None

    def write_audit(self, version: str, run_id: int, *, html: str, document: AuditDocument) -> tuple[Path, Path]:
        """Write an audit's HTML and JSON reports; returns their paths (HTML, JSON)."""
        html_path, json_path = self.audit_paths(version, run_id)
        write_private_text(html_path, html)
        write_private_text(json_path, document.to_json())
        return html_path, json_path

    def audit_file(self, name: str | None) -> Path | None:
        """The audit report `name` (one `audit_name` builds) directly in reports/, when it exists."""
        if name is None or not AUDIT_NAME.match(name):
            return None
        path = self._reports() / name
        return path if path.is_file() else None

    def audit_json_path(self, report_path: str | None, version: str, run_id: int | None) -> Path | None:
        """Where the JSON report of an audit is: beside its recorded HTML report, else by its
        version and run; None when neither gives an audit report's name."""
        recorded = audit_report_name(report_path)
        if recorded is not None:
            name = f"{recorded.removesuffix('.html').removesuffix('.json')}.json"
        elif run_id is not None:
            name = audit_name(version, run_id, suffix=".json")
        else:
            return None
        return self._reports() / name if AUDIT_NAME.match(name) else None

    def audit_document(self, path: Path) -> AuditDocument | None:
        """The audit report at `path` (from audit_json_path); None when it is gone. EvaluationError,
        naming the file, when it cannot be read."""
        data = _read_json(path, what="fairness audit report", then=_RUN_AUDIT)
        if data is None:
            return None
        try:
            return AuditDocument.from_dict(data)
        except EvaluationError as exc:
            raise EvaluationError(f"{path}: not an audit report written by riskcast ({exc}); {_RUN_AUDIT}") from None

    def write_nightly_evaluation(self, version: str, at: datetime, document: Mapping[str, Any]) -> Path:
        """Write the nightly job's evaluation of `version` scheduled for `at` (its meta and the
        evaluation); returns its path."""
        return write_private_text(self.nightly_evaluation_path(version, at),
                                  json.dumps(dict(document), indent=2, default=str))  # fmt: skip


__all__ = [
    "AUDIT_NAME",
    "HELD_OUT_FILE",
    "NIGHTLY_DIR",
    "PROMISE_FILE",
    "AuditDocument",
    "HeldOutEvaluation",
    "ModelCardRecord",
    "PromiseCheck",
    "ReportStore",
    "TradeoffCurve",
    "audit_name",
    "audit_report_name",
    "evaluation_name",
    "nightly_evaluation_name",
    "tradeoff_name",
    "write_private_text",
]
