"""Run a topology of agents as a LangGraph `StateGraph`, then decide the answer.

AGP (arXiv 2506.02951) executes the pruned graph in Kahn topological order, each agent reading its predecessors'
outputs, and ends with a decision node. Here the topology compiles to a LangGraph graph:

- one node per (round, kept agent), named `r{round}_a{agent}`; a pruned agent has no node, so it never runs;
- an agent waits for all its spatial predecessors (a LangGraph join edge); agents with no path between them land
  in the same superstep and LangGraph runs them in parallel threads (the `ChatModel` backends are thread-safe);
- in round r > 0 the agents without spatial predecessors wait for the whole previous round, and every agent reads
  the previous-round messages of its temporal predecessors;
- a `decision` node waits for the last round and produces the answer without an LLM call for numbers, choices and
  spans (extraction + majority vote; token-F1 consensus for spans); for code it runs every candidate against the
  task's visible tests in the sandbox and picks a passing one, and only when none passes asks the decision agent
  (one LLM call) to write a final version from the team's code and the test feedback.

Code execution is off unless `RunConfig.code_execution == "sandbox"`: a request's doctests and a model's code blocks
are attacker-controlled, so they only ever run in the bubblewrap sandbox (`graph_pruning.sandbox`), and with it off
nothing runs at all: code tasks answer with the latest candidate (no test feedback to agents, no test-driven
rewrite), math agents' programs are read as text, and the result says so (`code_executed`, a note).

Every LLM call is recorded as an `AgentTurn` with its token usage and wall time; `AgentRunResult.usage` sums them
(a `decoding.Usage`, the accounting type of every face).
"""

from __future__ import annotations

import functools
import logging
import operator
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal, TypedDict

from langgraph.graph import END, START, StateGraph

from prunekit.decoding.errors import InvalidRequestError
from prunekit.decoding.protocol import ChatModel
from prunekit.decoding.types import GenerationParams, Usage
from prunekit.graph_pruning.answers import (
    clean_span,
    doctest_asserts,
    extract_choice,
    extract_code,
    extract_number,
    format_number,
    majority_vote,
    span_consensus,
)
from prunekit.graph_pruning.errors import InvalidTopologyError
from prunekit.graph_pruning.pools import AgentPool, Role
from prunekit.graph_pruning.sandbox import require_sandbox, run_python, run_tests
from prunekit.graph_pruning.task import AgentTask, AnswerFormat
from prunekit.graph_pruning.topology import Topology

__all__ = [
    "CODE_NOT_EXECUTED_NOTE",
    "DECISION_AGENT",
    "AgentRunResult",
    "AgentTurn",
    "RunConfig",
    "build_agent_graph",
    "run_agents",
]

logger = logging.getLogger(__name__)

DECISION_AGENT = -1  # the `agent` of the decision agent's turn
CODE_EXECUTION_MODES = ("off", "sandbox")
CODE_NOT_EXECUTED_NOTE = (
    "code was not executed: code execution is off (PRUNEKIT_CODE_EXECUTION=sandbox, or code_execution='sandbox', "
    "runs it in the bubblewrap sandbox)"
)

_DEFAULT_MAX_TOKENS: dict[str, int] = {"number": 256, "choice": 128, "span": 32, "code": 384}

_FORMAT_RULES: dict[str, str] = {
    "number": "End with the line 'The answer is N', N a plain number without units.",
    "choice": "Start your reply with the letter of the correct option alone on the first line, then explain briefly.",
    "span": "Reply with the answer only: a short phrase copied exactly from the paragraph, no sentence.",
    "code": "",
}


@dataclass(frozen=True)
class RunConfig:
    """How a run generates. `max_tokens=None` picks a per-format budget (span 32 ... code 384).

    `code_execution`: `off` (default) never runs request- or model-derived code; `sandbox` runs visible tests and
    math programs in the bubblewrap sandbox and raises `SandboxUnavailableError` when it cannot.
    """

    max_tokens: int | None = None
    temperature: float = 0.0
    max_reference_chars: int = 800  # cap on each message an agent reads: bounds prompt growth on dense graphs
    test_timeout: float = 5.0
    decision_llm: bool = True  # code only: let the decision agent write a final version when no candidate passes
    max_concurrency: int | None = None
    code_execution: Literal["off", "sandbox"] = "off"

    def __post_init__(self) -> None:
        if self.code_execution not in CODE_EXECUTION_MODES:
            raise InvalidRequestError(f"code_execution must be 'off' or 'sandbox', got {self.code_execution!r}")

    @property
    def executes(self) -> bool:
        return self.code_execution == "sandbox"

    def params(self, fmt: AnswerFormat) -> GenerationParams:
        return GenerationParams(max_tokens=self.max_tokens or _DEFAULT_MAX_TOKENS[fmt], temperature=self.temperature)


