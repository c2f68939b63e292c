"""Tideflow: self-hosted change-data-capture streaming."""

__version__ = "0.1.0"
