import pytest

from prunekit.context_pruner.data import is_held_out_article
from prunekit.context_pruner.validate import RankingGroup, held_out_ranking_groups, validate_ranking
from tests.context_pruner.helpers import write_squad_articles


def test_groups_come_from_held_out_articles_with_the_gold_paragraph_first(tmp_path):
    path = write_squad_articles(tmp_path / "train.json")
    groups = held_out_ranking_groups(path, every=3, limit=1000, group_size=10)
    assert groups and all(is_held_out_article(g.title, 3) for g in groups)
    for g in groups:
        assert len(g.candidates) == 3  # its own paragraph + both siblings (fewer than group_size - 1 exist)
        assert g.question.split("part ")[1][0] == g.candidates[0].split("part ")[1][0]
    assert held_out_ranking_groups(path, every=3, limit=1000, group_size=10) == groups  # seeded: reproducible
    with pytest.raises(ValueError, match="every must be >= 2"):
        held_out_ranking_groups(path, every=1)


class _Scored:
    def __init__(self, rerank: float) -> None:
        self.rerank = rerank


class _RanksByOverlap:
    """A fake pruner whose rerank score is the number of words a candidate shares with the question."""

    def score(self, questions, groups, titles, batch_size):
        out = []
        for q, g in zip(questions, groups, strict=True):
            words = set(q.lower().rstrip("?").split())
            out.extend(_Scored(float(len(words & set(c.lower().rstrip(".").split())))) for c in g)
        return out


class _Constant:
    def similarity(self, query, texts):
        import numpy as np

        return np.zeros(len(texts))  # ties: argmax picks the first candidate, the gold one


def test_recall_at_1_counts_the_gold_paragraph_ranked_first():
    groups = [
        RankingGroup("which part is red?", "T", ("part red here.", "part blue.")),
        RankingGroup("which part is red?", "T", ("part blue.", "part red here.")),  # the gold one loses
    ]
    result = validate_ranking(_RanksByOverlap(), groups, biencoder=_Constant())
    assert result.groups == 2 and result.pruner_recall_at_1 == 0.5 and result.biencoder_recall_at_1 == 1.0
    with pytest.raises(ValueError, match="no ranking groups"):
        validate_ranking(_RanksByOverlap(), [], biencoder=_Constant())
