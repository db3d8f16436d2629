"""Is the model fair? The operating point audited by group, with intervals, gates and mitigation.

    report = audit(frame, threshold=0.3, gates=parse_gates(yaml.safe_load(text)))
    report.verdict                       # pass | warn | fail: the worst gate's
    report.features["sex"].groups        # one row per group, with 95% patient-bootstrap intervals

One module a job, data flowing down this list:

- ``auditing``: ``audit``, the whole audit, from the audit frame to the ``AuditReport``;
- ``mitigation``: what group-specific thresholds would change (for discussion, never applied);
- ``gates``: ``GateConfig`` (the gates as data) and their verdicts in words;
- ``frame``: ``GroupMetricFrame``, every metric overall and by group, and the disparities
  against a reference group, in the manner of Fairlearn's ``MetricFrame``;
- ``bootstrap``: patient-bootstrap resamples and percentile intervals, vectorised;
- ``metrics``: what is measured, and how, from counts;
- ``report``: the results, frozen dataclasses with ``to_dict()``.

Nothing here reads files, the clock or the database: the gates come in as a ``GateConfig``
(``riskcast.pipeline.audit.load_gates`` reads schemas/fairness_gates.yaml for the flow and
the CLI).
"""

from riskcast.fairness.auditing import audit
from riskcast.fairness.frame import (
    MEASUREMENT_GAP_HOURS,
    MEASUREMENT_VARIABLE,
    NOT_RECORDED,
    SENSITIVE_FEATURES,
    GroupMetricFrame,
)
from riskcast.fairness.gates import COMPARES, DEFAULT_GATES_FILE, Gate, GateConfig, parse_gates
from riskcast.fairness.metrics import (
    BOOTSTRAP_METRICS,
    ENCOUNTER,
    EVENT_TIME,
    FAIRLEARN_METRICS,
    INTERSECTION,
    LABEL,
    METRIC_LABELS,
    PATIENT,
    POINT_METRICS,
    RATE_METRICS,
    SCORE,
    TIME,
    metric_frame,
)
from riskcast.fairness.mitigation import MITIGATION_CONSTRAINTS, MITIGATION_OBJECTIVE, MITIGATION_RISK_DECIMALS
from riskcast.fairness.report import (
    AuditFinding,
    AuditReport,
    AuditSummary,
    FeatureAudit,
    GateResult,
    Mitigation,
    Verdict,
)

__all__ = [
    "BOOTSTRAP_METRICS",
    "COMPARES",
    "DEFAULT_GATES_FILE",
    "ENCOUNTER",
    "EVENT_TIME",
    "FAIRLEARN_METRICS",
    "INTERSECTION",
    "LABEL",
    "MEASUREMENT_GAP_HOURS",
    "MEASUREMENT_VARIABLE",
    "METRIC_LABELS",
    "MITIGATION_CONSTRAINTS",
    "MITIGATION_OBJECTIVE",
    "MITIGATION_RISK_DECIMALS",
    "NOT_RECORDED",
    "PATIENT",
    "POINT_METRICS",
    "RATE_METRICS",
    "SCORE",
    "SENSITIVE_FEATURES",
    "TIME",
    "AuditFinding",
    "AuditReport",
    "AuditSummary",
    "FeatureAudit",
    "Gate",
    "GateConfig",
    "GateResult",
    "GroupMetricFrame",
    "Mitigation",
    "Verdict",
    "audit",
    "metric_frame",
    "parse_gates",
]
