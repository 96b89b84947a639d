"""What a multi-agent run is asked to do: the task text and the shape of its answer.

One `AgentTask` travels through a whole run (AGP, arXiv 2506.02951, passes a `{"task": ...}` dict; we type it).
The answer format decides how agents are told to answer and how the decision node combines their answers:

- `number`: math word problems (GSM8K, MultiArith, SVAMP); extraction of the final number, majority vote.
- `choice`: multiple choice (AQuA, MMLU-style `Option A: ...`); extraction of a letter, majority vote.
- `span`: extractive QA (SQuAD): question + paragraph -> a short span; consensus by token F1.
- `code`: HumanEval-style function completion; candidates run against the visible tests in a sandbox.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

from prunekit.graph_pruning.errors import InvalidTaskError

__all__ = ["ANSWER_FORMATS", "AgentTask", "AnswerFormat"]

AnswerFormat = Literal["number", "choice", "span", "code"]
ANSWER_FORMATS: tuple[str, ...] = get_args(AnswerFormat)


@dataclass(frozen=True)
class AgentTask:
    """A task for the agents.

    `prompt` is the question (or the function signature and docstring for code); `context` the paragraph of an
    extractive question; `choices` the option letters of a multiple-choice question; `visible_tests` assert
    statements the code candidates may be checked against (never the hidden evaluation tests).

    >>> AgentTask("What is 2 + 3?").text
    'What is 2 + 3?'
    """

    prompt: str
    answer_format: AnswerFormat = "number"
    context: str = ""
    choices: tuple[str, ...] = ()
    visible_tests: tuple[str, ...] = ()
    entry_point: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.prompt, str) or not self.prompt.strip():
            raise InvalidTaskError("the task prompt is empty: pass the question (or the function to complete)")
        if self.answer_format not in ANSWER_FORMATS:
            raise InvalidTaskError(f"answer_format must be one of {list(ANSWER_FORMATS)}, got {self.answer_format!r}")
        if self.answer_format == "span" and not self.context.strip():
            raise InvalidTaskError("a `span` task needs the paragraph to answer from in `context`")
        object.__setattr__(self, "choices", tuple(self.choices))
        object.__setattr__(self, "visible_tests", tuple(self.visible_tests))

    @property
    def text(self) -> str:
        """The task as one string: what the pruner embeds and what stage-I records store as `task`."""
        return f"{self.prompt}\n\n{self.context}" if self.context else self.prompt