@dataclass(frozen=True)
class AgentTurn:
    """One LLM call of one agent in one round."""

    agent: int
    role: str
    round: int
    text: str
    prompt_tokens: int
    completion_tokens: int
    seconds: float

    @property
    def usage(self) -> Usage:
        return Usage.call(self.prompt_tokens, self.completion_tokens, self.seconds)


@dataclass
class AgentRunResult:
    """What a run produced: the answer, every agent's messages, and what it cost (`usage`, `per_agent`)."""

    answer: str
    task: AgentTask
    topology: Topology
    turns: list[AgentTurn]
    candidates: list[str] = field(default_factory=list)  # the per-agent answers the decision combined
    notes: list[str] = field(default_factory=list)  # decision details (votes, test results)
    seconds: float = 0.0  # wall time of the whole run (the turns' `seconds` overlap where agents run in parallel)
    code_executed: bool = False  # whether any code (tests, math programs) ran, in the sandbox

    @property
    def usage(self) -> Usage:
        """Every turn's tokens, calls and seconds, summed."""
        return sum((t.usage for t in self.turns), Usage())

    @property
    def per_agent(self) -> dict[int, Usage]:
        """Usage per agent index (`DECISION_AGENT` = -1 for the decision agent); agents that never ran are absent."""
        out: dict[int, Usage] = {}
        for t in self.turns:
            out[t.agent] = out.get(t.agent, Usage()) + t.usage
        return out

    def to_dict(self) -> dict[str, Any]:
        """JSON-able summary (for the CLI and the service)."""
        usage = self.usage
        return {
            "answer": self.answer,
            "topology": self.topology.to_dict(),
            "turns": [t.__dict__ for t in self.turns],
            "candidates": self.candidates,
            "notes": self.notes,
            "code_executed": self.code_executed,
            "tokens": usage.total_tokens,
            "prompt_tokens": usage.prompt_tokens,
            "completion_tokens": usage.completion_tokens,
            "llm_calls": usage.calls,
            "seconds": round(self.seconds, 3),
        }


class AgentGraphState(TypedDict, total=False):
    """LangGraph state. `turns` has an add-reducer: parallel agents of one superstep append side by side."""

    task: AgentTask
    turns: Annotated[list[AgentTurn], operator.add]
    answer: str
    candidates: list[str]
    notes: list[str]
    code_executed: bool


# ---------------------------------------------------------------------------------------------- prompts
def _task_block(task: AgentTask) -> str:
    if task.answer_format == "span":
        return f"Paragraph:\n{task.context}\n\nQuestion: {task.prompt}"
    if task.answer_format == "code":
        return f"Complete this Python function:\n```python\n{task.prompt.rstrip()}\n```"
    if task.answer_format == "choice":
        return task.prompt if not task.context else f"{task.context}\n\n{task.prompt}"
    return f"Question: {task.prompt}"


def _clip(text: str, limit: int) -> str:
    text = text.strip()
    return text if len(text) <= limit else text[:limit].rstrip() + " ..."


def _reference(turn: AgentTurn, task: AgentTask, config: RunConfig) -> str:
    """How an agent sees another agent's message; for code, with the result of the visible tests."""
    body = _clip(turn.text, config.max_reference_chars)
    if task.answer_format == "code" and config.executes:
        code = extract_code(turn.text)
        tests = _visible_tests(task)
        if code is not None and tests:
            passed, feedback = _cached_tests(_complete_code(code, task), tuple(tests), config.test_timeout)
            body += f"\n(visible tests passed: {passed}/{len(tests)}" + (f"; {feedback[0]}" if feedback else "") + ")"
    return f"{turn.role}: {body}"


