"""Evals: what "better" means for an experience, scored over cases, compared between runs."""
