"""Evaluation of predicted doses: per-case metrics, batch reports and figures."""
