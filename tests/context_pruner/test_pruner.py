import pytest

from prunekit.context_pruner.errors import (
    BatchTooLargeError,
    InvalidContextError,
    InvalidOptionError,
    InvalidQuestionError,
    PrunerInputError,
    ShapeMismatchError,
)
from prunekit.context_pruner.pruner import FIRST_SENTENCE, ContextPruner, PrunedContext
from prunekit.decoding.errors import InvalidRequestError
from tests.context_pruner.helpers import tiny_model

EIFFEL = "The Eiffel Tower is a wrought-iron lattice tower. It is located in Paris, France. Cats like to sleep."
OFF_TOPIC = "Bananas are rich in potassium. They grow in tropical regions."


@pytest.fixture(scope="module")
def shipped() -> ContextPruner:
    return ContextPruner()


@pytest.fixture(scope="module")
def tiny() -> ContextPruner:
    model, tokenizer = tiny_model(max_length=48, stride=8)
    return ContextPruner(model=model, tokenizer=tokenizer, precision="fp32", max_contexts=8)


def test_single_question_returns_one_result_per_context(tiny):
    results = tiny.prune("Where is the Eiffel Tower?", [EIFFEL, OFF_TOPIC])
    assert [r.index for r in results] == [0, 1]
    assert all(isinstance(r, PrunedContext) for r in results)
    assert sorted(r.rank for r in results) == [0, 1]
    assert len(results[0].sentence_spans) == 3 and len(results[0].sentence_probs) == 3


def test_list_of_questions_returns_one_list_each(tiny):
    out = tiny.prune(["q one?", "q two?"], [[EIFFEL], [OFF_TOPIC, EIFFEL]])
    assert [len(group) for group in out] == [1, 2]


def test_threshold_extremes_keep_all_or_nothing(tiny):
    everything = tiny.prune("Where?", [EIFFEL], threshold=0.0)[0]
    assert everything.kept_sentences == (0, 1, 2)
    assert everything.pruned_text == EIFFEL
    assert everything.tokens_after == everything.tokens_before > 0
    nothing = tiny.prune("Where?", [EIFFEL], threshold=1.0)[0]
    assert nothing.kept_sentences == () and nothing.pruned_text == "" and nothing.compression == 1.0


def test_pruned_text_is_made_of_verbatim_sentences(shipped):
    result = shipped.prune("Where is the Eiffel Tower?", [EIFFEL], threshold=0.3)[0]
    for a, b in result.kept_spans:
        assert EIFFEL[a:b] in result.pruned_text


def test_long_context_is_windowed_and_every_token_scored(tiny):
    long_text = " ".join(f"Sentence number {i} talks about topic {i}." for i in range(40))
    result = tiny.prune("Which topic?", [long_text], threshold=0.0)[0]
    assert result.tokens_before > 48  # longer than the tiny window
    assert len(result.kept_sentences) == 40  # every block's tokens reached the merge
    assert result.pruned_text == long_text


def test_empty_context_comes_back_empty(tiny):
    result = tiny.prune("Where?", ["", "  "])
    assert all(r.kept_sentences == () and r.tokens_before == 0 and r.compression == 0.0 for r in result)


def test_top_k_and_reorder(tiny):
    contexts = [EIFFEL, OFF_TOPIC, "Paris is a city. It is in France."]
    plain = tiny.prune("Where?", contexts, threshold=0.0)
    best = max(plain, key=lambda r: r.rerank_score)
    top = tiny.prune("Where?", contexts, threshold=0.0, top_k=1)
    assert [bool(r.kept_sentences) for r in top] == [r.index == best.index for r in top]
    ordered = tiny.prune("Where?", contexts, threshold=0.0, reorder=True)
    assert [r.rank for r in ordered] == [0, 1, 2]
    assert ordered[0].index == best.index
    assert [r.rerank_score for r in ordered] == sorted((r.rerank_score for r in ordered), reverse=True)


def test_titles_are_reported_not_copied(tiny):
    result = tiny.prune("Where?", [EIFFEL], titles=["Eiffel Tower"], threshold=0.0)[0]
    assert result.title == "Eiffel Tower" and result.title_kept
    assert not result.pruned_text.startswith("Eiffel Tower")
    none_kept = tiny.prune("Where?", [EIFFEL], titles=["Eiffel Tower"], threshold=1.0)[0]
    assert not none_kept.title_kept