def agent_messages(
    role: Role,
    task: AgentTask,
    spatial: Sequence[AgentTurn],
    temporal: Sequence[AgentTurn],
    config: RunConfig,
) -> list[dict[str, str]]:
    """The chat messages of one agent turn: role prompt + format rule, the task, what it reads from others."""
    system = role.prompt
    rule = _FORMAT_RULES[task.answer_format]
    if rule and not (role.writes_code and task.answer_format == "number" and config.executes):
        system += " " + rule  # a programmer whose code will not run must state the number itself
    user = _task_block(task)
    if spatial:
        user += "\n\nAnswers of other agents in this round:\n" + "\n".join(
            "- " + _reference(t, task, config) for t in spatial
        )
    if temporal:
        user += "\n\nAnswers from the previous round:\n" + "\n".join(
            "- " + _reference(t, task, config) for t in temporal
        )
    if spatial or temporal:
        user += "\n\nUse them critically and give your own answer."
    return [{"role": "system", "content": system}, {"role": "user", "content": user}]


# ---------------------------------------------------------------------------------------------- code helpers
@functools.lru_cache(maxsize=512)
def _cached_tests(code: str, tests: tuple[str, ...], timeout: float) -> tuple[int, list[str]]:
    """Every successor of a coder reads the same code: test it once (lru_cache is thread-safe)."""
    return run_tests(code, tests, timeout=timeout)


def _visible_tests(task: AgentTask) -> list[str]:
    return list(task.visible_tests) or doctest_asserts(task.prompt)


def _complete_code(code: str, task: AgentTask) -> str:
    """Make a candidate runnable: add the prompt when only a body was written, and the prompt's imports."""
    entry = task.entry_point
    if entry and f"def {entry}" not in code:
        indented = all(not ln or ln.startswith((" ", "\t")) for ln in code.splitlines())
        code = task.prompt.rstrip() + "\n" + (code if indented else "\n".join("    " + ln for ln in code.splitlines()))
    imports = [ln for ln in task.prompt.splitlines() if ln.startswith(("import ", "from ")) and ln not in code]
    return "\n".join([*imports, code]) if imports else code


def _prose(text: str) -> str:
    """The text outside fenced code blocks: where an agent states its answer when its code is not run."""
    return re.sub(r"```.*?(?:```|$)", " ", text, flags=re.DOTALL)


def _run_math_code(code: str, timeout: float) -> float | None:
    """Execute a math agent's program and read its `answer` variable."""
    script = code + "\n\ntry:\n    print('ANSWER=', answer)\nexcept NameError:\n    pass\n"
    result = run_python(script, timeout=timeout)
    for line in reversed(result.stdout.splitlines()):
        if line.startswith("ANSWER="):
            return extract_number(line[len("ANSWER=") :])
    return None


# ---------------------------------------------------------------------------------------------- decision
def _final_turns(turns: Sequence[AgentTurn], topology: Topology) -> list[AgentTurn]:
    """Each kept agent's last-round turn, in topological order (later agents read more)."""
    last = topology.rounds - 1
    by_agent = {t.agent: t for t in turns if t.round == last and t.agent != DECISION_AGENT}
    return [by_agent[a] for a in topology.order() if a in by_agent]


def _decide(
    state: AgentGraphState,
    pool: AgentPool,
    topology: Topology,
    model: ChatModel,
    config: RunConfig,
) -> dict[str, Any]:
    task = state["task"]
    turns = state.get("turns", [])
    final = _final_turns(turns, topology)
    fmt = task.answer_format
    notes: list[str] = []
    if fmt == "number":
        return _decide_number(final, pool, config)
    if fmt == "choice":
        letters = "".join(task.choices) or "ABCDE"
        picks = [extract_choice(t.text, letters) for t in final]
        vote = majority_vote(picks)
        notes.append("votes: " + ", ".join(p or "-" for p in picks))
        return {"answer": vote or "", "candidates": [p or "" for p in picks], "notes": notes}
    if fmt == "span":
        spans = [clean_span(t.text, task.context, question=task.prompt) for t in final]
        return {"answer": span_consensus(spans, task.context), "candidates": spans, "notes": notes}
    return _decide_code(task, turns, topology, model, pool, config)


