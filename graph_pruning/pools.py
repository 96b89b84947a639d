"""Agent pools: the maximum complete graph of N_max role-playing agents per domain, plus a decision agent.

AGP (Adaptive Graph Pruning for Multi-Agent Communication, arXiv 2506.02951; code Resurgamm/AGP) prunes inside a
fixed pool of agents. The role names and their ORDER follow AGP's prompt sets, because AGP's released stage-I
records index agents by position; every description and prompt text below is ours.

| domain  | AGP prompt set            | agents (index order)                                                     |
|---------|---------------------------|--------------------------------------------------------------------------|
| math    | `gsm8k_prompt_set.py`     | Math Solver, Mathematical Analyst, Programming Expert, Inspector         |
| general | `mmlu_prompt_set.py`      | Knowledgeable Expert, Critic, Mathematician, Psychologist, Historian,    |
|         |                           | Doctor, Lawyer, Economist, Programmer ("Wiki Searcher" is commented out) |
| code    | `humaneval_prompt_set.py` | Project Manager, Algorithm Designer, Programming Expert, Test Analyst,    |
|         |                           | Bug Fixer                                                                |

Why this order: each prompt set hands out roles from a module-level `itertools.cycle`, and the stage-I collectors
(`experiments/get_*_dataset.py`) build one `Graph` with exactly as many agents as the cycle has roles (4 / 9 / 5)
before any copy is made, so node `idnumber` i gets the i-th role of the cycle.

What the records mean (read from `AGP/graph/graph.py`, `construct_spatial_connection_for_collecter`, and checked
on the released files by `tests/graph_pruning/test_pools.py`):

- `mask[i] == 1` means agent i was PRUNED; 0 means kept. The collector sets 1 for "masked" nodes, and `train_loss`
  turns it into the keep target with `GT_mask == 0`. In the data most entries are 0 (agents are mostly kept).
  The collector never masks the "crucial" roles Knowledgeable Expert and Critic by score, and indeed general
  positions 0 and 1 are pruned in 1 of 138 records each (only the isolated-node rule can prune them).
- `edge_weight[i][j]` is the edge SOURCE i -> TARGET j (row = source: `edge_weight[out.idnumber][in.idnumber]`,
  and `out.add_successor(in)`). The value is the edge probability sigmoid(min-max-normed Z Z^T) in [0.27, 0.73]; it
  is written for every candidate pair that did not close a cycle when it was visited, whether or not the edge was
  then sampled. Pairs are visited in row-major order, so every strict upper-triangle entry (i < j) is non-zero in
  every record (node j has no out-edges yet when row i is visited) while lower-triangle entries are zero whenever
  the reverse edge had been realised. The diagonal is always 0. Values are symmetric (Z Z^T), so only the zero
  pattern carries direction; AGP's edge target is `edge_weight != 0`.
- Edges are NOT restricted to kept agents: records contain non-zero weights on pairs with a pruned endpoint (the
  matrix is written before pruning). AGP's loss supervises only pairs of kept agents and pushes the rest to 0; we
  do the same (`graph_pruning.train`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from prunekit.graph_pruning.errors import InvalidTopologyError, UnknownDomainError
from prunekit.graph_pruning.task import AnswerFormat

__all__ = ["DOMAINS", "AgentPool", "Role", "get_pool"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Role:
    """One agent of a pool. `description` is what the pruner embeds; `prompt` is the agent's system prompt."""

    name: str
    description: str
    prompt: str
    writes_code: bool = False


@dataclass(frozen=True)
class AgentPool:
    """The agents a domain may use, in AGP's index order, and the decision agent that combines their answers.

    `role_connections` are (source, target) index pairs of roles that naturally talk to each other: the graph
    the pruner's GCN propagates over (made symmetric there). `default_format` is the answer format of a plain
    string task; a pool serves several formats (the general pool answers multiple choice and SQuAD spans).
    """

    domain: str
    roles: tuple[Role, ...]
    decision: Role
    role_connections: tuple[tuple[int, int], ...]
    default_format: AnswerFormat
    default_rounds: int = 1

    def __post_init__(self) -> None:
        n = len(self.roles)
        for u, v in self.role_connections:
            if not (0 <= u < n and 0 <= v < n) or u == v:
                raise ValueError(f"role connection {(u, v)} is not a pair of distinct agents of the {self.domain} pool")

    @property
    def size(self) -> int:
        """N_max: the number of agents in the maximum complete graph."""
        return len(self.roles)

    @property
    def role_names(self) -> tuple[str, ...]:
        return tuple(r.name for r in self.roles)

    def index(self, name: str) -> int:
        """The position of a role by name (case-insensitive)."""
        for i, role in enumerate(self.roles):
            if role.name.lower() == name.lower():
                return i
        raise InvalidTopologyError(f"the {self.domain} pool has no role {name!r}; roles: {list(self.role_names)}")


