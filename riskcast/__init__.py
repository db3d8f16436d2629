"""riskcast: early warning of in-hospital deterioration from routine vitals and labs."""

__version__ = "0.1.0"