def _decide_number(final: Sequence[AgentTurn], pool: AgentPool, config: RunConfig) -> dict[str, Any]:
    """Majority vote over the agents' numbers; a program's number is what it computes (sandbox) or, with code
    execution off, what the agent wrote outside its code (none: it abstains)."""
    values: list[float | None] = []
    code_seen = False
    for t in final:
        code = extract_code(t.text) if pool.roles[t.agent].writes_code or "```" in t.text else None
        code_seen = code_seen or code is not None
        if code and config.executes:
            value = _run_math_code(code, config.test_timeout)
            values.append(value if value is not None else extract_number(t.text))
        else:
            values.append(extract_number(_prose(t.text) if code else t.text))
    vote = majority_vote(values)
    notes = ["votes: " + ", ".join("-" if v is None else format_number(v) for v in values)]
    if code_seen and not config.executes:
        notes.append(CODE_NOT_EXECUTED_NOTE)
    return {
        "answer": "" if vote is None else format_number(vote),
        "candidates": [str(v) for v in values],
        "notes": notes,
        "code_executed": code_seen and config.executes,
    }


def _decide_code(
    task: AgentTask,
    turns: Sequence[AgentTurn],
    topology: Topology,
    model: ChatModel,
    pool: AgentPool,
    config: RunConfig,
) -> dict[str, Any]:
    """The best candidate on the visible tests (sandbox), else the decision agent's version; with code execution
    off nothing is tested: the latest candidate wins, and the decision agent writes only when no one wrote code."""
    tests = _visible_tests(task) if config.executes else []
    position = {a: i for i, a in enumerate(topology.order())}
    ordered = sorted((t for t in turns if t.agent != DECISION_AGENT), key=lambda t: (t.round, position[t.agent]))
    scored: list[tuple[int, int, str]] = []  # (passed, order, code)
    notes: list[str] = []
    for i, t in enumerate(ordered):
        code = extract_code(t.text)
        if code is None:
            continue
        code = _complete_code(code, task)
        passed, feedback = _cached_tests(code, tuple(tests), config.test_timeout) if tests else (0, [])
        scored.append((passed, i, code))
        if tests:
            notes.append(
                f"{t.role} (round {t.round}): {passed}/{len(tests)} visible tests"
                + (f"; {feedback[0]}" if feedback else "")
            )
    if not config.executes:
        notes.append(CODE_NOT_EXECUTED_NOTE)
    best = max(scored, default=None)
    update: dict[str, Any] = {"candidates": [c for _, _, c in scored], "notes": notes}
    update["code_executed"] = bool(tests and scored)
    if best is not None and (not tests or best[0] == len(tests)):
        # a candidate passes every visible test (or there are none to check: the latest code wins)
        update["answer"] = best[2]
        return update
    if config.decision_llm:
        # no candidate passes every visible test (or there is no code at all): one call to the decision agent
        turn, code = _decision_code(task, turns, topology, model, pool, config, "\n".join(notes) if tests else "")
        update["turns"] = [turn]
        if code is not None:
            passed = _cached_tests(code, tuple(tests), config.test_timeout)[0] if tests else 0
            if tests:
                notes.append(f"{pool.decision.name}: {passed}/{len(tests)} visible tests")
                update["code_executed"] = True
            # the decision agent's version wins ties: it saw every candidate and the feedback
            if best is None or passed >= best[0]:
                best = (passed, len(ordered), code)
            update["candidates"].append(code)
    update["answer"] = best[2] if best is not None else ""
    return update


def _decision_code(
    task: AgentTask,
    turns: Sequence[AgentTurn],
    topology: Topology,
    model: ChatModel,
    pool: AgentPool,
    config: RunConfig,
    feedback: str,
) -> tuple[AgentTurn, str | None]:
    """One call to the decision agent with the team's work and the test feedback; its turn and completed code."""
    role = pool.decision
    team = "\n".join(
        "- " + _clip(f"{t.role}: {t.text}", config.max_reference_chars) for t in _final_turns(turns, topology)
    )
    feedback = feedback or "no code was proposed"
    user = f"{_task_block(task)}\n\nYour team's work:\n{team}\n\nVisible test results:\n{feedback}"
    messages = [{"role": "system", "content": role.prompt}, {"role": "user", "content": user}]
    start = time.perf_counter()
    result = model.chat(messages, config.params("code"))
    turn = AgentTurn(
        DECISION_AGENT,
        role.name,
        topology.rounds,
        result.text,
        result.usage.prompt_tokens,
        result.usage.completion_tokens,
        time.perf_counter() - start,
    )
    code = extract_code(result.text)
    return turn, (_complete_code(code, task) if code is not None else None)


# ---------------------------------------------------------------------------------------------- graph
def _node_name(round_: int, agent: int) -> str:
    return f"r{round_}_a{agent}"


