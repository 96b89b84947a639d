"""Plain data shared by every LLM backend: messages, generation parameters, results."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, TypedDict

from prunekit.decoding.errors import InvalidRequestError

__all__ = [
    "ChatChunk",
    "ChatResult",
    "FinishReason",
    "GenerationParams",
    "Message",
    "TokenLogprob",
    "Usage",
    "normalize_messages",
]

Role = Literal["system", "user", "assistant"]
FinishReason = Literal["stop", "length"]
_ROLES: frozenset[str] = frozenset({"system", "user", "assistant"})
FORMAT_METHODS = ("decog", "decog_pruned", "hard_mask")
MAX_TOP_LOGPROBS = 20  # OpenAI's own cap
UPSTREAM_FIELDS = frozenset({"response_format", "tools", "tool_choice", "parallel_tool_calls"})
SEED_MIN, SEED_MAX = -(2**63), 2**63 - 1  # OpenAI's seed is an int64


class Message(TypedDict):
    """One chat turn, in the shape chat templates and OpenAI's API both use."""

    role: Role
    content: str


def normalize_messages(messages: Iterable[Mapping[str, Any]]) -> list[Message]:
    """Check a conversation and return it as a fresh list of `Message` dicts.

    >>> normalize_messages([{"role": "user", "content": "hi"}])
    [{'role': 'user', 'content': 'hi'}]
    """
    out: list[Message] = []
    for i, m in enumerate(messages):
        role, content = m.get("role"), m.get("content")
        if role not in _ROLES:
            raise InvalidRequestError(f"messages[{i}].role must be one of {sorted(_ROLES)}, got {role!r}")
        if not isinstance(content, str):
            raise InvalidRequestError(f"messages[{i}].content must be a string, got {type(content).__name__}")
        out.append({"role": role, "content": content})
    if not out:
        raise InvalidRequestError("messages must contain at least one message")
    return out


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


