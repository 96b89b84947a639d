"""OpenAI's `logprobs` on the local backends: each answer token's log-probability and the best alternatives at its
step (`TokenLogprob`), handed out with the streamed chunk that shows the token's text.

What is reported: the log-probabilities of the distribution the token was drawn from, i.e. the model's logits after
the penalties, the logits processors (a format's mask) and the temperature, renormalised (log-softmax), and after
top-p's cut (`sampling.sample_with_logprobs`): vLLM's "processed" log-probs. OpenAI reports the raw model's; the two
agree for plain greedy decoding, the common case, and the processed ones are the honest account of what was sampled
once a format or a penalty has moved the distribution (a masked token has probability 0, not the model's). Greedy
decoding reports the distribution at temperature 1 (its argmax is the token taken).

Text and tokens do not line up one to one: a token may end inside a UTF-8 character (its text appears with the next
token) and text that may begin a stop sequence is held back (`stops.StopMatcher`). `LogprobAligner` keeps each
token's character span in the decoded text and releases a token with the chunk that shows the end of its span, so
every generated token appears exactly once, in order. A stop sequence cuts the answer: tokens whose text starts
before the cut are reported (the one that runs into the stop sequence included), those wholly inside or after it are
not, as their text is not part of the answer; `usage.completion_tokens` still counts them (they were generated).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable

import numpy as np

from prunekit.decoding.types import TokenLogprob

__all__ = ["LogprobAligner", "TokenDescriber", "token_logprob"]

# token id -> (its text, its exact bytes): how a backend names a token in a `TokenLogprob`
TokenDescriber = Callable[[int], tuple[str, tuple[int, ...]]]


def token_logprob(logprobs: np.ndarray, token: int, top: int, describe: TokenDescriber) -> TokenLogprob:
    """The entry of `token`, drawn from the step's log-probabilities `(V,)`, with the `top` best tokens, best first.

    Tokens the step could not take (log-probability -inf: masked by a format, cut by top-p) are never listed among
    the alternatives, so `top` may hold fewer than asked.

    >>> lp = np.log(np.array([0.1, 0.6, 0.3]))
    >>> entry = token_logprob(lp, 2, 2, lambda t: ("abc"[t], (97 + t,)))
    >>> entry.token, round(entry.logprob, 4), [(t, round(p, 4)) for t, p, _ in entry.top]
    ('c', -1.204, [('b', -0.5108), ('c', -1.204)])
    """
    text, data = describe(token)
    alternatives: list[tuple[str, float, tuple[int, ...]]] = []
    if top > 0:
        k = min(top, logprobs.shape[0])
        best = np.argpartition(logprobs, -k)[-k:]  # (k,), unordered
        for t in best[np.argsort(-logprobs[best], kind="stable")].tolist():
            if np.isfinite(logprobs[t]):
                name, raw = describe(t)
                alternatives.append((name, float(logprobs[t]), raw))
    return TokenLogprob(token=text, logprob=float(logprobs[token]), bytes=data, top=tuple(alternatives))


class LogprobAligner:
    """Hands each generated token's `TokenLogprob` out with the chunk whose text completes the token's text.

    Feed it every generated token with the text that token added to the decoded answer (before stop matching; ""
    for a token that ends inside a character), and every chunk's text before it is sent.

    >>> al = LogprobAligner()
    >>> a, b, c = (TokenLogprob(t, -1.0, tuple(t.encode())) for t in ("Par", "is", "\\n"))
    >>> al.token(a, "Par"); al.token(b, "is")
    >>> [x.token for x in al.release("Pa")], [x.token for x in al.release("ris")]
    ([], ['Par', 'is'])
    >>> al.token(c, "\\n")  # the stop sequence "\\n": its token is not reported
    >>> al.release("", stopped=True)
    ()
    """

    def __init__(self) -> None:
        self._pending: deque[tuple[int, int, TokenLogprob]] = deque()  # (start, end) characters of each token
        self._decoded = 0  # characters the tokens so far added
        self._shown = 0  # characters sent in chunks so far

    def token(self, item: TokenLogprob, text: str) -> None:
        """Record a generated token and the text it added."""
        start = self._decoded
        self._decoded += len(text)
        self._pending.append((start, self._decoded, item))

    def release(self, text: str, *, stopped: bool = False, end: bool = False) -> tuple[TokenLogprob, ...]:
        """The entries to send with a chunk of `text`: those whose text is now all shown (a token that added no text
        goes with the character it begins). `stopped`: a stop sequence cut the answer right after `text`; the tokens
        that start before the cut are released and the rest dropped. `end`: the answer is over; all are released."""
        self._shown += len(text)
        out: list[TokenLogprob] = []
        pending = self._pending
        while pending and (end or (pending[0][1] <= self._shown and pending[0][0] < self._shown)):
            out.append(pending.popleft()[2])
        if stopped:
            while pending and pending[0][0] < self._shown:
                out.append(pending.popleft()[2])
            pending.clear()
        return tuple(out)
