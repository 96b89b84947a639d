"""Spider evaluation: execution match (test-suite-sql-eval's rules), exact-set match, hardness, data loading,
and the runner that puts methods side by side (`evaluate_spider`)."""

from __future__ import annotations

from prunekit.eval.spider.data import SPLIT_FILES, SpiderExample, SpiderSplit, database_path, load_spider, load_tables
from prunekit.eval.spider.exact_match import exact_match
from prunekit.eval.spider.exec_match import ExecEvaluator, ExecMatch, GoldExecutionError, exec_match, results_match
from prunekit.eval.spider.hardness import HARDNESS_LEVELS, count_components, hardness
from prunekit.eval.spider.run import METHODS, evaluate_examples, evaluate_spider, metrics_from_items, stratified_sample

__all__ = [
    "HARDNESS_LEVELS",
    "METHODS",
    "SPLIT_FILES",
    "ExecEvaluator",
    "ExecMatch",
    "GoldExecutionError",
    "SpiderExample",
    "SpiderSplit",
    "count_components",
    "database_path",
    "evaluate_examples",
    "evaluate_spider",
    "exact_match",
    "exec_match",
    "hardness",
    "load_spider",
    "load_tables",
    "metrics_from_items",
    "results_match",
    "stratified_sample",
]
