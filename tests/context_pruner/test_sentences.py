import numpy as np
import pytest

from prunekit.context_pruner.sentences import join_spans, sentences_to_text, split_sentences, token_sentence_ids


def test_split_gives_verbatim_spans_in_order():
    text = "Dr. Smith went to Washington on Jan. 5.  He said hi!\nThen he left."
    spans = split_sentences(text)
    assert [text[a:b] for a, b in spans] == ["Dr. Smith went to Washington on Jan. 5.", "He said hi!", "Then he left."]
    assert all(spans[i][1] <= spans[i + 1][0] for i in range(len(spans) - 1))


@pytest.mark.parametrize("text", ["", "   ", "\n\t"])
def test_split_empty_text_has_no_sentence(text):
    assert split_sentences(text) == []


def test_split_non_ascii_offsets_are_character_offsets():
    text = "Партия социалистов — эсеры. Café au lait est bon."
    assert [text[a:b] for a, b in split_sentences(text)] == ["Партия социалистов — эсеры.", "Café au lait est bon."]


def test_split_text_without_punctuation_is_one_sentence():
    assert split_sentences("  no period at all ") == [(2, 18)]


def test_sentences_to_text_keeps_dataset_indices():
    text, spans = sentences_to_text(["First one.", " Second one.", "", "Third."])
    assert text == "First one. Second one. Third."
    assert [text[a:b] for a, b in spans] == ["First one.", "Second one.", "", "Third."]


def test_token_sentence_ids_maps_tokens_by_start():
    spans = [(0, 10), (11, 20)]
    offsets = np.array([[0, 3], [4, 10], [11, 15], [16, 20]])
    assert token_sentence_ids(offsets, spans).tolist() == [0, 0, 1, 1]
    assert token_sentence_ids(offsets, []).tolist() == [-1, -1, -1, -1]


def test_join_spans_keeps_original_separators_between_neighbours():
    text = "A b.\n\nC d. E f. G h."
    spans = split_sentences(text)
    assert join_spans(text, spans, [0, 1]) == "A b.\n\nC d."
    assert join_spans(text, spans, [0, 2]) == "A b. E f."
    assert join_spans(text, spans, []) == ""
