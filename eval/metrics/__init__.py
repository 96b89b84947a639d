"""Scoring functions shared by the evaluation tasks."""

from prunekit.eval.metrics.qa import exact_match, max_over_golds, normalize_answer, token_f1

__all__ = ["exact_match", "max_over_golds", "normalize_answer", "token_f1"]
