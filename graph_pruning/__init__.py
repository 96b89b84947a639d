"""graph_pruning: task-adaptive multi-agent teams (AGP, Adaptive Graph Pruning for Multi-Agent Communication,
arXiv 2506.02951; code Resurgamm/AGP).

A pruner (`GraphPruner`) reads the task and picks which agents of a domain's pool run (hard pruning) and which
communication edges they use (soft pruning); the chosen `Topology` runs as a LangGraph graph (`run_agents`) in which
pruned agents never make a call. `solve` does all of it for one request (`make_task` builds the task of a domain,
`pruner_for` keeps each domain's shipped pruner loaded once) and reports what the pruning saved.

>>> from prunekit.decoding import ChatResult, Usage
>>> from prunekit.graph_pruning import GraphPruner, get_pool, run_agents
>>> class Solver:  # a scripted stand-in for any ChatModel: load_embedded(), OpenAIModel(...)
...     name = "solver"
...     def chat(self, messages, params=None):
...         return ChatResult("17 * 3 = 51. The answer is 51.", "stop", Usage(prompt_tokens=80, completion_tokens=12))
>>> pool = get_pool("math")
>>> topo = GraphPruner.load("math").choose("What is 17 * 3?")  # the shipped pruner picks the team
>>> 1 <= len(topo.kept) <= len(pool.role_names)
True
>>> run_agents("What is 17 * 3?", pool, topo, Solver()).answer
'51'

Training code (`graph_pruning.stage1`, `graph_pruning.train`) is not imported here: serving never loads it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from prunekit.graph_pruning.data import BENCHMARKS, BenchmarkItem, heldout, load_benchmark, score_answer
from prunekit.graph_pruning.draw import draw_topology
from prunekit.graph_pruning.errors import (
    InvalidRecordError,
    InvalidTaskError,
    InvalidTopologyError,
    LeakageError,
    PrunerNotFoundError,
    UnknownBenchmarkError,
    UnknownDomainError,
)
from prunekit.graph_pruning.execute import (
    AgentRunResult,
    AgentTurn,
    RunConfig,
    build_agent_graph,
    run_agents,
)
from prunekit.graph_pruning.face import make_task, pruner_for, solve
from prunekit.graph_pruning.pools import DOMAINS, AgentPool, Role, get_pool
from prunekit.graph_pruning.records import StageRecord, load_records, save_records
from prunekit.graph_pruning.saved import check_pruner_dir
from prunekit.graph_pruning.task import AgentTask, AnswerFormat
from prunekit.graph_pruning.topology import Topology, chain, complete, random_topology, render_text, single

if TYPE_CHECKING:
    from prunekit.graph_pruning.model import GraphPruner, PrunerConfig

__all__ = [
    "BENCHMARKS",
    "DOMAINS",
    "AgentPool",
    "AgentRunResult",
    "AgentTask",
    "AgentTurn",
    "AnswerFormat",
    "BenchmarkItem",
    "GraphPruner",
    "InvalidRecordError",
    "InvalidTaskError",
    "InvalidTopologyError",
    "LeakageError",
    "PrunerConfig",
    "PrunerNotFoundError",
    "Role",
    "RunConfig",
    "StageRecord",
    "Topology",
    "UnknownBenchmarkError",
    "UnknownDomainError",
    "build_agent_graph",
    "chain",
    "check_pruner_dir",
    "complete",
    "draw_topology",
    "get_pool",
    "heldout",
    "load_benchmark",
    "load_records",
    "make_task",
    "pruner_for",
    "random_topology",
    "render_text",
    "run_agents",
    "save_records",
    "score_answer",
    "single",
    "solve",
]

_LAZY = {"GraphPruner": "prunekit.graph_pruning.model", "PrunerConfig": "prunekit.graph_pruning.model"}


def __getattr__(name: str) -> Any:
    # the pruner imports torch: load it on first use so `import graph_pruning` stays cheap for plain runs
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'graph_pruning' has no attribute {name!r}")
