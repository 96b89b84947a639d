"""Labels for training the pruner: silver sentence labels from an LLM, and token labels from sentence labels.

Provence (Chirkova et al., ICLR 2025, arXiv 2501.16214) builds its silver labels by asking an LLM to answer from
numbered sentences and cite the ones it used; outputs with no citation are dropped (~10 % in the paper) and
"No answer" selects nothing. Sentence labels are then copied to every token of the sentence; the question and the
special tokens are left out of the loss (-100).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from prunekit.context_pruner.encoding import IGNORE, block_windows, build_block
from prunekit.context_pruner.model import PrunerConfig
from prunekit.context_pruner.sentences import sentences_to_text, token_sentence_ids
from prunekit.decoding.protocol import ChatModel
from prunekit.decoding.types import GenerationParams

__all__ = ["EncodedPassage", "encode_passage", "parse_citations", "silver_labels", "silver_prompt"]

logger = logging.getLogger(__name__)

_CITATION = re.compile(r"\[\s*(\d+(?:\s*,\s*\d+)*)\s*\]")  # [1], [2,3], [ 4 , 5 ]
_NO_ANSWER = re.compile(r"\bno answer\b", re.IGNORECASE)

_PROMPT = (
    "Question: {question}\n\nContext:\n{context}\n\n"
    "Answer the Question using ONLY information provided in the Context. If no useful information is provided, "
    'you MUST output "No answer". If some parts of the Context are used to answer, you MUST cite ALL the '
    "corresponding sentences. Use the symbols [ ] to indicate when a fact comes from a sentence in the context, "
    "e.g. [1] for a fact from sentence 1, [2,3] for sentences 2 and 3. Only answer the given question."
)


def silver_prompt(question: str, sentences: Sequence[str]) -> str:
    """The labelling prompt: sentences numbered from 1, one per line."""
    numbered = "\n".join(f"[{i}] {s.strip()}" for i, s in enumerate(sentences, start=1))
    return _PROMPT.format(question=question.strip(), context=numbered)


def parse_citations(text: str, n_sentences: int) -> list[int] | None:
    """0/1 label per sentence from an LLM answer; None when it neither cites nor says "no answer" (drop it).

    >>> parse_citations("Paris [1], in France [2, 3].", 4)
    [1, 1, 1, 0]
    >>> parse_citations("No answer.", 2)
    [0, 0]
    """
    cited = {int(n) for group in _CITATION.findall(text) for n in re.split(r"\s*,\s*", group)}
    cited = {i for i in cited if 1 <= i <= n_sentences}  # numbers outside the list are hallucinated: ignore them
    if cited:
        return [int(i + 1 in cited) for i in range(n_sentences)]
    if _NO_ANSWER.search(text):
        return [0] * n_sentences
    return None


def silver_labels(
    question: str, sentences: Sequence[str], model: ChatModel, params: GenerationParams | None = None
) -> list[int] | None:
    """Ask `model` to answer from the numbered `sentences` and cite them; the cited ones are labelled 1.

    Returns None when the answer has no citation and is not "No answer" (Provence drops those examples).
    """
    if not sentences:
        return []
    messages = [{"role": "user", "content": silver_prompt(question, sentences)}]
    result = model.chat(messages, params or GenerationParams(max_tokens=192, temperature=0.0))
    labels = parse_citations(result.text, len(sentences))
    if labels is None:
        logger.debug("no citation in the labeller's answer, dropping: %r", result.text[:200])
    return labels


@dataclass(frozen=True)
class EncodedPassage:
    ids: np.ndarray  # (T,) int64
    token_types: np.ndarray  # (T,) int64
    labels: np.ndarray  # (T,) int64: 1 keep, 0 drop, -100 ignored (question, specials)


def encode_passage(
    tokenizer, cfg: PrunerConfig, question: str, title: str | None, sentences: Sequence[str], labels: Sequence[int]
) -> EncodedPassage:
    """Token ids and token labels of one passage, in the inference layout (`encoding.build_block`).

    Title tokens get the passage's label (1 if any sentence is relevant): at inference the title goes with the
    kept text. A context longer than the window keeps the first window that holds a relevant token.
    """
    text, spans = sentences_to_text(sentences)
    q_ids = tokenizer(question, add_special_tokens=False, verbose=False)["input_ids"][: cfg.max_question_tokens]
    t_ids = tokenizer(title, add_special_tokens=False)["input_ids"][: cfg.max_title_tokens] if title else []
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True, verbose=False)
    c_ids = enc["input_ids"]
    sid = token_sentence_ids(np.asarray(enc["offset_mapping"], dtype=np.int64), spans)  # (N,)
    sent_labels = np.asarray(labels, dtype=np.int64)
    tok_labels = sent_labels[sid] if len(sid) and len(sent_labels) else np.zeros(len(c_ids), dtype=np.int64)
    budget = cfg.max_length - 3 - len(q_ids) - len(t_ids)
    windows = block_windows(len(c_ids), budget, cfg.stride)
    start, end = next(((a, b) for a, b in windows if tok_labels[a:b].any()), windows[0])
    block = build_block(0, q_ids, t_ids, c_ids, start, end, tokenizer.cls_token_id, tokenizer.sep_token_id)
    y = np.full(len(block.ids), IGNORE, dtype=np.int64)
    y[block.title_offset : block.title_offset + block.n_title] = int(sent_labels.any()) if len(sent_labels) else 0
    y[block.ctx_offset : block.ctx_offset + (end - start)] = tok_labels[start:end]
    return EncodedPassage(block.ids, block.token_types, y)
