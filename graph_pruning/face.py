"""The AGP face: solve one request's task for a domain. Build the task, let the domain's pruner pick the team, run
the team, and report what the pruning saved. The CLI (`prunekit agents`), the HTTP route (`POST /v1/agents`) and the
router's agents node all answer through `solve`.

Code execution (visible tests, math programs) is off unless the caller passes `code_execution="sandbox"`
(`PRUNEKIT_CODE_EXECUTION`, `--code-execution`): tasks come from requests and code from models, so it only ever runs
in the bubblewrap sandbox.

>>> make_task("general", "Which is right?", choices=("A", "B")).answer_format
'choice'
>>> make_task("poetry", "Write one.")
Traceback (most recent call last):
    ...
prunekit.graph_pruning.errors.UnknownDomainError: domain must be math, general or code; got 'poetry'
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any, Literal

from prunekit.decoding.protocol import ChatModel
from prunekit.graph_pruning.errors import InvalidTaskError, UnknownDomainError
from prunekit.graph_pruning.execute import RunConfig, run_agents
from prunekit.graph_pruning.pools import get_pool
from prunekit.graph_pruning.task import AgentTask
from prunekit.graph_pruning.topology import render_text

if TYPE_CHECKING:
    from prunekit.graph_pruning.model import GraphPruner

__all__ = ["make_task", "pruner_for", "solve"]


def make_task(domain: str, question: str, context: str = "", choices: tuple[str, ...] = ()) -> AgentTask:
    """The task for a domain: math answers a number, general a choice (with `choices`) or a span (with
    `context`), code completes the function given as the question."""
    if domain == "math":
        return AgentTask(question, "number")
    if domain == "code":
        return AgentTask(question, "code")
    if domain == "general":
        if choices:
            return AgentTask(question, "choice", choices=choices)
        if context:
            return AgentTask(question, "span", context=context)
        raise InvalidTaskError(
            "the general pool answers multiple-choice (give choices) or from a paragraph (give context)"
        )
    raise UnknownDomainError(f"domain must be math, general or code; got {domain!r}")


_PRUNERS: dict[str, GraphPruner] = {}
_PRUNERS_LOCK = threading.Lock()


def pruner_for(domain: str) -> GraphPruner:
    """The shipped graph pruner of `domain`, loaded once per process (the check is under the lock, so two first
    requests at once do not both load it)."""
    from prunekit.graph_pruning.model import GraphPruner  # torch: only once a pruner is needed

    with _PRUNERS_LOCK:
        if domain not in _PRUNERS:
            _PRUNERS[domain] = GraphPruner.load(domain)
        return _PRUNERS[domain]


def solve(
    model: ChatModel, task: AgentTask, domain: str, *, code_execution: Literal["off", "sandbox"] = "off"
) -> dict[str, Any]:
    """Run the team the pruner chose; the result as plain data (`AgentRunResult.to_dict`) with the pruning savings
    (`agents_total`, `agents_kept`, `agent_calls_avoided`), the chosen `graph` in text, `domain` and
    `code_execution`.

    `code_execution="sandbox"` raises `SandboxUnavailableError` (a 503 with how to install bubblewrap) when the
    sandbox cannot run; it never runs the code any other way."""
    pool = get_pool(domain)
    topology = pruner_for(domain).choose(task)
    result = run_agents(task, pool, topology, model, RunConfig(code_execution=code_execution))
    out = result.to_dict()
    out.update(
        domain=domain,
        code_execution=code_execution,
        agents_total=len(pool.roles),
        agents_kept=len(topology.kept),
        agent_calls_avoided=len(topology.pruned) * topology.rounds,  # a pruned agent never runs
        graph=render_text(topology, pool.role_names),
    )
    return out
