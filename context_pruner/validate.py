"""Ranking validation on SQuAD articles held out of training: rerank recall@1 of the pruner beside the bi-encoder.

A question's candidates are its own paragraph (the one that holds the answer) and up to `group_size - 1` other
paragraphs of the same article: hard negatives on the question's topic, as a retriever returns them. Recall@1 is
the share of questions whose own paragraph gets the highest score. The articles are those
`data.is_held_out_article` keeps out of training (`TrainConfig.squad_held_out_every`), so this is a held-out
figure from a training split; the evaluation splits stay untouched for `prunekit eval qa`.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from prunekit.context_pruner.data import is_held_out_article, is_squad_file, read_squad

if TYPE_CHECKING:
    from prunekit.context_pruner.biencoder import BiEncoder
    from prunekit.context_pruner.pruner import ContextPruner
    from prunekit.context_pruner.train import TrainConfig

__all__ = [
    "RankingGroup",
    "RankingValidation",
    "held_out_ranking_groups",
    "validate_held_out_articles",
    "validate_ranking",
]


@dataclass(frozen=True)
class RankingGroup:
    question: str
    title: str
    candidates: tuple[str, ...]  # the gold paragraph first


@dataclass(frozen=True)
class RankingValidation:
    groups: int
    pruner_recall_at_1: float
    biencoder_recall_at_1: float


def held_out_ranking_groups(
    squad_file: str | Path, every: int, limit: int = 200, group_size: int = 10, seed: int = 7
) -> list[RankingGroup]:
    """Up to `limit` questions from the held-out articles of `squad_file`, each with its candidate paragraphs."""
    if every < 2:
        raise ValueError(f"every must be >= 2 (got {every}): with fewer, no article is held out")
    items = [it for it in read_squad(squad_file) if is_held_out_article(it.title, every)]
    paragraphs: dict[str, list[str]] = {}
    for it in items:
        known = paragraphs.setdefault(it.title, [])
        if it.context not in known:
            known.append(it.context)
    rng = random.Random(seed)
    usable = [it for it in items if len(paragraphs[it.title]) > 1]  # a lone paragraph has nothing to rank against
    groups = []
    for it in rng.sample(usable, min(limit, len(usable))):
        others = [p for p in paragraphs[it.title] if p != it.context]
        negatives = rng.sample(others, min(group_size - 1, len(others)))
        groups.append(RankingGroup(it.question, it.title, (it.context, *negatives)))
    return groups


def _recall_at_1(scores: Sequence[Sequence[float]]) -> float:
    return float(np.mean([int(np.argmax(s)) == 0 for s in scores]))


def validate_ranking(
    pruner: ContextPruner, groups: Sequence[RankingGroup], biencoder: BiEncoder | None = None, batch_size: int = 32
) -> RankingValidation:
    """Recall@1 of `pruner`'s rerank score and of the bi-encoder's cosine on `groups`."""
    from prunekit.context_pruner.biencoder import BiEncoder

    if not groups:
        raise ValueError("no ranking groups: is any article held out?")
    questions = [g.question for g in groups]
    titles: list[list[str | None]] = [[g.title] * len(g.candidates) for g in groups]
    scored = pruner.score(questions, [list(g.candidates) for g in groups], titles, batch_size)
    ours, pos = [], 0
    for g in groups:
        ours.append([s.rerank for s in scored[pos : pos + len(g.candidates)]])
        pos += len(g.candidates)
    biencoder = biencoder or BiEncoder()
    theirs = [biencoder.similarity(g.question, list(g.candidates)).tolist() for g in groups]
    return RankingValidation(len(groups), _recall_at_1(ours), _recall_at_1(theirs))


def validate_held_out_articles(weights: str | Path, config: TrainConfig) -> dict[str, RankingValidation]:
    """`validate_ranking` on the held-out articles of each SQuAD file `config` trained on (by file name), also
    recorded in the weights' provenance (`extra.held_out_ranking`). Empty when `config` held nothing out."""
    from prunekit.context_pruner.model import update_config
    from prunekit.context_pruner.pruner import ContextPruner
    from prunekit.context_pruner.train import data_paths

    every = config.squad_held_out_every
    if not every:
        return {}
    results: dict[str, RankingValidation] = {}
    pruner = None
    for path in filter(is_squad_file, data_paths(config)):
        groups = held_out_ranking_groups(path, every)
        if groups:
            pruner = pruner or ContextPruner(weights)
            results[path.name] = result = validate_ranking(pruner, groups)
            update_config(weights, extra={"held_out_ranking": {"file": path.name, "every": every, **vars(result)}})
    return results