def test_first_sentence_title_kept_only_with_other_sentences(tiny):
    text = "Eiffel Tower. " + EIFFEL
    kept_all = tiny.prune("Where?", [text], titles=FIRST_SENTENCE, threshold=0.0)[0]
    assert kept_all.kept_sentences[0] == 0
    kept_none = tiny.prune("Where?", [text], titles=FIRST_SENTENCE, threshold=1.0)[0]
    assert kept_none.kept_sentences == ()


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"question": None, "contexts": [EIFFEL]}, InvalidQuestionError),
        ({"question": "  ", "contexts": [EIFFEL]}, InvalidQuestionError),
        ({"question": 42, "contexts": [EIFFEL]}, InvalidQuestionError),
        ({"question": ["q?", 3], "contexts": [[EIFFEL], [EIFFEL]]}, InvalidQuestionError),
        ({"question": "q?", "contexts": [EIFFEL, 3]}, InvalidContextError),
        ({"question": "q?", "contexts": [None]}, InvalidContextError),
        ({"question": "q?", "contexts": ["x" * 200_001]}, InvalidContextError),
        ({"question": ["a?", "b?"], "contexts": [[EIFFEL]]}, ShapeMismatchError),
        ({"question": ["a?"], "contexts": [EIFFEL]}, ShapeMismatchError),
        ({"question": "q?", "contexts": [EIFFEL], "titles": ["a", "b"]}, ShapeMismatchError),
        ({"question": "q?", "contexts": [EIFFEL] * 9}, BatchTooLargeError),
        ({"question": "q?", "contexts": [EIFFEL], "threshold": 1.5}, InvalidOptionError),
        ({"question": "q?", "contexts": [EIFFEL], "threshold": True}, InvalidOptionError),
        ({"question": "q?", "contexts": [EIFFEL], "top_k": 0}, InvalidOptionError),
        ({"question": "q?", "contexts": [EIFFEL], "batch_size": 0}, InvalidOptionError),
    ],
)
def test_bad_input_raises_a_specific_invalid_request(tiny, kwargs, error):
    with pytest.raises(error) as info:
        tiny.prune(**kwargs)
    assert isinstance(info.value, PrunerInputError) and isinstance(info.value, InvalidRequestError)


def test_a_lone_string_context_is_accepted(tiny):
    assert len(tiny.prune("Where?", EIFFEL)) == 1


def test_empty_context_list_returns_empty(tiny):
    assert tiny.prune("Where?", []) == []


def test_shipped_model_keeps_the_answer_and_ranks_the_off_topic_last(shipped):
    question = "In which city is the Eiffel Tower located?"
    relevant, off = shipped.prune(question, [EIFFEL, OFF_TOPIC], threshold=0.5)
    assert "Paris" in relevant.pruned_text
    tower, paris, cats = relevant.sentence_probs
    assert cats < min(tower, paris) and max(off.sentence_probs) < cats  # off-topic sentences are the first to go
    assert off.kept_sentences == ()
    assert relevant.rerank_score > off.rerank_score


def test_default_precision_and_fp32_agree_on_the_shipped_model(shipped):
    fp32 = ContextPruner(precision="fp32")
    question = "In which city is the Eiffel Tower located?"
    a = shipped.prune(question, [EIFFEL, OFF_TOPIC])
    b = fp32.prune(question, [EIFFEL, OFF_TOPIC])
    for x, y in zip(a, b, strict=True):
        # per-tensor int8 (auto on CPUs without native bf16) moves them by up to ~0.16 here (measured); bf16 far less
        assert max(abs(p - q) for p, q in zip(x.sentence_probs, y.sentence_probs, strict=True)) < 0.25
    assert (a[0].rerank_score > a[1].rerank_score) == (b[0].rerank_score > b[1].rerank_score)


def test_sweep_equals_prune_at_each_threshold(tiny):
    contexts = [EIFFEL, OFF_TOPIC]
    swept = tiny.sweep("Where?", contexts, thresholds=[0.2, 0.6])
    for t in (0.2, 0.6):
        assert swept[t] == tiny.prune("Where?", contexts, threshold=t)
    with pytest.raises(InvalidOptionError):
        tiny.sweep("Where?", contexts, thresholds=[])


def test_load_pruner_shares_the_default_and_refuses_a_folder_without_weights(tmp_path):
    from prunekit.context_pruner.errors import PrunerWeightsError
    from prunekit.context_pruner.pruner import default_pruner, load_pruner

    assert load_pruner() is default_pruner() and load_pruner(None) is default_pruner()
    with pytest.raises(PrunerWeightsError, match="no pruner weights in") as err:
        load_pruner(tmp_path)
    assert err.value.argument == "weights"
