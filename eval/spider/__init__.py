"""Spider evaluation: execution match (test-suite-sql-eval's rules), exact-set match, hardness, data loading."""

from __future__ import annotations

from eval.spider.data import SpiderExample, SpiderSplit, database_path, load_spider, load_tables
from eval.spider.exact_match import exact_match
from eval.spider.exec_match import ExecEvaluator, ExecMatch, GoldExecutionError, exec_match, results_match
from eval.spider.hardness import HARDNESS_LEVELS, count_components, hardness

__all__ = [
    "HARDNESS_LEVELS",
    "ExecEvaluator",
    "ExecMatch",
    "GoldExecutionError",
    "SpiderExample",
    "SpiderSplit",
    "count_components",
    "database_path",
    "exact_match",
    "exec_match",
    "hardness",
    "load_spider",
    "load_tables",
    "results_match",
]
