"""The pruning proxy in front of a real upstream (llama-cpp-python's own server on the embedded GGUF), called with
the official `openai` client, LangChain's ChatOpenAI, LiteLLM and plain httpx. One upstream and one proxy per module;
every request is short (a few small passages, a few answer tokens)."""

from __future__ import annotations

import json
import os
import time
from types import SimpleNamespace

import httpx
import pytest

from prunekit.app.proxy import ProxySettings, create_proxy_app
from prunekit.app.proxy.background import serve_in_background
from prunekit.app.proxy.llama_server import LLAMA_SERVER_MODEL, llama_server, llama_server_available
from tests.conftest import free_port, require_module, require_part

pytestmark = pytest.mark.slow

PASSAGES = [
    ("Eiffel Tower", "The Eiffel Tower is a wrought-iron lattice tower in Paris, France. It was completed in 1889."),
    ("Bananas", "Bananas are rich in potassium. They grow in tropical regions around the world."),
    ("Mount Fuji", "Mount Fuji is the highest mountain in Japan. Its summit is 3776 metres above sea level."),
    ("Jazz", "Jazz originated in New Orleans in the late 19th century. It uses swing and blue notes."),
]
QUESTION = "In which city is the Eiffel Tower?"


def context_message(question: str = QUESTION, opening: str = "Answer") -> list[dict[str, str]]:
    numbered = "\n\n".join(f"[{i + 1}] {t}\n{p}" for i, (t, p) in enumerate(PASSAGES))
    content = f"{opening} with a short phrase.\n\nContext:\n{numbered}\n\nQuestion: {question}"
    return [{"role": "user", "content": content}]


@pytest.fixture(scope="module")
def upstream():
    require_part(llama_server_available(), "llama-cpp-python's server: pip install 'llama-cpp-python[server]'")
    with llama_server(n_ctx=2048) as base_url:
        yield base_url


@pytest.fixture(scope="module")
def pruner():
    from prunekit.context_pruner import default_pruner

    return default_pruner()


class Recorder(httpx.AsyncBaseTransport):
    """The proxy's real transport, keeping the bytes of every request it sends upstream."""

    def __init__(self) -> None:
        self.inner = httpx.AsyncHTTPTransport()
        self.bodies: list[bytes] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.bodies.append(await request.aread())
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self.inner.aclose()


@pytest.fixture(scope="module")
def proxy(upstream, pruner):
    recorder = Recorder()
    settings = ProxySettings(upstream=upstream, mode="on", key_modes="sk-off=off", max_body_bytes=200_000)
    with serve_in_background(create_proxy_app(settings, pruner, transport=recorder)) as url:
        yield SimpleNamespace(url=f"{url}/v1", root=url, recorder=recorder)


def chat(url: str, messages, **extra) -> httpx.Response:
    body = {"model": LLAMA_SERVER_MODEL, "messages": messages, "max_tokens": 8, "temperature": 0, **extra}
    return httpx.post(f"{url}/chat/completions", json=body, timeout=120)


def test_the_openai_client_gets_a_pruned_answer_with_savings(proxy, upstream):
    from openai import OpenAI

    client = OpenAI(base_url=proxy.url, api_key="sk-test")
    raw = client.chat.completions.with_raw_response.create(
        model=LLAMA_SERVER_MODEL, messages=context_message(), max_tokens=8, temperature=0
    )
    completion = raw.parse()
    assert raw.headers["x-prunekit-pruned"] == "yes" and raw.headers["x-prunekit-passages"] == "4"
    before, after = (
        int(raw.headers["x-prunekit-context-tokens-before"]),
        int(raw.headers["x-prunekit-context-tokens-after"]),
    )
    assert 0 < after < before
    assert completion.usage.model_extra["context_tokens_removed"] == before - after
    direct = chat(upstream, context_message()).json()
    assert completion.usage.prompt_tokens < direct["usage"]["prompt_tokens"]
    sent = json.loads(proxy.recorder.bodies[-1])["messages"][0]["content"]
    assert "Eiffel Tower is a wrought-iron lattice tower in Paris" in sent and "potassium" not in sent


def test_streams_pass_through_chunk_by_chunk(proxy, upstream):
    def first_token(url: str, opening: str) -> tuple[float, int, httpx.Headers]:
        # a prompt of its own from the first token on: the server's cache holds no prefix of it
        messages = context_message(opening=opening)
        body = {"model": LLAMA_SERVER_MODEL, "messages": messages, "max_tokens": 8, "stream": True}
        started, first, events = time.perf_counter(), None, 0
        with httpx.stream("POST", f"{url}/chat/completions", json=body, timeout=120) as response:
            for line in response.iter_lines():
                if line.startswith("data:") and '"content"' in line and first is None:
                    first = time.perf_counter() - started
                events += line.startswith("data:")
        assert first is not None
        return first, events, response.headers

    direct_first, _, _ = first_token(upstream, "Reply")
    proxy_first, events, headers = first_token(proxy.url, "Respond")
    assert events >= 3 and headers["x-prunekit-pruned"] == "yes"
    prune_s = float(headers["x-prunekit-prune-ms"]) / 1000
    assert proxy_first <= direct_first + prune_s + 2.0  # slack: a loaded shared CPU