def _agent_node(agent: int, round_: int, pool: AgentPool, topology: Topology, model: ChatModel, config: RunConfig):
    role = pool.roles[agent]
    spatial_from = set(topology.predecessors(agent))
    temporal_from = set(topology.temporal_predecessors(agent)) if round_ > 0 else set()
    order = {a: i for i, a in enumerate(topology.order())}

    def run(state: AgentGraphState) -> dict[str, Any]:
        task = state["task"]
        turns = state.get("turns", [])
        spatial = sorted(
            (t for t in turns if t.round == round_ and t.agent in spatial_from), key=lambda t: order[t.agent]
        )
        temporal = sorted(
            (t for t in turns if t.round == round_ - 1 and t.agent in temporal_from), key=lambda t: order[t.agent]
        )
        messages = agent_messages(role, task, spatial, temporal, config)
        start = time.perf_counter()
        result = model.chat(messages, config.params(task.answer_format))
        seconds = time.perf_counter() - start
        logger.debug(
            "agent %d (%s) round %d: %d+%d tokens",
            agent,
            role.name,
            round_,
            result.usage.prompt_tokens,
            result.usage.completion_tokens,
        )
        turn = AgentTurn(
            agent, role.name, round_, result.text, result.usage.prompt_tokens, result.usage.completion_tokens, seconds
        )
        return {"turns": [turn]}

    run.__name__ = _node_name(round_, agent)
    return run


def build_agent_graph(
    pool: AgentPool,
    topology: Topology,
    model: ChatModel,
    config: RunConfig | None = None,
) -> StateGraph:
    """The (uncompiled) LangGraph `StateGraph` that runs `topology` over `pool` with `model`.

    Invoke its compiled form with `{"task": AgentTask(...), "turns": []}`; the final state holds `answer`,
    `turns`, `candidates` and `notes`.
    """
    if topology.n_agents != pool.size:
        raise InvalidTopologyError(
            f"the topology is over {topology.n_agents} agents but the {pool.domain} pool has {pool.size}"
        )
    config = config or RunConfig()
    graph = StateGraph(AgentGraphState)
    kept = topology.kept
    for r in range(topology.rounds):
        for a in kept:
            graph.add_node(_node_name(r, a), _agent_node(a, r, pool, topology, model, config))
    graph.add_node("decision", lambda state: _decide(state, pool, topology, model, config))

    for r in range(topology.rounds):
        for a in kept:
            preds = [_node_name(r, p) for p in topology.predecessors(a)]
            if not preds:
                # a source of round r starts the round: after START, or after the whole previous round
                preds = [START] if r == 0 else [_node_name(r - 1, b) for b in kept]
            graph.add_edge(preds if len(preds) > 1 else preds[0], _node_name(r, a))
    last = [_node_name(topology.rounds - 1, a) for a in kept]
    graph.add_edge(last if len(last) > 1 else last[0], "decision")
    graph.add_edge("decision", END)
    return graph


def run_agents(
    task: AgentTask | str,
    pool: AgentPool,
    topology: Topology,
    model: ChatModel,
    config: RunConfig | None = None,
) -> AgentRunResult:
    """Run the kept agents of `topology` on `task` and decide the answer.

    A plain string task gets the pool's default answer format (`math`: number, `general`: choice, `code`: code).
    With `config.code_execution == "sandbox"` and no usable sandbox it raises `SandboxUnavailableError` first.
    """
    if isinstance(task, str):
        task = AgentTask(task, pool.default_format)
    config = config or RunConfig()
    if config.executes and task.answer_format in ("code", "number"):
        require_sandbox()  # fail before any LLM call, not in the decision after the whole team has spoken
    compiled = build_agent_graph(pool, topology, model, config).compile()
    run_config: dict[str, Any] = {"recursion_limit": topology.rounds * (len(topology.kept) + 1) + 10}
    if config.max_concurrency:
        run_config["max_concurrency"] = config.max_concurrency
    start = time.perf_counter()
    state = compiled.invoke({"task": task, "turns": []}, run_config)
    return AgentRunResult(
        answer=state.get("answer", ""),
        task=task,
        topology=topology,
        turns=list(state.get("turns", [])),
        candidates=list(state.get("candidates", [])),
        notes=list(state.get("notes", [])),
        seconds=time.perf_counter() - start,
        code_executed=bool(state.get("code_executed", False)),
    )
