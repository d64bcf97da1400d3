"""Evaluation: the paper's metrics on held-out frames, its published tables and the report's figures.
May import gan, pose, footage and the top level's provenance and arguments; only cli, doctor and prefetch import it."""
