"""OpenAI's chat `logprobs` object from the local backends' `TokenLogprob`s (a pure formatter, no I/O).

The same shape serves a whole answer (`choices[i].logprobs`) and one streamed chunk (the entries of the tokens that
chunk's text carries). What the numbers mean (the processed distribution the token was drawn from) is documented
in `decoding.backends.token_logprobs`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from prunekit.decoding.types import TokenLogprob

__all__ = ["UNLIKELY_LOGPROB", "openai_logprobs"]

# OpenAI's stand-in for a token with no chance ("-9999.0 is used to signify that the token is very unlikely");
# JSON has no -Infinity, and a masked token's log-probability is exactly that.
UNLIKELY_LOGPROB = -9999.0


def openai_logprobs(items: Sequence[TokenLogprob | Mapping[str, Any]]) -> dict[str, Any]:
    """`{"content": [...], "refusal": None}`: one entry per token with its `top_logprobs` alternatives.

    `items` are `TokenLogprob`s or their `dataclasses.asdict` form (how the chat graphs' stream events carry them).

    >>> entry = TokenLogprob("Hi", -0.25, (72, 105), top=(("Hi", -0.25, (72, 105)), ("Hey", -1.5, (72, 101, 121))))
    >>> openai_logprobs([entry])["content"][0]["top_logprobs"][1]
    {'token': 'Hey', 'logprob': -1.5, 'bytes': [72, 101, 121]}
    """
    return {"content": [_content_entry(item) for item in items], "refusal": None}


def _content_entry(item: TokenLogprob | Mapping[str, Any]) -> dict[str, Any]:
    if isinstance(item, TokenLogprob):
        token, logprob, data, top = item.token, item.logprob, item.bytes, item.top
    else:
        token, logprob, data, top = item["token"], item["logprob"], item["bytes"], item.get("top", ())
    return {
        **_token(token, logprob, data),
        "top_logprobs": [_token(alt_token, alt_logprob, alt_bytes) for alt_token, alt_logprob, alt_bytes in top],
    }


def _token(token: str, logprob: float, data: Sequence[int]) -> dict[str, Any]:
    value = float(logprob)
    return {"token": token, "logprob": value if math.isfinite(value) else UNLIKELY_LOGPROB, "bytes": list(data)}