def test_langchain_and_litellm_work_through_the_proxy(proxy):
    from langchain_openai import ChatOpenAI

    llm = ChatOpenAI(base_url=proxy.url, api_key="sk-test", model=LLAMA_SERVER_MODEL, max_tokens=8, temperature=0)
    assert isinstance(llm.invoke(context_message()[0]["content"]).content, str)
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # no network at import
    litellm = require_module("litellm", "LiteLLM as a client of the proxy")
    reply = litellm.completion(model=f"openai/{LLAMA_SERVER_MODEL}", api_base=proxy.url, api_key="sk-test",
                               messages=context_message(), max_tokens=8)  # fmt: skip
    assert isinstance(reply.choices[0].message.content, str)


def test_fail_open_forwards_the_original_bytes(upstream, pruner):
    class Broken:
        tokenizer = pruner.tokenizer

        def prune(self, *args, **kwargs):
            raise RuntimeError("the pruner broke")

    recorder = Recorder()
    settings = ProxySettings(upstream=upstream, mode="on")
    raw = json.dumps({"model": LLAMA_SERVER_MODEL, "messages": context_message(), "max_tokens": 4}, indent=1).encode()
    with serve_in_background(create_proxy_app(settings, lambda: Broken(), transport=recorder)) as url:
        response = httpx.post(f"{url}/v1/chat/completions", content=raw, headers={"content-type": "application/json"},
                              timeout=120)  # fmt: skip
    assert response.status_code == 200 and response.json()["choices"][0]["message"]["content"] is not None
    assert response.headers["x-prunekit-pruned"] == "error" and response.headers["x-prunekit-reason"] == "pruner_failed"
    assert recorder.bodies == [raw]


def test_models_and_upstream_errors_pass_through(proxy, upstream):
    assert httpx.get(f"{proxy.url}/models").json() == httpx.get(f"{upstream}/models").json()
    bad = {"model": LLAMA_SERVER_MODEL, "messages": context_message(), "max_tokens": "many"}
    direct = httpx.post(f"{upstream}/chat/completions", json=bad, timeout=60)
    relayed = httpx.post(f"{proxy.url}/chat/completions", json=bad, timeout=60)
    assert relayed.status_code == direct.status_code >= 400 and relayed.json() == direct.json()


def test_switches_keep_rules_and_explain(proxy):
    off = chat(proxy.url, context_message(), prunekit={"prune": False})
    assert (off.headers["x-prunekit-pruned"], off.headers["x-prunekit-reason"]) == ("skipped", "off")
    by_key = httpx.post(f"{proxy.url}/chat/completions", headers={"authorization": "Bearer sk-off"}, timeout=120,
                        json={"model": LLAMA_SERVER_MODEL, "messages": context_message(), "max_tokens": 4})  # fmt: skip
    assert by_key.headers["x-prunekit-reason"] == "off"
    kept = chat(
        proxy.url, context_message("Is the 3776 figure right?"), prunekit={"keep": ["potassium"], "explain": True}
    )
    dropped = [s for p in kept.json()["prunekit"]["explain"] for s in p["dropped"]]
    assert kept.headers["x-prunekit-pruned"] == "yes"
    assert not any("3776" in s or "potassium" in s for s in dropped)
    metrics = httpx.get(f"{proxy.root}/metrics").text
    assert 'prunekit_proxy_requests_total{pruned="yes",reason="pruned"}' in metrics
    assert "prunekit_proxy_context_tokens_saved_total" in metrics


def test_bad_requests_are_4xx_that_say_why(proxy):
    bad = chat(proxy.url, context_message(), prunekit={"threshold": 3})
    assert bad.status_code == 400 and "threshold" in bad.json()["error"]["message"]
    assert chat(proxy.url, context_message(), prunekit={"keep": ["("]}).status_code == 400
    assert chat(proxy.url, "not a list").status_code == 400
    big = httpx.post(f"{proxy.url}/chat/completions", content=b"x" * 300_000, timeout=30)
    assert big.status_code == 413


def test_an_unreachable_upstream_is_a_502():
    settings = ProxySettings(upstream=f"http://127.0.0.1:{free_port()}/v1", mode="off", connect_timeout_s=2)
    with serve_in_background(create_proxy_app(settings, lambda: None)) as url:
        response = httpx.post(f"{url}/v1/chat/completions", json={"model": "m", "messages": context_message()})
    assert response.status_code == 502 and "upstream" in response.json()["error"]["message"]
