import random

import pytest

from prunekit.context_pruner.data import (
    hotpot_passages,
    is_evaluation_split,
    is_held_out_article,
    is_squad_file,
    read_hotpotqa,
    read_squad,
    read_training_passages,
    squad_passages,
)
from tests.conftest import require_data
from tests.context_pruner.helpers import write_hotpot_hf, write_hotpot_original, write_squad


@pytest.mark.parametrize("layout", ["hf", "hf_literal", "original"])
def test_hotpot_layouts_read_the_same(tmp_path, layout):
    if layout == "original":
        path = write_hotpot_original(tmp_path / "train_hipporag.json")
    else:
        path = write_hotpot_hf(tmp_path / "train.jsonl", as_literal_strings=layout == "hf_literal")
    item = read_hotpotqa(path)[0]
    assert item.id == "q1" and item.question.startswith("Which city")
    assert [t for t, _ in item.paragraphs] == ["Eiffel Tower", "Cats"]
    assert item.supporting == {("Eiffel Tower", 1)}
    passages = hotpot_passages([item])
    assert [p.labels for p in passages] == [(0, 1), (0, 0)]
    assert passages[0].title == "Eiffel Tower" and passages[0].relevant and not passages[1].relevant


def test_squad_labels_the_answer_sentence_and_adds_negatives(tmp_path):
    items = read_squad(write_squad(tmp_path / "train.json"))
    assert items[0].title == "Paris City"
    passages = squad_passages(items, random.Random(0), negative_rate=1.0)
    positive = next(p for p in passages if p.group == "s1" and p.relevant)
    assert all((label == 1) == ("Louvre" in s) for s, label in zip(positive.sentences, positive.labels, strict=True))
    negatives = [p for p in passages if not p.relevant]
    assert negatives and all(p.title != items[0].title for p in negatives if p.group == "s1")
    assert 1 <= len(positive.sentences) <= 10


def test_same_article_negatives_come_from_a_sibling_paragraph_when_there_is_one(tmp_path):
    from prunekit.context_pruner.data import SquadItem

    items = read_squad(write_squad(tmp_path / "train.json"))
    sibling = SquadItem("s3", "Where is the Seine?", "Paris City", "The Seine crosses Paris. It is long.", 4, "Seine")
    passages = squad_passages([*items, sibling], random.Random(0), negative_rate=1.0, same_article_negatives=True)
    negatives = {p.group: p for p in passages if not p.relevant}
    assert " ".join(negatives["s1"].sentences) in sibling.context and negatives["s1"].title == "Paris City"
    assert " ".join(negatives["s3"].sentences) in items[0].context  # a chunk of the Louvre paragraph
    assert negatives["s2"].title != "Cats"  # no sibling: another article, as before


def test_held_out_articles_are_a_stable_share_and_stay_out_of_training(tmp_path):
    titles = [f"Article {i}" for i in range(2000)]
    held = [t for t in titles if is_held_out_article(t, 5)]
    assert 0.15 < len(held) / len(titles) < 0.25  # about one in five
    assert held == [t for t in titles if is_held_out_article(t, 5)]  # the same split on every call
    assert not any(is_held_out_article(t, None) or is_held_out_article(t, 0) for t in titles)

    path = write_squad(tmp_path / "train.json")
    assert is_squad_file(path) and not is_squad_file(write_hotpot_hf(tmp_path / "train.jsonl"))
    titles_in_file = {it.title for it in read_squad(path)}
    every = next(n for n in range(2, 50) if any(is_held_out_article(t, n) for t in titles_in_file))
    passages = read_training_passages([path], random.Random(0), squad_negative_rate=0.0, squad_held_out_every=every)
    assert passages and not any(is_held_out_article(p.title, every) for p in passages)


def test_evaluation_splits_are_refused(tmp_path):
    path = write_hotpot_hf(tmp_path / "dev.jsonl")
    assert is_evaluation_split(path) and is_evaluation_split("x/test.jsonl") and not is_evaluation_split("train.jsonl")
    with pytest.raises(ValueError, match="evaluation split"):
        read_training_passages([path], random.Random(0))


def test_training_passages_sample_distractors(tmp_path):
    path = write_hotpot_hf(tmp_path / "train.jsonl")
    passages = read_training_passages([path], random.Random(0), hotpot_distractors=0)
    assert passages and all(p.relevant for p in passages)


@pytest.mark.data
def test_real_hotpot_train_file_reads():
    items = read_hotpotqa(require_data("qa/hotpotqa/train.jsonl"))
    assert len(items) == 300
    passages = hotpot_passages(items)
    assert sum(p.relevant for p in passages) >= 2 * 300 - 5  # two gold paragraphs per question
