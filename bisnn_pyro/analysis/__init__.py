"""Metrics and reports on trained models."""

from .metrics import accuracy, brier, ece, nll, summary

__all__ = ["accuracy", "brier", "ece", "nll", "summary"]
