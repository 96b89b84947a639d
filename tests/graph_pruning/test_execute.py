"""Running topologies as LangGraph graphs: pruned agents never run, parallel branches, messages, decisions; code
runs only with `code_execution="sandbox"` (in bubblewrap), never by default."""

from __future__ import annotations

import os
import threading

import pytest

from prunekit.decoding.errors import InvalidRequestError
from prunekit.decoding.types import Usage
from prunekit.graph_pruning.errors import InvalidTopologyError, SandboxUnavailableError
from prunekit.graph_pruning.execute import (
    CODE_NOT_EXECUTED_NOTE,
    DECISION_AGENT,
    RunConfig,
    build_agent_graph,
    run_agents,
)
from prunekit.graph_pruning.pools import get_pool
from prunekit.graph_pruning.task import AgentTask
from prunekit.graph_pruning.topology import Topology, chain, complete, single
from tests.graph_pruning.fakes import RecordingModel
from tests.graph_pruning.test_sandbox import need_sandbox

SANDBOX = RunConfig(code_execution="sandbox", test_timeout=10)


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
    assert result.usage.calls == 3 and result.answer == "B"
    assert result.usage.total_tokens == sum(t.prompt_tokens + t.completion_tokens for t in result.turns) > 0
    assert all(u.calls == 1 for u in result.per_agent.values())  # one round: one call per kept agent
    per_agent = sum(result.per_agent.values(), Usage())
    assert (per_agent.calls, per_agent.total_tokens) == (result.usage.calls, result.usage.total_tokens)
    summary = result.to_dict()
    assert (summary["llm_calls"], summary["tokens"]) == (3, result.usage.total_tokens)
    assert (summary["prompt_tokens"], summary["completion_tokens"]) == (30, result.usage.completion_tokens)


def test_independent_agents_run_in_parallel() -> None:
    pool = get_pool("math")
    barrier = threading.Barrier(2, timeout=20)  # breaks unless both agents are inside chat() at the same time

    def reply(system: str, user: str) -> str:
        barrier.wait()
        return "The answer is 5"

    result = run_agents("What is 2 + 3?", pool, Topology.build(pool.size, [0, 3]), RecordingModel(reply))
    assert result.answer == "5" and result.usage.calls == 2


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
    assert result.usage.calls == 4
    rounds = sorted(t.round for t in result.turns)
    assert rounds == [0, 0, 1, 1]
    later = [u for _, u, _ in model.calls if "previous round" in u]
    assert len(later) == 2


def test_math_vote_runs_the_programmers_code_in_the_sandbox() -> None:
    need_sandbox()
    pool = get_pool("math")

    def reply(system: str, user: str) -> str:
        role = _role_of(system, pool)
        return {0: "The answer is 42", 2: "```python\nanswer = 6 * 7\n```", 3: "I get 41. The answer is 41"}[role]

    result = run_agents("6 * 7?", pool, Topology.build(pool.size, [0, 2, 3]), RecordingModel(reply), SANDBOX)
    assert result.answer == "42" and result.code_executed
    assert result.candidates == ["42.0", "42.0", "41.0"]


def test_math_code_is_not_run_by_default(tmp_path, monkeypatch) -> None:
    """With code execution off a programmer's block is text: its number comes from what it wrote outside the code."""
    monkeypatch.chdir(tmp_path)
    pool = get_pool("math")

    def reply(system: str, user: str) -> str:
        role = _role_of(system, pool)
        program = "```python\nimport os\nos.system('id > pwned.txt')\nanswer = 41\n```"
        return {0: "The answer is 42", 2: program + "\nThe answer is 42", 3: "I get 41. The answer is 41"}[role]

    model = RecordingModel(reply)
    result = run_agents("6 * 7?", pool, Topology.build(pool.size, [0, 2, 3]), model)
    assert result.answer == "42" and result.candidates == ["42.0", "42.0", "41.0"]
    assert not result.code_executed and CODE_NOT_EXECUTED_NOTE in result.notes
    assert os.listdir(tmp_path) == []
    programmer = next(s for s, _, _ in model.calls if _role_of(s, pool) == 2)
    assert "The answer is N" in programmer  # asked to state the number, since its code will not run


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
# The request: its doctests become visible tests and its import lines are prepended to every candidate.
PAYLOAD_TASK = AgentTask(
    "import os\n"
    "def add(a: int, b: int) -> int:\n"
    '    """Add two numbers.\n'
    "    >>> add(1, 2)\n"
    "    3\n"
    "    >>> __import__('os').system('id > out.txt')\n"
    "    0\n"
    '    """\n',
    "code",
    entry_point="add",
)
GOOD_ADD = "```python\ndef add(a, b):\n    return a + b\n```"


