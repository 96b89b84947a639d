"""Request ids, access logs and the per-key rate limit on a live server."""

from __future__ import annotations

import asyncio
import json
import logging
import time

import httpx

from prunekit.app.api.middleware import RateLimit, key_matches
from prunekit.app.api.service import create_app
from prunekit.app.settings import Settings
from tests.conftest import LiveServer


def test_request_ids_are_echoed_or_made(live_service):
    response = httpx.get(f"{live_service.url}/health", headers={"X-Request-ID": "abc-123"})
    assert response.headers["x-request-id"] == "abc-123"
    made = httpx.get(f"{live_service.url}/health", headers={"X-Request-ID": "bad id with spaces"})
    assert len(made.headers["x-request-id"]) == 32


def test_rate_limit_per_key(tmp_path, embedded_model, caplog):
    settings = Settings(api_keys=["k1", "k2"], rate_limit_per_minute=60, data_dir=tmp_path)
    with (
        LiveServer(create_app(settings, model=embedded_model)) as server,
        caplog.at_level(logging.INFO, "prunekit.access"),
    ):
        k1 = {"Authorization": "Bearer k1"}
        statuses = [httpx.get(f"{server.url}/v1/models", headers=k1).status_code for _ in range(12)]
        assert statuses[:10] == [200] * 10  # the burst (per_minute / 6)
        limited = httpx.get(f"{server.url}/v1/models", headers=k1)
        assert limited.status_code == 429 and int(limited.headers["retry-after"]) >= 1
        assert limited.json()["error"]["code"] == "rate_limited"
        # another key has its own bucket; health checks are never limited
        assert httpx.get(f"{server.url}/v1/models", headers={"Authorization": "Bearer k2"}).status_code == 200
        assert httpx.get(f"{server.url}/health").status_code == 200
    lines = [json.loads(r.message) for r in caplog.records if r.name == "prunekit.access"]
    assert {"request_id", "method", "path", "status", "ms", "client"} <= set(lines[0])
    assert any(line["status"] == 429 for line in lines)
    assert all("k1" not in line["client"] for line in lines)  # keys are hashed in logs


def test_an_unexpected_error_is_a_json_500_and_the_connection_stays_usable(tmp_path, embedded_model, caplog):
    app = create_app(Settings(data_dir=tmp_path), model=embedded_model)

    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError("secret internal detail")

    with LiveServer(app) as server, httpx.Client(base_url=server.url) as client, caplog.at_level(logging.ERROR):
        response = client.get("/boom")
        assert response.status_code == 500
        assert response.json()["error"]["type"] == "internal_error"
        assert "secret" not in response.text  # no detail, no traceback reaches the client
        # the same keep-alive connection serves the next request (no reset after the 500)
        assert client.get("/health").status_code == 200
    assert any("secret internal detail" in (r.exc_text or "") for r in caplog.records)  # but it is logged


def _status_of(limiter: RateLimit, token: str | None = None, address: str = "10.0.0.1") -> int:
    """One request through the rate limiter in front of an app that always answers 200."""

    async def ok(scope, receive, send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    limiter.app = ok
    headers = [(b"authorization", f"Bearer {token}".encode())] if token else []
    scope = {"type": "http", "path": "/v1/models", "headers": headers, "client": (address, 1)}
    sent: list[dict] = []

    async def receive() -> dict:
        return {"type": "http.request"}

    async def send(message: dict) -> None:
        sent.append(message)

    asyncio.run(limiter(scope, receive, send))
    return sent[0]["status"]


def test_made_up_tokens_share_their_address_bucket() -> None:
    limiter = RateLimit(None, per_minute=60, burst=3, api_keys=["k1"])
    statuses = [_status_of(limiter, token=f"made-up-{i}") for i in range(4)]
    assert statuses == [200, 200, 200, 429]  # a fresh token per request does not earn a fresh bucket
    assert _status_of(limiter, token="k1") == 200  # a configured key has its own
    assert _status_of(limiter, address="10.0.0.2") == 200  # and so has another address


def test_refilled_buckets_are_dropped() -> None:
    limiter = RateLimit(None, per_minute=120, burst=1)  # refills in 0.5 s
    for i in range(20):
        _status_of(limiter, address=f"10.0.1.{i}")
    assert len(limiter._buckets) == 20
    time.sleep(0.6)
    _status_of(limiter, address="10.0.2.1")
    assert list(limiter._buckets) == ["ip:10.0.2.1"]


def test_any_bytes_in_the_api_key_are_a_401_never_a_500(tmp_path, embedded_model):
    settings = Settings(api_keys=["k1"], data_dir=tmp_path)
    with LiveServer(create_app(settings, model=embedded_model)) as server, httpx.Client(base_url=server.url) as client:
        for token in (b"\xc3\xa9t\xc3\xa9", b"\xff\xfe", b"k1\xe9"):
            response = client.get("/v1/models", headers={"authorization": b"Bearer " + token})
            assert response.status_code == 401, token
            assert response.json()["error"]["code"] == "invalid_api_key"
        assert client.get("/v1/models", headers={"Authorization": "Bearer k1"}).status_code == 200
        # with keys on, /health tells an anonymous caller nothing about the deployment
        assert client.get("/health").json() == {"status": "ok"}


def test_key_matches_compares_bytes():
    assert key_matches("k1", ["k0", "k1"])
    assert not key_matches("k\xe9", ["k1"])  # a latin-1 header value: wrong, not an error
    assert key_matches("cl\xc3\xa9", ["clé"])  # a UTF-8 key arrives as its bytes, decoded as latin-1


def test_host_and_origin_allow_list_on_loopback(tmp_path, embedded_model):
    """Bound to 127.0.0.1: other host names (DNS rebinding) and other web pages (CSRF from any site the user opens)
    are refused; the service's own page and clients without an Origin are served."""
    app = create_app(Settings(data_dir=tmp_path), model=embedded_model)
    with LiveServer(app) as server, httpx.Client(base_url=server.url) as client:
        own = server.url
        assert client.get("/v1/models").status_code == 200
        assert client.get("/v1/models", headers={"Origin": own}).status_code == 200
        for headers in ({"Host": "evil.example"}, {"Host": "evil.example:8000"}, {"Origin": "https://evil.example"}):
            refused = client.get("/v1/models", headers=headers)
            assert refused.status_code == 403, headers
            assert refused.json()["error"]["code"] == "forbidden_host"
        assert client.get("/v1/models", headers={"Host": f"localhost:{server.port}"}).status_code == 200
        assert client.get("/v1/models", headers={"Origin": "null"}).status_code == 403  # sandboxed frames, files


def test_host_and_origin_lists_are_configurable(tmp_path, embedded_model):
    settings = Settings(
        data_dir=tmp_path, allowed_hosts="api.example.com,127.0.0.1", allowed_origins="https://app.example.com"
    )
    with LiveServer(create_app(settings, model=embedded_model)) as server, httpx.Client(base_url=server.url) as c:
        assert c.get("/v1/models", headers={"Host": "api.example.com"}).status_code == 200
        assert c.get("/v1/models", headers={"Host": "localhost"}).status_code == 403
        assert c.get("/v1/models", headers={"Origin": "https://app.example.com"}).status_code == 200
        assert c.get("/v1/models", headers={"Origin": "https://other.example.com"}).status_code == 403
    assert Settings(host="0.0.0.0").host_allow_list() == ["*"]  # exposed on purpose: any name, keys guard it
    assert "localhost" in Settings(host="127.0.0.1").host_allow_list()
