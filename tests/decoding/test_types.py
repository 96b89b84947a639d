import pytest

from prunekit.decoding.errors import InvalidRequestError
from prunekit.decoding.types import ChatChunk, GenerationParams, Usage, collect, normalize_messages


def test_normalize_messages_keeps_role_and_content_only():
    out = normalize_messages([{"role": "user", "content": "hi", "name": "x"}])
    assert out == [{"role": "user", "content": "hi"}]


@pytest.mark.parametrize(
    ("messages", "fragment"),
    [
        ([], "at least one message"),
        ([{"role": "robot", "content": "hi"}], "role must be one of"),
        ([{"role": "user", "content": 3}], "content must be a string"),
        ([{"content": "hi"}], "role must be one of"),
    ],
)
def test_normalize_messages_rejects_bad_input(messages, fragment):
    with pytest.raises(InvalidRequestError, match=fragment):
        normalize_messages(messages)


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"max_tokens": 0}, "max_tokens"),
        ({"temperature": -0.1}, "temperature"),
        ({"temperature": 2.5}, "temperature"),
        ({"top_p": 0.0}, "top_p"),
        ({"stop": ("",)}, "stop"),
        ({"stop": ("a", "b", "c", "d", "e")}, "at most 4"),
        # wrong types, as JSON can bring them
        ({"max_tokens": True}, "max_tokens"),
        ({"temperature": "0.5"}, "temperature"),
        ({"temperature": float("nan")}, "temperature"),
        ({"top_p": None}, "top_p"),
        ({"seed": "42"}, "seed"),
        ({"stop": 7}, "stop"),
        ({"stop": ["ok", 3]}, "stop"),
        ({"frequency_penalty": 2.5}, "frequency_penalty"),
        ({"presence_penalty": -3}, "presence_penalty"),
        ({"presence_penalty": "0.5"}, "presence_penalty"),
        ({"repetition_penalty": 0}, "repetition_penalty"),
        ({"repetition_penalty": -1.1}, "repetition_penalty"),
        ({"repetition_penalty": 2.5}, "repetition_penalty"),
        ({"repetition_penalty": float("nan")}, "repetition_penalty"),
        ({"repetition_penalty": "1.1"}, "repetition_penalty"),
        ({"repetition_penalty": True}, "repetition_penalty"),
    ],
)
def test_generation_params_reject_out_of_range(kwargs, fragment):
    with pytest.raises(InvalidRequestError, match=fragment):
        GenerationParams(**kwargs)


def test_repetition_penalty_none_and_one_leave_logits_alone():
    # None (not asked for: a remote server's default) and 1.0 (asked off) both mean no guard in process
    assert not GenerationParams().penalized and not GenerationParams(repetition_penalty=1.0).penalized
    assert GenerationParams(repetition_penalty=1.1).penalized
    assert GenerationParams(repetition_penalty=2).repetition_penalty == 2  # the upper bound is allowed


def test_generation_params_accept_a_single_stop_string():
    assert GenerationParams(stop="\n").stop == ("\n",)
    assert GenerationParams(stop=None).stop == ()
    assert GenerationParams(stop=["a", "b"]).stop == ("a", "b")  # a JSON list becomes a tuple


def test_collect_joins_chunks_and_takes_the_final_usage():
    result = collect([ChatChunk("Hel"), ChatChunk("lo"), ChatChunk("", "length", Usage(3, 2))], model="m")
    assert (result.text, result.finish_reason, result.usage.total_tokens, result.model) == ("Hello", "length", 5, "m")