def _pool_math() -> AgentPool:
    roles = (
        Role(
            "Math Solver",
            "Solves arithmetic word problems step by step with careful calculation and states the final number.",
            "You solve math word problems. Work step by step, keep every calculation explicit, and finish with "
            "the line 'The answer is N' where N is a plain number.",
        ),
        Role(
            "Mathematical Analyst",
            "Turns a word problem into variables and equations, then substitutes the given values to compute it.",
            "You analyse math word problems. Name each unknown quantity with a letter, write the relations "
            "between them as equations, substitute the numbers, and finish with 'The answer is N'.",
        ),
        Role(
            "Programming Expert",
            "Writes a short Python program that computes the answer to a math word problem.",
            "You solve math word problems with Python. Reply with one ```python code block that computes the "
            "result and assigns it to a variable named answer. No text outside the block.",
            writes_code=True,
        ),
        Role(
            "Inspector",
            "Checks other agents' reasoning, equations and arithmetic for mistakes and gives the verified result.",
            "You check solutions to math word problems. Re-do the key calculations, point out any mistake in the "
            "other agents' work, and finish with 'The answer is N' for the result you verified.",
        ),
    )
    decision = Role(
        "Final Judge",
        "Combines the agents' results into one final number.",
        "You read several solutions to the same math problem and reply with the most reliable final number.",
    )
    # analyst -> solver/programmer/inspector, solver <-> programmer, both -> inspector
    connections = ((1, 0), (1, 2), (1, 3), (0, 2), (2, 0), (0, 3), (2, 3), (3, 0))
    return AgentPool("math", roles, decision, connections, default_format="number")


def _pool_general() -> AgentPool:
    def expert(name: str, field: str) -> Role:
        return Role(
            name,
            f"An expert in {field} who answers questions from that point of view.",
            f"You are an expert in {field}. Answer the question using that knowledge; be brief and precise.",
        )

    roles = (
        Role(
            "Knowledgeable Expert",
            "A generalist with broad factual knowledge who identifies the key facts and entities a question needs.",
            "You have broad general knowledge. Identify the key facts the question depends on, then answer "
            "briefly and precisely.",
        ),
        Role(
            "Critic",
            "Reviews other agents' answers, points out errors and unsupported claims, and gives a corrected answer.",
            "You are a careful critic. Check the other agents' answers against the question, name any error, and "
            "give the answer you find best supported.",
        ),
        expert("Mathematician", "mathematics, logic and quantitative reasoning"),
        expert("Psychologist", "psychology, sociology, philosophy and human behaviour"),
        expert("Historian", "history, politics, culture and past events"),
        expert("Doctor", "medicine, biology, anatomy and health"),
        expert("Lawyer", "law, government, regulation and legal procedure"),
        expert("Economist", "economics, finance, business and markets"),
        expert("Programmer", "computer science, engineering and physics"),
    )
    decision = Role(
        "Final Judge",
        "Combines the agents' answers into one final answer.",
        "You read several answers to the same question and reply with the single best-supported answer.",
    )
    # the generalist feeds every specialist; every specialist feeds the critic; a few cross-field links
    connections = tuple((0, i) for i in range(2, 9)) + tuple((i, 1) for i in range(2, 9))
    connections += ((1, 0), (2, 8), (8, 2), (7, 6), (6, 4), (4, 7), (3, 5), (5, 3))
    return AgentPool("general", roles, decision, connections, default_format="choice")


def _pool_code() -> AgentPool:
    roles = (
        Role(
            "Project Manager",
            "Plans the structure of a small Python function: inputs, outputs and the helper pieces it needs.",
            "You plan the implementation of a Python function. In at most fifty words, state the structure the "
            "code should have. Do not write the code.",
        ),
        Role(
            "Algorithm Designer",
            "Chooses the algorithm and describes its steps and edge cases in a few lines of pseudocode.",
            "You design algorithms. In at most fifty words, describe the algorithm the function should use and "
            "its edge cases. Do not write the full code.",
        ),
        Role(
            "Programming Expert",
            "Writes a complete, correct Python implementation of the requested function.",
            "You write Python. Reply with one ```python code block containing the complete function (repeat its "
            "signature; keep its name). No text outside the block.",
            writes_code=True,
        ),
        Role(
            "Test Analyst",
            "Looks for inputs and edge cases where a proposed implementation fails and reports them.",
            "You test code. In at most fifty words, list the edge cases and the failing behaviour you find in the "
            "proposed code or the plan.",
        ),
        Role(
            "Bug Fixer",
            "Repairs a proposed implementation using test feedback and returns the corrected full function.",
            "You fix Python code. Reply with one ```python code block containing the corrected complete function "
            "(repeat its signature; keep its name). No text outside the block.",
            writes_code=True,
        ),
    )
    decision = Role(
        "Final Programmer",
        "Writes the final implementation from the team's notes and code.",
        "You write the final Python implementation from your team's notes and code. Reply with one ```python "
        "code block containing the complete function. No text outside the block.",
        writes_code=True,
    )
    connections = ((0, 1), (1, 2), (0, 2), (2, 3), (3, 4), (2, 4), (1, 3), (4, 3))
    return AgentPool("code", roles, decision, connections, default_format="code", default_rounds=2)


_POOLS = {"math": _pool_math, "general": _pool_general, "code": _pool_code}
DOMAINS: tuple[str, ...] = tuple(_POOLS)


def get_pool(domain: str) -> AgentPool:
    """The agent pool of a domain: `math` (4 agents), `general` (9) or `code` (5).

    >>> get_pool("math").role_names
    ('Math Solver', 'Mathematical Analyst', 'Programming Expert', 'Inspector')
    """
    try:
        return _POOLS[domain]()
    except KeyError:
        raise UnknownDomainError(f"unknown domain {domain!r}; choose one of {list(DOMAINS)}") from None
