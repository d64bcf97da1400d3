"""Evaluation: the paper's metrics on held-out frames, its published tables and the report's figures.
May import ``gan``, ``pose``, ``footage`` and ``provenance``; of the package only the top-level commands import it."""
