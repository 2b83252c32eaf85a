"""Scoring a trained model: ``retrieval`` (top-k identification among all distinct test
segments, with the controls) and ``report`` (report.json, tables, figures)."""
