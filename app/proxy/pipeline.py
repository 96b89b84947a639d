"""Decide, prune and fail open: what happens to a request's messages before it is forwarded.

Every outcome is one of: `yes` (pruned), `skipped` (switched off, nothing recognised, no question, or the
break-even gate said it would not pay) or `error` (the pruner failed, ran past its time, or is not loaded): on
`skipped` and `error` the upstream gets the request exactly as it came. The pruner runs in a worker thread, one
request at a time (it uses every core it is given), under a cancel token: past `prune_timeout_s`, waiting included,
the request goes on unpruned and the pruner stops at its next batch.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import Any, Literal

from fastapi.concurrency import run_in_threadpool

from prunekit.app.proxy.config import ProxySettings, RequestOptions
from prunekit.app.proxy.extract import Extraction, extract, message_texts
from prunekit.app.proxy.gate import BreakEven
from prunekit.app.proxy.keep import KeepTimeoutError
from prunekit.app.proxy.prune import PassageReport, count_tokens, prune_messages
from prunekit.context_pruner import ContextPruner
from prunekit.decoding.cancel import CancelToken, cancellable
from prunekit.decoding.errors import InvalidRequestError

__all__ = ["Outcome", "Pruning"]

log = logging.getLogger(__name__)

Status = Literal["yes", "skipped", "error"]


@dataclass(frozen=True)
class Outcome:
    status: Status
    # pruned | off | no_context | no_question | context_too_large | context_too_short | costs_more_than_it_saves |
    # pruner_failed | pruner_timeout | pruner_unavailable | keep_timeout
    reason: str
    messages: list[Any] | None = None  # the pruned messages when status is "yes"
    passages: int = 0
    tokens_before: int = 0
    tokens_after: int = 0
    seconds: float = 0.0
    details: list[PassageReport] = field(default_factory=list)

    @property
    def saved(self) -> int:
        return self.tokens_before - self.tokens_after


class Pruning:
    """The proxy's pruning step; `pruner` is None while it loads or when it failed to load."""

    def __init__(self, settings: ProxySettings, pruner: ContextPruner | None, gate: BreakEven) -> None:
        self.settings = settings
        self.pruner = pruner
        self.gate = gate
        self._one_at_a_time = asyncio.Semaphore(1)

    def check(self, messages: Any, options: RequestOptions) -> Extraction | None:
        """The request's context and question (None when pruning is off); a bad request raises a 400 here,
        before anything is forwarded."""
        if not isinstance(messages, list) or not messages:
            raise InvalidRequestError("messages must be a non-empty list of chat messages")
        if len(messages) > self.settings.max_messages:
            raise InvalidRequestError(
                f"{len(messages)} messages; this proxy takes at most {self.settings.max_messages}"
            )
        if options.mode == "off":
            return None
        extraction = extract(messages, options.context)
        if len(extraction.passages) > self.settings.max_passages:
            raise InvalidRequestError(
                f"{len(extraction.passages)} context passages; this proxy prunes at most {self.settings.max_passages} "
                '(send fewer, or switch pruning off with "prunekit": {"prune": false})'
            )
        return extraction

    async def run(self, messages: list[Any], extraction: Extraction | None, options: RequestOptions) -> Outcome:
        if extraction is None:
            return Outcome("skipped", "off")
        if not extraction.passages:
            return Outcome("skipped", "no_context")
        if not extraction.question:
            return Outcome("skipped", "no_question", passages=len(extraction.passages))
        if self.pruner is None:
            return Outcome("error", "pruner_unavailable", passages=len(extraction.passages))
        texts = message_texts(messages)
        bodies = [texts[p.ref][p.start : p.end] for p in extraction.passages]
        if sum(len(b) for b in bodies) > self.settings.max_context_chars:
            return Outcome("skipped", "context_too_large", passages=len(bodies))
        before = count_tokens(self.pruner, bodies)
        decision = self.gate.decide(before)
        if options.mode == "auto" and not decision.prune:
            return Outcome("skipped", decision.reason, passages=len(bodies), tokens_before=before, tokens_after=before)
        return await self._prune(messages, extraction, options, before)

    async def _prune(
        self, messages: list[Any], extraction: Extraction, options: RequestOptions, before: int
    ) -> Outcome:
        token = CancelToken()
        started = time.perf_counter()
        n = len(extraction.passages)
        pruner = self.pruner
        assert pruner is not None

        def work() -> Any:
            with cancellable(token):
                return prune_messages(pruner, messages, extraction, options)

        try:
            async with asyncio.timeout(self.settings.prune_timeout_s), self._one_at_a_time:
                pruned = await run_in_threadpool(work)
        except TimeoutError:
            token.cancel("pruning ran past its time limit")
            log.warning("pruning %d passages ran past %.1f s: forwarding unpruned", n, self.settings.prune_timeout_s)
            return Outcome("error", "pruner_timeout", passages=n, tokens_before=before, tokens_after=before)
        except Exception as exc:  # fail open: whatever went wrong, the request goes on as it came
            reason = "keep_timeout" if isinstance(exc, KeepTimeoutError) else "pruner_failed"
            log.warning("pruning failed (%s: %s): forwarding unpruned", type(exc).__name__, exc)
            return Outcome("error", reason, passages=n, tokens_before=before, tokens_after=before)
        seconds = time.perf_counter() - started
        compression = 1 - pruned.tokens_after / max(pruned.tokens_before, 1)
        self.gate.observe_pruning(pruned.tokens_before, seconds, compression)
        return Outcome("yes", "pruned", pruned.messages, n, pruned.tokens_before, pruned.tokens_after, seconds,
                       pruned.passages)  # fmt: skip
