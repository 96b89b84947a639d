"""OpenAI's chat `logprobs` object from `TokenLogprob`s, checked against the official client's own types."""

import json
from dataclasses import asdict

from openai.types.chat import ChatCompletion, ChatCompletionChunk

from prunekit.app.api.logprobs import UNLIKELY_LOGPROB, openai_logprobs
from prunekit.decoding.types import TokenLogprob

PARIS = TokenLogprob(
    " Paris", -0.1, tuple(b" Paris"), top=((" Paris", -0.1, tuple(b" Paris")), (" Lyon", -2.5, (32, 76)))
)
HALF_E = TokenLogprob("\ufffd", 0.0, (0xC3,), top=(("\ufffd", 0.0, (0xC3,)),))  # a token ending inside "é"
MASKED = TokenLogprob("x", float("-inf"), (120,), top=(("y", float("-inf"), (121,)),))


def test_entries_keep_order_bytes_and_alternatives():
    body = openai_logprobs([PARIS, HALF_E])
    assert body["refusal"] is None
    assert body["content"] == [
        {
            "token": " Paris",
            "logprob": -0.1,
            "bytes": list(b" Paris"),
            "top_logprobs": [
                {"token": " Paris", "logprob": -0.1, "bytes": list(b" Paris")},
                {"token": " Lyon", "logprob": -2.5, "bytes": [32, 76]},
            ],
        },
        {
            "token": "\ufffd",
            "logprob": 0.0,
            "bytes": [0xC3],
            "top_logprobs": [{"token": "\ufffd", "logprob": 0.0, "bytes": [0xC3]}],
        },
    ]


def test_no_tokens_and_no_alternatives():
    assert openai_logprobs([]) == {"content": [], "refusal": None}
    plain = TokenLogprob("a", -1.0, (97,))
    assert openai_logprobs([plain])["content"][0]["top_logprobs"] == []  # logprobs without top_logprobs


def test_impossible_tokens_get_openais_stand_in_and_the_body_is_strict_json():
    body = openai_logprobs([MASKED])
    assert body["content"][0]["logprob"] == body["content"][0]["top_logprobs"][0]["logprob"] == UNLIKELY_LOGPROB
    json.dumps(body, allow_nan=False)  # -Infinity is not JSON


def test_the_dict_form_of_stream_events_formats_the_same():
    items = [PARIS, HALF_E, MASKED]
    assert openai_logprobs([asdict(item) for item in items]) == openai_logprobs(items)
    assert openai_logprobs(json.loads(json.dumps([asdict(PARIS)]))) == openai_logprobs([PARIS])


def test_the_official_client_reads_it_in_a_completion_and_a_chunk():
    logprobs = openai_logprobs([PARIS, HALF_E])
    completion = ChatCompletion.model_validate(
        {
            "id": "chatcmpl-1",
            "object": "chat.completion",
            "created": 0,
            "model": "SmolLM2-135M-Instruct",
            "choices": [
                {
                    "index": 0,
                    "finish_reason": "stop",
                    "message": {"role": "assistant", "content": " Paris\u00e9"},
                    "logprobs": logprobs,
                }
            ],
        }
    )
    content = completion.choices[0].logprobs.content
    assert [c.token for c in content] == [" Paris", "\ufffd"] and content[0].top_logprobs[1].token == " Lyon"
    assert bytes(content[1].bytes) == b"\xc3"
    chunk = ChatCompletionChunk.model_validate(
        {
            "id": "chatcmpl-1",
            "object": "chat.completion.chunk",
            "created": 0,
            "model": "SmolLM2-135M-Instruct",
            "choices": [{"index": 0, "delta": {"content": " Paris"}, "logprobs": openai_logprobs([PARIS])}],
        }
    )
    assert chunk.choices[0].logprobs.content[0].logprob == -0.1