def test_code_decision_picks_a_passing_candidate_without_an_llm_call() -> None:
    pool = get_pool("code")

    def reply(system: str, user: str) -> str:
        role = _role_of(system, pool)
        if role == 2:
            return "```python\ndef add(a, b):\n    return a - b\n```"
        if role == 4:
            return "```python\ndef add(a, b):\n    return a + b\n```"
        return "Use the + operator."

    need_sandbox()
    model = RecordingModel(reply)
    result = run_agents(CODE_TASK, pool, chain(pool.size, [0, 2, 4]), model, SANDBOX)
    assert "a + b" in result.answer and result.usage.calls == 3 and result.code_executed
    assert any("2/2 visible tests" in n for n in result.notes)
    bug_fixer_prompt = next(u for s, u, _ in model.calls if _role_of(s, pool) == 4)
    assert "visible tests passed: 0/2" in bug_fixer_prompt  # the fixer sees the test feedback


def test_code_decision_agent_writes_when_no_candidate_passes() -> None:
    pool = get_pool("code")

    def reply(system: str, user: str) -> str:
        if system.startswith(pool.decision.prompt):
            return "```python\ndef add(a, b):\n    return a + b\n```"
        return "```python\ndef add(a, b):\n    return 0\n```"

    need_sandbox()
    result = run_agents(CODE_TASK, pool, single(pool.size, 2), RecordingModel(reply), SANDBOX)
    assert "a + b" in result.answer
    assert result.usage.calls == 2 and DECISION_AGENT in result.per_agent


def test_code_is_not_run_by_default(tmp_path, monkeypatch) -> None:
    """Off (the default): the latest candidate wins, no test runs, no feedback, no rewrite, and the result says so."""
    monkeypatch.chdir(tmp_path)
    pool = get_pool("code")

    def reply(system: str, user: str) -> str:
        if _role_of(system, pool) == 2:
            return "```python\ndef add(a, b):\n    return a - b\n```"
        return GOOD_ADD

    model = RecordingModel(reply)
    result = run_agents(PAYLOAD_TASK, pool, chain(pool.size, [0, 2, 4]), model)
    assert "a + b" in result.answer and result.answer.startswith("import os")  # the latest, completed as text
    assert result.usage.calls == 3 and DECISION_AGENT not in result.per_agent
    assert not result.code_executed and CODE_NOT_EXECUTED_NOTE in result.notes
    assert result.to_dict()["code_executed"] is False
    assert all("visible tests" not in user for _, user, _ in model.calls)
    assert os.listdir(tmp_path) == []  # the doctest's `id > out.txt` never ran


def test_the_decision_agent_writes_without_feedback_when_off_and_no_code() -> None:
    pool = get_pool("code")

    def reply(system: str, user: str) -> str:
        return GOOD_ADD if system.startswith(pool.decision.prompt) else "Use the + operator."

    model = RecordingModel(reply)
    result = run_agents(CODE_TASK, pool, single(pool.size, 0), model)
    assert "a + b" in result.answer and DECISION_AGENT in result.per_agent and not result.code_executed
    assert "no code was proposed" in model.calls[-1][1]


def test_the_payload_runs_only_inside_the_sandbox(tmp_path, monkeypatch) -> None:
    need_sandbox()
    monkeypatch.chdir(tmp_path)
    pool = get_pool("code")
    result = run_agents(PAYLOAD_TASK, pool, single(pool.size, 4), RecordingModel(GOOD_ADD), SANDBOX)
    assert result.code_executed and any("2/2 visible tests" in n for n in result.notes)  # it ran, in there
    assert os.listdir(tmp_path) == []


def test_sandbox_mode_without_bwrap_fails_before_any_llm_call(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # fault injection: no bwrap on PATH
    model, pool = RecordingModel(GOOD_ADD), get_pool("code")
    with pytest.raises(SandboxUnavailableError, match="apt-get install bubblewrap"):
        run_agents(PAYLOAD_TASK, pool, single(pool.size, 4), model, SANDBOX)
    assert model.calls == []


def test_unknown_code_execution_mode_is_rejected() -> None:
    with pytest.raises(InvalidRequestError, match="code_execution"):
        RunConfig(code_execution="host")  # type: ignore[arg-type]


def test_mismatched_topology_is_rejected() -> None:
    with pytest.raises(InvalidTopologyError, match="pool has 4"):
        build_agent_graph(get_pool("math"), single(9), RecordingModel())


def test_full_debate_on_the_largest_pool() -> None:
    pool = get_pool("general")
    model = RecordingModel("A")
    task = AgentTask("Pick one.\nOption A: a\nOption B: b", "choice")
    result = run_agents(task, pool, complete(pool.size, rounds=3, temporal=True), model)
    assert result.usage.calls == 27 and result.answer == "A"
    assert result.to_dict()["llm_calls"] == 27
