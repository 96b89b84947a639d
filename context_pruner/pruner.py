"""`ContextPruner`: prune retrieved contexts to the sentences that answer a question, and rerank them.

Provence (Chirkova et al., ICLR 2025, arXiv 2501.16214): one encoder pass over `[CLS] question [SEP] context [SEP]`
gives a keep probability for every context token and a rerank score for the passage; token decisions are then
rounded to whole sentences, so the output is always made of complete sentences of the input.

Sentence rounding (as Provence's released code): a token is kept when `p_keep > threshold`; a sentence is kept
when the share of its tokens that are kept is above the same `threshold`. The paper's text mentions 0.5 for the
second step; the released code, which produced the published figures, reuses the threshold, and one knob is easier
to tune. At threshold 0.1 a sentence survives if more than 10 % of its tokens look relevant (conservative
pruning); at 0.5 most of them must (aggressive).

Example:
    >>> pruner = ContextPruner()  # the shipped weights, offline
    >>> contexts = ["The Eiffel Tower is in Paris, France.", "Bananas are rich in potassium. They grow in the tropics."]
    >>> results = pruner.prune("Where is the Eiffel Tower?", contexts, threshold=0.5)
    >>> [r.pruned_text for r in results]
    ['The Eiffel Tower is in Paris, France.', '']
    >>> [r.compression for r in results]  # share of each context's tokens removed
    [0.0, 1.0]
"""

from __future__ import annotations

import dataclasses
import logging
import math
import threading
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from prunekit.context_pruner.encoding import Block, block_windows, build_block, collate
from prunekit.context_pruner.errors import (
    BatchTooLargeError,
    InvalidContextError,
    InvalidOptionError,
    InvalidQuestionError,
    ShapeMismatchError,
)
from prunekit.context_pruner.model import WEIGHTS_DIR, PrunerModel, check_weights, load_pretrained
from prunekit.context_pruner.precision import Precision, apply_precision, resolve_precision
from prunekit.context_pruner.sentences import Span, join_spans, split_sentences, token_sentence_ids
from prunekit.decoding.cancel import check_cancelled

__all__ = ["FIRST_SENTENCE", "ContextPruner", "PrunedContext", "ScoredContext", "default_pruner", "load_pruner"]

logger = logging.getLogger(__name__)

FIRST_SENTENCE = "first_sentence"  # `titles=` value: each context's first sentence is its title (Provence)


@dataclass(frozen=True)
class PrunedContext:
    """The result for one context. Token counts are the encoder's tokens of the context (title excluded)."""

    pruned_text: str  # kept sentences cut verbatim from the context, gaps joined by one space
    kept_sentences: tuple[int, ...]  # indices into sentence_spans
    sentence_spans: tuple[Span, ...]  # [start, end) character offsets of every sentence in the context
    sentence_probs: tuple[float, ...]  # mean token keep probability of each sentence
    rerank_score: float  # higher = more relevant to the question (comparable across contexts of one question)
    tokens_before: int
    tokens_after: int
    index: int  # position of the context in the caller's list
    rank: int  # 0 = highest rerank score among the contexts of its question
    title: str | None = None  # the title passed in `titles=` (not part of pruned_text)
    title_kept: bool = False  # whether the title belongs with the kept text (see `always_select_title`)

    @property
    def compression(self) -> float:
        """Share of the context's tokens removed (0 for an empty context)."""
        return 1.0 - self.tokens_after / self.tokens_before if self.tokens_before else 0.0

    @property
    def kept_spans(self) -> list[Span]:
        return [self.sentence_spans[i] for i in self.kept_sentences]

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["compression"] = self.compression
        return d


@dataclass(frozen=True)
class ScoredContext:
    """Model outputs for one context, before any threshold is applied."""

    text: str
    index: int
    spans: list[Span]
    sentence_ids: np.ndarray  # (N,) sentence of each context token
    p_keep: np.ndarray  # (N,) keep probability of each context token
    title: str | None
    title_p: np.ndarray  # (n_title * blocks,) keep probabilities of the title tokens
    rerank: float


