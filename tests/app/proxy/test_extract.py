"""Context and question recognition in chat messages (pure: no model, no server)."""

from __future__ import annotations

import time

import pytest

from prunekit.app.proxy.extract import extract
from prunekit.decoding.errors import InvalidRequestError


def bodies(messages, explicit=None):
    e = extract(messages, explicit)
    texts = {i: m["content"] for i, m in enumerate(messages)}
    return [texts[p.ref[0]][p.start : p.end] for p in e.passages], [p.title for p in e.passages], e.question


def test_a_context_block_of_numbered_titled_passages_and_the_question_after_it():
    content = (
        "Answer briefly.\n\nContext:\n[1] Paris\nParis is in France. It is big.\n\n[2] Oslo\nOslo is in Norway."
        "\n\nQuestion: Where is Paris?"
    )
    texts, titles, question = bodies([{"role": "user", "content": content}])
    assert texts == ["Paris is in France. It is big.", "Oslo is in Norway."]
    assert titles == ["Paris", "Oslo"] and question == "Where is Paris?"


def test_tool_results_are_context_and_the_question_is_the_last_user_turn():
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Who wrote Hamlet?"},
        {"role": "assistant", "content": "", "tool_calls": [{"id": "c", "type": "function"}]},
        {"role": "tool", "tool_call_id": "c", "content": "Hamlet is a tragedy by Shakespeare."},
        {"role": "tool", "tool_call_id": "d", "content": "Passage 1: Kiwis\nKiwis are birds.\nPassage 2: Elms\nElms."},
    ]
    texts, titles, question = bodies(messages)
    assert texts == ["Hamlet is a tragedy by Shakespeare.", "Kiwis are birds.", "Elms."]
    assert titles == [None, "Kiwis", "Elms"] and question == "Who wrote Hamlet?"


def test_xml_tags_with_titles_and_containers():
    content = (
        '<documents><document title="A">Alpha text.</document>\n<document>Beta text.</document></documents>\n'
        "What is alpha?"
    )
    texts, titles, question = bodies([{"role": "user", "content": content}])
    assert texts == ["Alpha text.", "Beta text."] and titles == ["A", None]
    assert question == "What is alpha?"
    texts, _, question = bodies([{"role": "user", "content": "<context>One.\n\nTwo.</context>\nWhy?"}])
    assert texts == ["One.\n\nTwo."] and question == "Why?"


def test_strong_markers_outside_a_block_but_not_a_plain_list():
    marked = "[1] Cats purr.\n[2] Dogs bark.\nWhich animal purrs?"
    texts, _, _ = bodies([{"role": "user", "content": marked}])
    assert texts == ["Cats purr.", "Dogs bark.\nWhich animal purrs?"][:1] + texts[1:]
    assert len(texts) == 2
    plain = "Steps:\n1. open\n2. close\nWhat next?"
    assert bodies([{"role": "user", "content": plain}])[0] == []


def test_assistant_messages_are_never_context_and_parts_are_read():
    messages = [
        {"role": "assistant", "content": "Context:\n[1] x\ny\n[2] z\nw"},
        {"role": "user", "content": [{"type": "text", "text": "Context:\nSome passage.\n\nQuestion: q?"}]},
    ]
    e = extract(messages)
    assert [(p.ref, p.source) for p in e.passages] == [((1, 0), "block")] and e.question == "q?"


def test_explicit_context_by_index_and_by_text():
    messages = [{"role": "system", "content": "Doc one. Doc two."}, {"role": "user", "content": "Ask: why? See ABC."}]
    texts, _, question = bodies(messages, [0])
    assert texts == ["Doc one. Doc two."] and question == "Ask: why? See ABC."
    texts, _, question = bodies(messages, ["See ABC."])
    assert texts == ["See ABC."] and question == "Ask: why?"
    with pytest.raises(InvalidRequestError, match="verbatim"):
        extract(messages, ["not there"])


def test_unclosed_tags_take_linear_time():
    hostile = "<document>" * 50_000 + "text"
    started = time.perf_counter()
    extract([{"role": "user", "content": hostile}])
    assert time.perf_counter() - started < 2.0
