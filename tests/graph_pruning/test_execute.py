"""Running topologies as LangGraph graphs: pruned agents never run, parallel branches, messages, decisions."""

from __future__ import annotations

import threading

import pytest

from graph_pruning.errors import InvalidTopologyError
from graph_pruning.execute import DECISION_AGENT, RunConfig, build_agent_graph, run_agents
from graph_pruning.pools import get_pool
from graph_pruning.task import AgentTask
from graph_pruning.topology import Topology, chain, complete, single
from tests.graph_pruning.fakes import RecordingModel


def _role_of(system: str, pool) -> int:
    hits = [i for i, r in enumerate(pool.roles) if system.startswith(r.prompt)]
    assert len(hits) == 1, system
    return hits[0]


def test_pruned_agents_make_zero_calls() -> None:
    pool = get_pool("general")
    topology = Topology.build(pool.size, [0, 3, 7], [(0, 3), (0, 7)])
    model = RecordingModel("B\nBecause.")
    task = AgentTask("Which is right?\nOption A: x\nOption B: y\nOption C: z\nOption D: w", "choice")
    result = run_agents(task, pool, topology, model)
    called = sorted(_role_of(system, pool) for system in model.roles_called())
    assert called == [0, 3, 7]
    assert set(result.per_agent) == {0, 3, 7}
    for pruned in topology.pruned:
        assert all(pool.roles[pruned].prompt not in system for system in model.roles_called())
    assert result.llm_calls == 3 and result.answer == "B"
    assert result.tokens == sum(t.prompt_tokens + t.completion_tokens for t in result.turns) > 0


def test_independent_agents_run_in_parallel() -> None:
    pool = get_pool("math")
    barrier = threading.Barrier(2, timeout=20)  # breaks unless both agents are inside chat() at the same time

    def reply(system: str, user: str) -> str:
        barrier.wait()
        return "The answer is 5"

    result = run_agents("What is 2 + 3?", pool, Topology.build(pool.size, [0, 3]), RecordingModel(reply))
    assert result.answer == "5" and result.llm_calls == 2


def test_agents_read_their_predecessors_only() -> None:
    pool = get_pool("math")
    model = RecordingModel(lambda system, user: f"MSG-{_role_of(system, pool)} The answer is 1")
    run_agents("What is 0 + 1?", pool, chain(pool.size, [0, 1, 3]), model)
    users = {_role_of(s, pool): u for s, u, _ in model.calls}
    assert "Answers of other agents" not in users[0]
    assert "MSG-0" in users[1] and "MSG-1" not in users[1]
    assert "MSG-1" in users[3] and "MSG-0" not in users[3]  # a chain passes only the direct predecessor


def test_temporal_edges_carry_the_previous_round() -> None:
    pool = get_pool("math")
    model = RecordingModel("The answer is 3")
    result = run_agents("1 + 2?", pool, complete(pool.size, [0, 1], rounds=2, temporal=True), model)
    assert result.llm_calls == 4
    rounds = sorted(t.round for t in result.turns)
    assert rounds == [0, 0, 1, 1]
    later = [u for _, u, _ in model.calls if "previous round" in u]
    assert len(later) == 2


def test_math_vote_runs_the_programmers_code() -> None:
    pool = get_pool("math")

    def reply(system: str, user: str) -> str:
        role = _role_of(system, pool)
        return {0: "The answer is 42", 2: "```python\nanswer = 6 * 7\n```", 3: "I get 41. The answer is 41"}[role]

    result = run_agents("6 * 7?", pool, Topology.build(pool.size, [0, 2, 3]), RecordingModel(reply))
    assert result.answer == "42"
    assert result.candidates == ["42.0", "42.0", "41.0"]


def test_span_decision_and_budget() -> None:
    pool = get_pool("general")
    context = "Super Bowl 50 was won by the Denver Broncos, who beat the Carolina Panthers."
    task = AgentTask("Who won Super Bowl 50?", "span", context=context)
    replies = iter(["Answer: Denver Broncos", "The Denver Broncos.", "Carolina Panthers"])
    lock = threading.Lock()

    def reply(system: str, user: str) -> str:
        with lock:
            return next(replies)

    model = RecordingModel(reply)
    result = run_agents(task, pool, chain(pool.size, [0, 1, 2]), model)
    assert result.answer in {"Denver Broncos", "The Denver Broncos"}
    assert all(params.max_tokens == 32 for _, _, params in model.calls)
    assert context in model.calls[0][1]


CODE_PROMPT = 'def add(a: int, b: int) -> int:\n    """Add two numbers.\n    >>> add(1, 2)\n    3\n'
CODE_TASK = AgentTask(
    CODE_PROMPT + '    >>> add(2, 2)\n    4\n    """\n',
    "code",
    entry_point="add",
)


def test_code_decision_picks_a_passing_candidate_without_an_llm_call() -> None:
    pool = get_pool("code")

    def reply(system: str, user: str) -> str:
        role = _role_of(system, pool)
        if role == 2:
            return "```python\ndef add(a, b):\n    return a - b\n```"
        if role == 4:
            return "```python\ndef add(a, b):\n    return a + b\n```"
        return "Use the + operator."

    model = RecordingModel(reply)
    result = run_agents(CODE_TASK, pool, chain(pool.size, [0, 2, 4]), model, RunConfig(test_timeout=10))
    assert "a + b" in result.answer and result.llm_calls == 3
    assert any("2/2 visible tests" in n for n in result.notes)
    bug_fixer_prompt = next(u for s, u, _ in model.calls if _role_of(s, pool) == 4)
    assert "visible tests passed: 0/2" in bug_fixer_prompt  # the fixer sees the test feedback


def test_code_decision_agent_writes_when_no_candidate_passes() -> None:
    pool = get_pool("code")

    def reply(system: str, user: str) -> str:
        if system.startswith(pool.decision.prompt):
            return "```python\ndef add(a, b):\n    return a + b\n```"
        return "```python\ndef add(a, b):\n    return 0\n```"

    result = run_agents(CODE_TASK, pool, single(pool.size, 2), RecordingModel(reply), RunConfig(test_timeout=10))
    assert "a + b" in result.answer
    assert result.llm_calls == 2 and DECISION_AGENT in result.per_agent


def test_mismatched_topology_is_rejected() -> None:
    with pytest.raises(InvalidTopologyError, match="pool has 4"):
        build_agent_graph(get_pool("math"), single(9), RecordingModel())


def test_full_debate_on_the_largest_pool() -> None:
    pool = get_pool("general")
    model = RecordingModel("A")
    task = AgentTask("Pick one.\nOption A: a\nOption B: b", "choice")
    result = run_agents(task, pool, complete(pool.size, rounds=3, temporal=True), model)
    assert result.llm_calls == 27 and result.answer == "A"
    assert result.to_dict()["llm_calls"] == 27
