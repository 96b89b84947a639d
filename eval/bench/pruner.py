"""Throughput of the context pruner on a CPU, beside a DeBERTa-v3-large-sized encoder (Provence's architecture).

Provence (Chirkova et al., ICLR 2025, arXiv 2501.16214) runs DeBERTa-v3-large (435M parameters); the ratio of
the two figures, measured in the same run on the same inputs, is what survives a busy machine. The DeBERTa model
has random weights: speed does not depend on them, and nothing is downloaded.
"""

from __future__ import annotations

import logging
import os
import random
import resource
import time
from pathlib import Path
from typing import Any

import torch

from prunekit.context_pruner.errors import InvalidOptionError
from prunekit.context_pruner.precision import Precision
from prunekit.context_pruner.pruner import ContextPruner

__all__ = ["bench_prune", "synthetic_passages"]

logger = logging.getLogger(__name__)

_VOCAB_TEXT = (
    "the river city old town bridge market north south east west people house water road school church king "
    "queen war army year time day night music film book song game team club party state law court land sea "
    "ship train station street park tower wall gate field farm forest hill mountain lake island village county "
    "family name world country government company group history story work life death power money art science "
    "language"
)
_WORDS = _VOCAB_TEXT.split()  # common words that are single WordPiece tokens
_QUESTION = "which river flows through the old town near the market and the bridge ?"


def synthetic_passages(tokenizer: Any, n: int, tokens: int, seed: int = 0) -> tuple[str, list[str]]:
    """A question and `n` passages whose full encoder input (`[CLS] q [SEP] passage [SEP]`) is `tokens` long."""
    vocab = tokenizer.get_vocab()
    words = [w for w in _WORDS if w in vocab]  # single WordPiece tokens: the token count is the word count
    q_len = len(tokenizer(_QUESTION, add_special_tokens=False)["input_ids"])
    n_ctx = tokens - 3 - q_len
    if n_ctx < 2:
        raise InvalidOptionError(f"tokens={tokens} leaves no room for a passage after the question")
    rng = random.Random(seed)
    passages = []
    for _ in range(n):
        out: list[str] = []
        while len(out) < n_ctx:
            sentence = [rng.choice(words) for _ in range(rng.randint(8, 20))]
            out.extend([*sentence[: max(1, n_ctx - len(out) - 1)], "."])
        passages.append(" ".join(out[:n_ctx]))
    return _QUESTION, passages


def _rss_mb() -> float:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except OSError:  # not Linux: fall back to the peak
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _time_deberta(input_ids: torch.Tensor, n_passages: int, batch_size: int) -> float:
    """Passages/s of a DeBERTa-v3-large-shaped encoder + token head, random weights, fp32."""
    from transformers import DebertaV2Config, DebertaV2Model

    cfg = DebertaV2Config(
        vocab_size=128100, hidden_size=1024, num_hidden_layers=24, num_attention_heads=16, intermediate_size=4096,
        max_position_embeddings=512, relative_attention=True, position_buckets=256, norm_rel_ebd="layer_norm",
        share_att_key=True, pos_att_type=["p2c", "c2p"], position_biased_input=False, type_vocab_size=0,
        layer_norm_eps=1e-7,
    )  # fmt: skip
    model = DebertaV2Model(cfg).eval()
    head = torch.nn.Linear(cfg.hidden_size, 2)
    ids = input_ids[:n_passages]
    with torch.inference_mode():
        model(input_ids=ids[:1], attention_mask=torch.ones_like(ids[:1]))  # warm-up
        start = time.perf_counter()
        for b in range(0, len(ids), batch_size):
            chunk = ids[b : b + batch_size]
            head(model(input_ids=chunk, attention_mask=torch.ones_like(chunk)).last_hidden_state)
        elapsed = time.perf_counter() - start
    del model
    return len(ids) / elapsed


def _passages_per_s(pruner: ContextPruner, question: str, passages: list[str], batch_size: int) -> float:
    """`prune` end to end over `passages`, after one warm-up batch (allocator, oneDNN kernels, ONNX Runtime arenas)."""
    pruner.prune(question, passages[:batch_size], batch_size=batch_size)
    start = time.perf_counter()
    pruner.prune(question, passages, batch_size=batch_size)
    return len(passages) / (time.perf_counter() - start)


def bench_prune(
    n_passages: int = 128,
    tokens: int = 256,
    batch_size: int = 16,
    deberta_passages: int = 4,
    num_threads: int | None = None,
    pruner: ContextPruner | None = None,
    precision: Precision = "auto",
    weights: str | Path | None = None,
    compare_precisions: bool = False,
) -> dict[str, Any]:
    """Time `ContextPruner.prune` end to end (splitting, tokenising, encoder, rounding) on synthetic passages.

    Returns passages/s and encoder tokens/s, ms per passage, resident memory after the pruner's run, and the same
    encoder-only throughput for a DeBERTa-v3-large-sized model on `deberta_passages` of the same inputs (0 skips
    it). `weights` and `precision`: the pruner to load (default: the shipped weights, `auto`) when no `pruner` is
    given. `compare_precisions`: also `by_precision`, `weights` (default: the shipped ones) loaded and timed in each
    of bf16, int8 and fp32 (bf16 is slow where the CPU emulates it).

    >>> bench_prune(n_passages=32, deberta_passages=0)["passages_per_s"] > 0
    True
    """
    if num_threads is not None:
        torch.set_num_threads(num_threads)
    rss_before = _rss_mb()
    pruner = pruner or ContextPruner(weights, precision=precision)
    question, passages = synthetic_passages(pruner.tokenizer, n_passages, tokens)
    measured_tokens = 3 + len(pruner.tokenizer(question, add_special_tokens=False)["input_ids"])
    measured_tokens += len(pruner.tokenizer(passages[0], add_special_tokens=False)["input_ids"])
    passages_per_s = _passages_per_s(pruner, question, passages, batch_size)
    report: dict[str, Any] = {
        "passages_per_s": passages_per_s,
        "tokens_per_s": passages_per_s * measured_tokens,
        "ms_per_passage": 1000 / passages_per_s,
        "n_passages": n_passages,
        "tokens": measured_tokens,
        "batch_size": batch_size,
        "precision": pruner.precision,
        "num_layers": pruner.cfg.num_layers,
        "num_threads": torch.get_num_threads(),
        "rss_mb": _rss_mb(),
        "rss_mb_before_load": rss_before,
    }
    if compare_precisions:
        report["by_precision"] = {}
        for name in ("bf16", "int8", "fp32"):
            rate = _passages_per_s(ContextPruner(weights, precision=name), question, passages, batch_size)
            report["by_precision"][name] = {"passages_per_s": rate, "tokens_per_s": rate * measured_tokens}
    if deberta_passages > 0:
        ids = torch.tensor([[1] * tokens] * deberta_passages) + torch.randint(0, 30000, (deberta_passages, tokens))
        deberta = _time_deberta(ids, deberta_passages, min(batch_size, deberta_passages))
        report["deberta_v3_large_passages_per_s"] = deberta
        report["speedup_vs_deberta"] = report["passages_per_s"] / deberta
    logger.info("bench_prune: %s", report)
    return report