@dataclass(frozen=True)
class GenerationParams:
    """How to sample. `temperature=0` means greedy decoding (the default: small models ramble when sampled).

    `frequency_penalty` / `presence_penalty` (OpenAI's, in [-2, 2]) lower the logits of tokens the answer has
    already used, per use / once (`decoding.backends.penalties`); remote backends pass them on. `repetition_penalty`
    (CTRL's, as vLLM and llama.cpp name it, in (0, 2]) divides the positive logits and multiplies the negative ones
    of the tokens in the answer's last 64: the loop guard that chat turns on by default (`app`'s
    `PRUNEKIT_REPETITION_PENALTY`). None (the default here) and 1.0 leave the logits alone; remote backends send
    it only when set (None: the server's own default; OpenAI's API has no such field). `logits_processors` are
    transformers-style callables `(input_ids, scores) -> scores`, applied at every step by the local backends
    after the penalties; remote backends reject them. `format` is a format spec (see
    `decoding.decog.formats`, e.g. `pivot:<free>The answer is <int>` or `json:{"answer": "string"}`)
    that the local backends enforce with `format_method`: `decog` (HMM lookahead), `decog_pruned`
    (the same with hidden-state pruning) or `hard_mask` (the DFA alone, no lookahead). `grammar` is an llguidance
    grammar (`decoding.structured`: a JSON schema or tool calls), enforced by a hard mask; with both set,
    `format` is the same constraint for Deco-G, used when its automaton compiles within budget, and `grammar` the
    fallback (`decoding.decog.guided.FormatGuide.resolve`). `logprobs` asks the local backends for each
    answer token's log-probability, `top_logprobs` (0 to 20) for that many most likely alternatives at each step.
    `upstream_fields` are OpenAI request fields (`UPSTREAM_FIELDS`: response_format, tools, ...) that a remote
    backend forwards as they are, for its server to enforce; the local backends enforce `format` / `grammar`
    instead and refuse them.
    """

    max_tokens: int = 256
    temperature: float = 0.0
    top_p: float = 1.0
    stop: tuple[str, ...] = ()
    seed: int | None = None
    frequency_penalty: float = 0.0
    presence_penalty: float = 0.0
    repetition_penalty: float | None = None
    logits_processors: tuple[Any, ...] = field(default=(), compare=False)
    format: str | None = None
    format_method: str = "decog"
    grammar: str | None = None
    logprobs: bool = False
    top_logprobs: int = 0
    upstream_fields: Mapping[str, Any] | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        # Params arrive from JSON (the service, graph state): wrong types get the same clear error as wrong values.
        if not _is_int(self.max_tokens) or self.max_tokens < 1:
            raise InvalidRequestError(f"max_tokens must be a positive integer, got {self.max_tokens!r}")
        if not _is_number(self.temperature) or not 0.0 <= self.temperature <= 2.0:
            raise InvalidRequestError(f"temperature must be a number in [0, 2], got {self.temperature!r}")
        if not _is_number(self.top_p) or not 0.0 < self.top_p <= 1.0:
            raise InvalidRequestError(f"top_p must be a number in (0, 1], got {self.top_p!r}")
        for name in ("frequency_penalty", "presence_penalty"):
            value = getattr(self, name)
            if not _is_number(value) or not -2.0 <= value <= 2.0:
                raise InvalidRequestError(f"{name} must be a number in [-2, 2], got {value!r}")
        rep = self.repetition_penalty
        if rep is not None and not (_is_number(rep) and 0.0 < rep <= 2.0):
            raise InvalidRequestError(f"repetition_penalty must be a number in (0, 2] (1 turns it off), got {rep!r}")
        if self.seed is not None and not (_is_int(self.seed) and SEED_MIN <= self.seed <= SEED_MAX):
            raise InvalidRequestError(f"seed must be a 64-bit signed integer, got {self.seed!r}")
        stop = self.stop
        if stop is None:
            stop = ()
        elif isinstance(stop, str):  # a lone string is a common slip: treat it as one stop sequence
            stop = (stop,)
        elif not isinstance(stop, list | tuple):
            raise InvalidRequestError(f"stop must be a string or a list of strings, got {type(stop).__name__}")
        object.__setattr__(self, "stop", tuple(stop))
        if any(not isinstance(s, str) or not s for s in self.stop):
            raise InvalidRequestError("stop sequences must be non-empty strings")
        if self.format is not None and not (isinstance(self.format, str) and self.format.strip()):
            raise InvalidRequestError("format must be a non-empty format spec string")
        if self.format_method not in FORMAT_METHODS:
            raise InvalidRequestError(
                f"format_method must be one of {list(FORMAT_METHODS)}, got {self.format_method!r}"
            )
        if self.grammar is not None and not (isinstance(self.grammar, str) and self.grammar.strip()):
            raise InvalidRequestError("grammar must be a non-empty llguidance grammar string")
        if not isinstance(self.logprobs, bool):
            raise InvalidRequestError(f"logprobs must be true or false, got {self.logprobs!r}")
        top = self.top_logprobs
        if not (_is_int(top) and 0 <= top <= MAX_TOP_LOGPROBS):
            raise InvalidRequestError(f"top_logprobs must be an integer in [0, {MAX_TOP_LOGPROBS}], got {top!r}")
        extra = self.upstream_fields
        if extra is not None and not (isinstance(extra, Mapping) and set(extra) <= UPSTREAM_FIELDS):
            raise InvalidRequestError(f"upstream_fields may hold only {sorted(UPSTREAM_FIELDS)}")
        if len(self.stop) > 4:
            raise InvalidRequestError(f"at most 4 stop sequences are allowed, got {len(self.stop)}")

    @property
    def greedy(self) -> bool:
        return self.temperature == 0.0

    @property
    def penalized(self) -> bool:
        """True when a frequency, presence or repetition penalty applies."""
        return self.frequency_penalty != 0.0 or self.presence_penalty != 0.0 or self.repeats_penalized

    @property
    def repeats_penalized(self) -> bool:
        """True when the repetition penalty changes logits (None and 1.0 do not)."""
        return self.repetition_penalty is not None and self.repetition_penalty != 1.0


