"""`AgentConfig`: the knobs of the NL2SQL agent (`nl2sql.agent`), checked once when built."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from prunekit.decoding.errors import InvalidRequestError
from prunekit.nl2sql import prompts

__all__ = ["CANDIDATE_SOURCES", "AgentConfig"]

# where a candidate query can come from: the first direct query, the decomposition's final query, and a
# second direct query prompted with the demonstrations re-ranked by the draft's skeleton
CANDIDATE_SOURCES = ("draft", "decompose", "direct_skeleton")


@dataclass(frozen=True)
class AgentConfig:
    """The agent's knobs. Defaults were chosen on a held-out slice of Spider *train* (never dev).

    >>> AgentConfig(k_demos=1).candidates
    ('draft', 'decompose', 'direct_skeleton')
    """

    k_demos: int = 3  # demonstrations in each prompt
    skeleton_weight: float = 0.5  # weight of the draft's skeleton when re-ranking demonstrations
    link: bool = True  # prompt with the linked tables only (False: the whole schema)
    top_k_tables: int = 4
    top_k_columns: int = 8
    n_examples: int = 2  # example values per column in the schema text
    step_mode: Literal["joint", "per_step"] = "joint"
    candidates: tuple[str, ...] = CANDIDATE_SOURCES
    max_steps: int = 6  # sub-questions kept from the decomposition
    max_repairs: int = 2  # repair tries after the chosen candidate fails or returns nothing
    repair_empty: bool = True  # an empty result is treated as a failure worth one repair
    max_tokens_sql: int = 120  # a Spider query is rarely longer; a rambling model is cut early
    max_tokens_steps: int = 256
    row_cap: int = 50  # rows kept in the answer
    answer_with_llm: bool = False  # one more call for the sentence; the template needs none
    exec_timeout_s: float = 5.0
    budget: prompts.PromptBudget = field(default_factory=prompts.PromptBudget)

    def __post_init__(self) -> None:
        if self.k_demos < 0 or self.max_repairs < 0 or self.max_steps < 1:
            raise InvalidRequestError("k_demos and max_repairs must be >= 0 and max_steps >= 1")
        if self.step_mode not in ("joint", "per_step"):
            raise InvalidRequestError(f"step_mode must be 'joint' or 'per_step', got {self.step_mode!r}")
        unknown = set(self.candidates) - set(CANDIDATE_SOURCES)
        if unknown or not self.candidates:
            raise InvalidRequestError(
                f"candidates must be a non-empty subset of draft, decompose, direct_skeleton; got {self.candidates}"
            )
