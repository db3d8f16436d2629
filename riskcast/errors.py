"""Every exception riskcast raises on purpose, in one place.

Messages name the file, table, column, row and count where they can, so the person who
reads them knows what to fix. The CLI prints them as one line and exits non-zero.
"""


class RiskcastError(Exception):
    """Base class: an expected problem a user can act on."""


class ConfigError(RiskcastError):
    """A setting is missing or malformed."""


class CatalogError(RiskcastError):
    """The variable catalogue or a contract file is malformed."""


class ContractError(RiskcastError):
    """A whole table cannot be validated (missing columns, unknown table)."""


class IngestError(RiskcastError):
    """A source could not be read at all."""


class LakeError(RiskcastError):
    """The Parquet lake is missing or inconsistent."""


class FeatureError(RiskcastError):
    """Features cannot be built from the given data."""


class LabelError(RiskcastError):
    """Labels cannot be built (unknown outcome type, no events)."""


class ModelError(RiskcastError):
    """A model cannot be trained, loaded or used as asked."""


class RegistryError(RiskcastError):
    """A model version is missing or the registry is inconsistent."""


class StoreError(RiskcastError):
    """The database cannot be reached or is at the wrong schema version."""


class EvaluationError(RiskcastError):
    """Metrics cannot be computed (no positives, no patients)."""


class AlertError(RiskcastError):
    """An alert action is not allowed in the alert's state."""