@dataclass(frozen=True)
class Usage:
    """What LLM work cost: the one accounting type of every face (a chat answer, a SQL agent's run, an agent team,
    one agent of it, a routed request). Sums with `+` and `sum(..., Usage())`.

    `calls` counts the LLM calls behind the tokens (a backend's single answer leaves it 0; whoever aggregates
    calls counts them with `Usage.call`); `seconds` is their wall time where the aggregator keeps it.

    >>> total = sum([Usage.call(100, 20), Usage.call(50, 5)], Usage())
    >>> total.calls, total.total_tokens, total.as_openai()
    (2, 175, {'prompt_tokens': 150, 'completion_tokens': 25, 'total_tokens': 175})
    """

    prompt_tokens: int = 0
    completion_tokens: int = 0
    calls: int = 0
    seconds: float = 0.0

    @classmethod
    def call(cls, prompt_tokens: int, completion_tokens: int, seconds: float = 0.0) -> Usage:
        """The usage of one LLM call."""
        return cls(prompt_tokens, completion_tokens, 1, seconds)

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            self.prompt_tokens + other.prompt_tokens,
            self.completion_tokens + other.completion_tokens,
            self.calls + other.calls,
            self.seconds + other.seconds,
        )

    def as_openai(self) -> dict[str, int]:
        """The OpenAI `usage` object: prompt, completion and total tokens."""
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.total_tokens,
        }


@dataclass(frozen=True)
class TokenLogprob:
    """One answer token's log-probability under the model (what OpenAI's `logprobs.content[i]` holds): its text,
    its UTF-8 bytes (a token may end inside a character), and the `top` most likely tokens at that step as
    (text, log-probability, bytes), best first."""

    token: str
    logprob: float
    bytes: tuple[int, ...]
    top: tuple[tuple[str, float, tuple[int, ...]], ...] = ()


@dataclass(frozen=True)
class ChatResult:
    text: str
    finish_reason: FinishReason
    usage: Usage
    model: str = ""
    logprobs: tuple[TokenLogprob, ...] | None = None  # set when the request asked for them
    tool_calls: tuple[dict[str, Any], ...] | None = None  # OpenAI's, from a remote server that called tools


@dataclass(frozen=True)
class ChatChunk:
    """A streamed piece of an answer. The last chunk carries `finish_reason` and `usage`; `logprobs`, when asked
    for, the log-probabilities of the tokens whose text this chunk carries."""

    text: str
    finish_reason: FinishReason | None = None
    usage: Usage | None = None
    logprobs: tuple[TokenLogprob, ...] | None = None
    tool_calls: tuple[dict[str, Any], ...] | None = None  # whole calls (OpenAI's shape), on the last chunk


def collect(chunks: Sequence[ChatChunk] | Iterable[ChatChunk], model: str = "") -> ChatResult:
    """Join a stream into one result (how streaming backends implement `chat`)."""
    parts: list[str] = []
    finish: FinishReason = "stop"
    usage = Usage()
    logprobs: list[TokenLogprob] | None = None
    tool_calls: tuple[dict[str, Any], ...] | None = None
    for chunk in chunks:
        parts.append(chunk.text)
        if chunk.tool_calls is not None:
            tool_calls = chunk.tool_calls
        if chunk.logprobs is not None:
            logprobs = [*(logprobs or []), *chunk.logprobs]
        if chunk.finish_reason is not None:
            finish = chunk.finish_reason
        if chunk.usage is not None:
            usage = chunk.usage
    return ChatResult(
        text="".join(parts),
        finish_reason=finish,
        usage=usage,
        model=model,
        logprobs=None if logprobs is None else tuple(logprobs),
        tool_calls=tool_calls,
    )
