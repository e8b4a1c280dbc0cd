"""Replication of *Information-Theoretic Perspectives on Optimizers* (Tan & Huang, 2025)."""

__version__ = "0.1.0"