def _check_text(value: Any, what: str, max_chars: int, error: type[Exception]) -> str:
    if not isinstance(value, str):
        raise error(f"{what} must be a string, got {type(value).__name__}")
    if len(value) > max_chars:
        raise error(f"{what} has {len(value)} characters; the limit is {max_chars}: split it or raise the limit")
    return value


class ContextPruner:
    """Loads a trained pruner (by default the shipped `context_pruner/weights/`) and prunes batches of contexts.

    `precision`: `auto` (the default) runs the encoder in bf16 on CPUs with native bf16 (AMX, AVX512-BF16) and
    with int8 matrix products on ONNX Runtime elsewhere, the fastest faithful path on each
    (`context_pruner.precision`); `bf16`, `int8` or `fp32` force one. `self.precision` says which one runs; a
    `model` passed in is converted in place (bf16, fp32; pass a copy to keep the original) or exported (int8).
    `num_threads` sets torch's intra-op threads (process-wide) when given. The limits bound one `prune` call.
    """

    def __init__(
        self,
        weights: str | Path | None = None,
        *,
        precision: Precision = "auto",
        num_threads: int | None = None,
        max_contexts: int = 4096,
        max_context_chars: int = 100_000,
        max_question_chars: int = 4_000,
        model: PrunerModel | None = None,
        tokenizer: Any = None,
    ) -> None:
        resolved = resolve_precision(precision)  # a bad name fails before the weights load
        if model is None:
            model, tokenizer = load_pretrained(weights or WEIGHTS_DIR)
        elif tokenizer is None:
            raise ValueError("pass the tokenizer together with the model")
        if num_threads is not None:
            torch.set_num_threads(num_threads)
        self.cfg = model.cfg
        self.tokenizer = tokenizer
        self.model = apply_precision(model, resolved)
        self.precision = resolved
        self.max_contexts = max_contexts
        self.max_context_chars = max_context_chars
        self.max_question_chars = max_question_chars
        self._cls, self._sep = tokenizer.cls_token_id, tokenizer.sep_token_id
        self._pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0

    # ---- input shapes -------------------------------------------------------------------------------------------

    def _normalise(
        self, question: Any, contexts: Any, titles: Any
    ) -> tuple[bool, list[str], list[list[str]], list[list[str | None]] | None]:
        """Accept one question with its contexts, or a list of questions each with its list of contexts."""
        if question is None:
            raise InvalidQuestionError("question is missing: pass the question the contexts should answer")
        single = isinstance(question, str)
        questions = [question] if single else question
        if not isinstance(questions, Sequence) or isinstance(questions, bytes):
            raise InvalidQuestionError(f"question must be a string or a list of strings, got {type(question).__name__}")
        if isinstance(contexts, str):
            if not single:
                raise ShapeMismatchError("with a list of questions, pass one list of contexts per question")
            contexts = [contexts]
        groups = [contexts] if single else contexts
        if not isinstance(groups, Sequence) or len(groups) != len(questions):
            n = len(groups) if isinstance(groups, Sequence) else type(groups).__name__
            raise ShapeMismatchError(f"got {len(questions)} questions but {n} lists of contexts: pass one list each")
        for qi, q in enumerate(questions):
            what = "question" if single else f"question[{qi}]"
            _check_text(q, what, self.max_question_chars, InvalidQuestionError)
            if not q.strip():
                raise InvalidQuestionError(f"{what} is empty: pass the question the contexts should answer")
        norm_groups: list[list[str]] = []
        for qi, group in enumerate(groups):
            if isinstance(group, str) or not isinstance(group, Sequence):
                raise ShapeMismatchError(f"contexts for question {qi} must be a list of strings")
            for ci, c in enumerate(group):
                _check_text(c, f"contexts[{qi}][{ci}]" if not single else f"contexts[{ci}]",
                            self.max_context_chars, InvalidContextError)  # fmt: skip
            norm_groups.append(list(group))
        total = sum(len(g) for g in norm_groups)
        if total > self.max_contexts:
            raise BatchTooLargeError(
                f"{total} contexts in one call; the limit is {self.max_contexts}: send smaller batches"
            )
        if titles is None or titles == FIRST_SENTENCE:
            return single, list(questions), norm_groups, None
        title_groups = [titles] if single else titles
        if not isinstance(title_groups, Sequence) or len(title_groups) != len(norm_groups):
            raise ShapeMismatchError("titles must mirror contexts: one title (or None) per context")
        out: list[list[str | None]] = []
        for qi, (tg, cg) in enumerate(zip(title_groups, norm_groups, strict=True)):
            if isinstance(tg, str) or not isinstance(tg, Sequence) or len(tg) != len(cg):
                raise ShapeMismatchError(f"titles for question {qi} must be a list with one title per context")
            for t in tg:
                if t is not None:
                    _check_text(t, "title", self.max_context_chars, InvalidContextError)
            out.append(list(tg))
        return single, list(questions), norm_groups, out

    # ---- the forward passes -------------------------------------------------------------------------------------

    def _encode_ids(self, texts: list[str], offsets: bool) -> tuple[list[list[int]], list[np.ndarray]]:
        if not texts:
            return [], []
        enc = self.tokenizer(
            texts, add_special_tokens=False, return_offsets_mapping=offsets, return_attention_mask=False,
            return_token_type_ids=False, verbose=False,
        )  # fmt: skip
        offs = [np.asarray(o, dtype=np.int64).reshape(-1, 2) for o in enc["offset_mapping"]] if offsets else []
        return enc["input_ids"], offs

    @torch.inference_mode()
    def _run(self, blocks: list[Block], batch_size: int) -> tuple[list[np.ndarray], np.ndarray]:
        """p_keep for every block's positions, and its rerank score. Blocks run sorted by length (no padding waste)."""
        probs: list[np.ndarray] = [np.empty(0)] * len(blocks)
        scores = np.zeros(len(blocks), dtype=np.float64)
        order = sorted(range(len(blocks)), key=lambda i: len(blocks[i].ids))
        for b in range(0, len(order), batch_size):
            check_cancelled()  # a service request whose client left stops between batches
            batch = order[b : b + batch_size]
            chosen = [blocks[i] for i in batch]
            ids, mask, types = collate([b.ids for b in chosen], [b.token_types for b in chosen], self._pad)
            token_logits, rerank = self.model(ids, mask, types)  # (B, T, 2), (B,)
            margin = token_logits[..., 1].float() - token_logits[..., 0].float()  # (B, T) keep-vs-drop logit
            p_keep = torch.sigmoid(margin + self.cfg.keep_logit_bias).numpy()  # (B, T), = softmax[..., 1] at bias 0
            for row, i in enumerate(batch):
                probs[i] = p_keep[row, : len(blocks[i].ids)]
                scores[i] = float(rerank[row])
        return probs, scores

    # ---- public API ---------------------------------------------------------------------------------------------

    def prune(
        self,
        question: str | Sequence[str],
        contexts: str | Sequence[str] | Sequence[Sequence[str]],
        titles: Sequence[str | None] | Sequence[Sequence[str | None]] | str | None = None,
        threshold: float = 0.1,
        always_select_title: bool = True,
        reorder: bool = False,
        top_k: int | None = None,
        batch_size: int = 32,
    ) -> list[PrunedContext] | list[list[PrunedContext]]:
        """Prune `contexts` to the sentences that help answer `question`, and score each context.

        - `question` a string and `contexts` a list of strings: returns a list of `PrunedContext`;
          `question` a list of N strings and `contexts` N lists: returns N lists.
        - `titles`: one title (or None) per context, seen by the model before the context (as in training) and
          reported back, not copied into `pruned_text`; or `"first_sentence"`: each context's first sentence is its
          title. With `always_select_title`, the title is kept whenever any other sentence is.
        - `threshold` in [0, 1]: see the module docstring (0.1 conservative, 0.5 aggressive).
        - `top_k`: only the `top_k` best-scored contexts of each question keep any text; the others come back
          empty (`kept_sentences == ()`). `reorder=True` returns each question's results by rerank score, best
          first (`index` keeps the original position); otherwise in the input order.
        - An empty or whitespace-only context is allowed: it comes back empty, with the model's rerank score.
        """
        return self.sweep(question, contexts, titles, [threshold], always_select_title, reorder, top_k, batch_size)[
            threshold
        ]

    def sweep(
        self,
        question: str | Sequence[str],
        contexts: str | Sequence[str] | Sequence[Sequence[str]],
        titles: Sequence[str | None] | Sequence[Sequence[str | None]] | str | None = None,
        thresholds: Sequence[float] = (0.1, 0.3, 0.5),
        always_select_title: bool = True,
        reorder: bool = False,
        top_k: int | None = None,
        batch_size: int = 32,
    ) -> dict[float, list[PrunedContext] | list[list[PrunedContext]]]:
        """`prune` at several thresholds for the price of one encoder pass: `{threshold: results}`."""
        thresholds = list(thresholds)
        if not thresholds:
            raise InvalidOptionError("thresholds is empty: pass at least one threshold in [0, 1]")
        for t in thresholds:
            if isinstance(t, bool) or not isinstance(t, int | float) or not 0.0 <= t <= 1.0:
                raise InvalidOptionError(f"threshold must be a number in [0, 1], got {t!r}")
        if top_k is not None and (isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1):
            raise InvalidOptionError(f"top_k must be a positive integer or None, got {top_k!r}")
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or not 1 <= batch_size <= 1024:
            raise InvalidOptionError(f"batch_size must be an integer in [1, 1024], got {batch_size!r}")
        single, questions, groups, title_groups = self._normalise(question, contexts, titles)
        scored = self.score(questions, groups, title_groups, batch_size)
        out = {}
        for t in thresholds:
            flat = [
                self.decide(s, float(t), always_select_title, first_sentence_title=titles == FIRST_SENTENCE)
                for s in scored
            ]
            grouped = self._rank(flat, groups, reorder, top_k)
            out[t] = grouped[0] if single else grouped
        return out

    def score(
        self,
        questions: list[str],
        groups: list[list[str]],
        title_groups: list[list[str | None]] | None,
        batch_size: int,
    ) -> list[ScoredContext]:
        """Model outputs for every (question, context) pair, before any threshold; token probabilities merged across
        blocks. Inputs as `sweep` normalises them: N questions, N lists of contexts, N lists of titles or None."""
        pairs = [(qi, ci) for qi, g in enumerate(groups) for ci in range(len(g))]
        flat_ctx = [groups[qi][ci] for qi, ci in pairs]
        flat_titles = [title_groups[qi][ci] if title_groups else None for qi, ci in pairs]
        # tokenise each question once, every context once with character offsets
        q_ids, _ = self._encode_ids(questions, offsets=False)
        q_ids = [ids[: self.cfg.max_question_tokens] for ids in q_ids]
        c_ids, c_offsets = self._encode_ids(flat_ctx, offsets=True)
        t_ids, _ = self._encode_ids([t or "" for t in flat_titles], offsets=False)
        t_ids = [ids[: self.cfg.max_title_tokens] for ids in t_ids]

        blocks: list[Block] = []
        for item, (qi, _ci) in enumerate(pairs):
            budget = self.cfg.max_length - 3 - len(q_ids[qi]) - len(t_ids[item])
            for start, end in block_windows(len(c_ids[item]), budget, self.cfg.stride):
                blocks.append(build_block(item, q_ids[qi], t_ids[item], c_ids[item], start, end, self._cls, self._sep))
        probs, scores = self._run(blocks, batch_size)

        # Merge the blocks of each context: overlapping tokens average their probabilities; the passage's score
        # is its best block's (a long document is relevant when any part of it is).
        p_sum = [np.zeros(len(ids)) for ids in c_ids]
        p_cnt = [np.zeros(len(ids)) for ids in c_ids]
        title_p: list[list[float]] = [[] for _ in pairs]
        best = np.full(len(pairs), -math.inf)
        for block, p, s in zip(blocks, probs, scores, strict=True):
            n = block.ctx_end - block.ctx_start
            p_sum[block.item][block.ctx_start : block.ctx_end] += p[block.ctx_offset : block.ctx_offset + n]
            p_cnt[block.item][block.ctx_start : block.ctx_end] += 1
            title_p[block.item].extend(p[block.title_offset : block.title_offset + block.n_title].tolist())
            best[block.item] = max(best[block.item], s)
        out = []
        for item, (_qi, ci) in enumerate(pairs):
            spans = split_sentences(flat_ctx[item])
            out.append(
                ScoredContext(
                    text=flat_ctx[item],
                    index=ci,
                    spans=spans,
                    sentence_ids=token_sentence_ids(c_offsets[item], spans),
                    p_keep=p_sum[item] / np.maximum(p_cnt[item], 1),
                    title=flat_titles[item],
                    title_p=np.asarray(title_p[item]),
                    rerank=float(best[item]),
                )
            )
        return out

    @staticmethod
    def decide(
        s: ScoredContext, threshold: float, always_select_title: bool = True, first_sentence_title: bool = False
    ) -> PrunedContext:
        """Round token decisions to sentences (see the module docstring)."""
        n_sent, sid, p_tok = len(s.spans), s.sentence_ids, s.p_keep
        if n_sent and len(sid):
            n_tok = np.bincount(sid, minlength=n_sent)  # (S,)
            n_kept_tok = np.bincount(sid, weights=(p_tok > threshold).astype(np.float64), minlength=n_sent)  # (S,)
            p_mean = np.bincount(sid, weights=p_tok, minlength=n_sent) / np.maximum(n_tok, 1)  # (S,)
            keep = (n_tok > 0) & (n_kept_tok / np.maximum(n_tok, 1) > threshold)  # (S,)
        else:
            n_tok, p_mean, keep = np.zeros(n_sent, np.int64), np.zeros(n_sent), np.zeros(n_sent, bool)
        title_kept = False
        if first_sentence_title and n_sent:
            others = bool(keep[1:].any())
            keep[0] = others and (always_select_title or bool(keep[0]))  # a lone title carries no content
        elif s.title is not None:
            title_share = float((s.title_p > threshold).mean()) if s.title_p.size else 0.0
            title_kept = bool(keep.any()) and (always_select_title or title_share > threshold)
        kept = tuple(int(i) for i in np.flatnonzero(keep))
        return PrunedContext(
            pruned_text=join_spans(s.text, s.spans, kept),
            kept_sentences=kept,
            sentence_spans=tuple(s.spans),
            sentence_probs=tuple(float(x) for x in p_mean),
            rerank_score=s.rerank,
            tokens_before=len(p_tok),
            tokens_after=int(n_tok[list(kept)].sum()) if kept else 0,
            index=s.index,
            rank=0,
            title=s.title,
            title_kept=title_kept,
        )

    @staticmethod
    def _rank(
        flat: list[PrunedContext], groups: list[list[str]], reorder: bool, top_k: int | None
    ) -> list[list[PrunedContext]]:
        """Rank each question's contexts by rerank score; empty those past `top_k`; reorder when asked."""
        out: list[list[PrunedContext]] = []
        pos = 0
        for g in groups:
            mine = flat[pos : pos + len(g)]
            pos += len(g)
            order = sorted(range(len(mine)), key=lambda i: -mine[i].rerank_score)
            ranked = list(mine)
            for rank, i in enumerate(order):
                r = dataclasses.replace(mine[i], rank=rank)
                if top_k is not None and rank >= top_k:
                    r = dataclasses.replace(r, pruned_text="", kept_sentences=(), tokens_after=0, title_kept=False)
                ranked[i] = r
            out.append([ranked[i] for i in order] if reorder else ranked)
        return out


_default: ContextPruner | None = None
_default_lock = threading.Lock()


def default_pruner() -> ContextPruner:
    """One process-wide pruner with the shipped weights (precision `auto`), loaded on first use; thread-safe."""
    global _default
    with _default_lock:
        if _default is None:
            _default = ContextPruner()
        return _default


def load_pruner(weights: str | Path | None = None) -> ContextPruner:
    """The process-wide `default_pruner()` for None, else a pruner with the weights in `weights`; a folder without
    weights raises `PrunerWeightsError` (its `argument`: "weights") before anything loads."""
    return default_pruner() if weights is None else ContextPruner(check_weights(weights, argument="weights"))
