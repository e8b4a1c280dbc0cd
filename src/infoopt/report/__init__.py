"""Turning the summary tables into the paper's tables and figures (used by the notebooks)."""
