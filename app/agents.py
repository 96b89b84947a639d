"""The AGP multi-agent face shared by the CLI and the service: build a task, let the pruner pick the
team for it, run the team, and report what the pruning saved.

Code execution (visible tests, math programs) is off unless the caller passes `code_execution="sandbox"`
(`PRUNEKIT_CODE_EXECUTION`, `--code-execution`): tasks come from requests and code from models, so it only ever runs
in the bubblewrap sandbox."""

from __future__ import annotations

import threading
from typing import Any, Literal

from prunekit.decoding import ChatModel, InvalidRequestError
from prunekit.graph_pruning import AgentTask, RunConfig, get_pool, render_text, run_agents

__all__ = ["make_task", "pruner_for", "solve"]

_LOCK = threading.Lock()


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
        raise InvalidRequestError(
            "the general pool answers multiple-choice (give choices) or from a paragraph (give context)"
        )
    raise InvalidRequestError(f"domain must be math, general or code; got {domain!r}")


_PRUNERS: dict[str, Any] = {}


def pruner_for(domain: str) -> Any:
    """The shipped graph pruner of `domain`, loaded once (the check is under the lock, so two first requests at
    once do not both load it)."""
    from prunekit.graph_pruning import GraphPruner

    with _LOCK:
        if domain not in _PRUNERS:
            _PRUNERS[domain] = GraphPruner.load(domain)
        return _PRUNERS[domain]


def solve(
    model: ChatModel, task: AgentTask, domain: str, *, code_execution: Literal["off", "sandbox"] = "off"
) -> dict[str, Any]:
    """Run the team the pruner chose; the result as plain data, with the pruning savings and whether code ran.

    `code_execution="sandbox"` raises `SandboxUnavailableError` (a 400 with how to install bubblewrap) when the
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
