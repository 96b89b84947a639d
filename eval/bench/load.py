"""`python -m prunekit.eval.bench.load`: a load test of a running prunekit service, with its memory watched.

`clients` concurrent clients (threads, each with its own HTTP connection, like independent users) keep
sending requests for `seconds`, each client cycling through `POST /v1/prune` (a question and three short
passages), a non-streaming `POST /v1/chat/completions`, `/v1/prune` again, then a streaming chat
completion. Every answer is checked: a non-2xx status, a body that is not the documented shape, or an
error sent inside a stream counts as an error, never as a fast success.

Figures (flat keys, floats):
- `requests`, `errors`, `error_rate`, `seconds` (wall time until the last request finished), `clients`;
- `throughput_rps`: successful requests per second; `completion_tokens` and `completion_tokens_per_s`
  (from the chat answers' usage);
- per endpoint `prune.*`, `chat.*` (non-streaming), `chat_stream.*`: `requests`, `errors`, `p50_ms`,
  `p99_ms`, `max_ms` over successful requests (nearest-rank percentiles, so every figure is a latency
  that was observed; absent when an endpoint had no success), and `chat_stream.ttft_p50_ms` /
  `ttft_p99_ms` (time to the first text delta);
- `errors.<kind>`: `http_<status>`, `transport` (connection failures, timeouts), `malformed`,
  `stream_error` (an error event inside a stream);
- with `server_pid`, the server's resident memory from `/proc/<pid>/status`, sampled every second:
  `rss.start_mb`, `rss.max_mb`, `rss.end_mb`, `rss.samples`, and `server_exited` (1.0 when the process
  vanished during the run: the memory figures then stop at its last sample).

The service limits each key to `PRUNEKIT_RATE_LIMIT_PER_MINUTE` (600 by default); a load test that
outruns it counts 429s as errors, so serve with `PRUNEKIT_RATE_LIMIT_PER_MINUTE=0` to measure capacity.

    python -m prunekit.eval.bench.load --url http://127.0.0.1:8000 --clients 16 --seconds 60 \\
        --pid "$(pgrep -n prunekit)"
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from prunekit.decoding.errors import PrunekitError

__all__ = ["LoadTestError", "percentile", "read_rss_mb", "run_load"]

log = logging.getLogger(__name__)

ENDPOINTS = ("prune", "chat", "chat_stream")
# Each client's cycle: the pruner and the chat model alternate, streaming and not in turn.
SCHEDULE = ("prune", "chat", "prune", "chat_stream")
CHAT_MODEL = "prunekit-chat"

# Small hand-written work items: the point is the service's behaviour under load, not the answers.
PRUNE_ITEMS: tuple[tuple[str, tuple[str, str, str]], ...] = (
    (
        "When was the Eiffel Tower built?",
        (
            "The Eiffel Tower was built between 1887 and 1889. It was the entrance arch of the 1889 World's Fair.",
            "Paris is the capital of France. It is known for its cafes and museums.",
            "Gustave Eiffel's company designed and built the tower. It is made of wrought iron.",
        ),
    ),
    (
        "What do bees make?",
        (
            "Honey bees make honey from the nectar of flowers. They store it in wax combs.",
            "Wasps are predators. Many species build paper nests.",
            "Bees also produce beeswax, which they secrete from glands on their abdomen.",
        ),
    ),
    (
        "How long is the Nile?",
        (
            "The Amazon carries more water than any other river.",
            "The Nile is about 6,650 kilometres long. It flows north into the Mediterranean Sea.",
            "Egypt's farms depend on the Nile. Its floods once came every summer.",
        ),
    ),
)
CHAT_QUESTIONS = (
    "What is 2+2?",
    "Name a primary color.",
    "What is the capital of France?",
    "Say hello in one word.",
    "What day comes after Monday?",
)


class LoadTestError(PrunekitError):
    """The load test cannot run (server unreachable, key refused, bad arguments): the message says what to fix."""


class _Malformed(Exception):
    """An answer that does not have the documented shape."""


@dataclass
class _Outcome:
    endpoint: str
    latency_s: float
    error: str | None = None  # the error kind, None for a success
    detail: str = ""
    ttft_s: float | None = None
    completion_tokens: int = 0


@dataclass
class _Tally:
    """Live counts shared by the client threads, for the progress line."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    requests: int = 0
    errors: int = 0

    def add(self, outcome: _Outcome) -> None:
        with self.lock:
            self.requests += 1
            self.errors += outcome.error is not None


def percentile(values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile: the smallest observed value with at least p% of the values at or below it.

    >>> percentile([10, 20, 30, 40], 50), percentile([10, 20, 30, 40], 99)
    (20, 40)
    """
    if not values:
        raise ValueError("percentile of no values")
    ordered = sorted(values)
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return ordered[rank - 1]


def read_rss_mb(pid: int) -> float:
    """Resident memory of process `pid` in MB (VmRSS), read from /proc; raises LoadTestError when it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except (FileNotFoundError, ProcessLookupError) as exc:
        raise LoadTestError(f"no process {pid} to watch (is the server running? pass its pid)") from exc
    raise LoadTestError(f"process {pid} reports no resident memory (a zombie or a kernel thread?)")


# ------------------------------------------------------------------------------------------ one request each


def _prune(client: httpx.Client, i: int) -> _Outcome:
    question, contexts = PRUNE_ITEMS[i % len(PRUNE_ITEMS)]
    started = time.perf_counter()
    response = client.post("/v1/prune", json={"items": [{"question": question, "contexts": list(contexts)}]})
    latency = time.perf_counter() - started
    if not response.is_success:
        return _Outcome("prune", latency, f"http_{response.status_code}", response.text[:200])
    try:
        body = response.json()
        results = body["results"]
        if len(results) != 1 or len(results[0]) != len(contexts):
            raise _Malformed(f"expected 1 x {len(contexts)} results, got {[len(r) for r in results]}")
        if not all(isinstance(r["pruned_text"], str) for r in results[0]) or body["usage"]["context_tokens"] <= 0:
            raise _Malformed("results without pruned_text or usage")
    except (ValueError, KeyError, TypeError, _Malformed) as exc:
        return _Outcome("prune", latency, "malformed", str(exc)[:200])
    return _Outcome("prune", latency)


def _chat_body(i: int, max_tokens: int, stream: bool) -> dict[str, Any]:
    body: dict[str, Any] = {
        "model": CHAT_MODEL,
        "messages": [{"role": "user", "content": CHAT_QUESTIONS[i % len(CHAT_QUESTIONS)]}],
        "max_tokens": max_tokens,
    }
    if stream:
        body |= {"stream": True, "stream_options": {"include_usage": True}}
    return body


def _chat(client: httpx.Client, i: int, max_tokens: int) -> _Outcome:
    started = time.perf_counter()
    response = client.post("/v1/chat/completions", json=_chat_body(i, max_tokens, stream=False))
    latency = time.perf_counter() - started
    if not response.is_success:
        return _Outcome("chat", latency, f"http_{response.status_code}", response.text[:200])
    try:
        body = response.json()
        if not isinstance(body["choices"][0]["message"]["content"], str):
            raise _Malformed("choices[0].message.content is not a string")
        tokens = body["usage"]["completion_tokens"]
        if not isinstance(tokens, int) or tokens < 0:
            raise _Malformed(f"usage.completion_tokens is {tokens!r}")
    except (ValueError, KeyError, IndexError, TypeError, _Malformed) as exc:
        return _Outcome("chat", latency, "malformed", str(exc)[:200])
    return _Outcome("chat", latency, completion_tokens=tokens)


def _chat_stream(client: httpx.Client, i: int, max_tokens: int) -> _Outcome:
    """A streamed answer must end in [DONE], with a finish reason and a usage chunk, and carry no error."""
    started = time.perf_counter()
    ttft: float | None = None
    usage: dict[str, Any] | None = None
    finished = done = False
    with client.stream("POST", "/v1/chat/completions", json=_chat_body(i, max_tokens, stream=True)) as response:
        if not response.is_success:
            response.read()
            latency = time.perf_counter() - started
            return _Outcome("chat_stream", latency, f"http_{response.status_code}", response.text[:200])
        try:
            for line in response.iter_lines():
                if not line.startswith("data:"):
                    continue  # blank separators, comments (pings), other fields
                data = line[5:].removeprefix(" ")
                if done:
                    raise _Malformed("data after [DONE]")
                if data == "[DONE]":
                    done = True
                    continue
                chunk = json.loads(data)
                if "error" in chunk:
                    latency = time.perf_counter() - started
                    return _Outcome("chat_stream", latency, "stream_error", str(chunk["error"])[:200])
                for choice in chunk["choices"]:
                    if choice["delta"].get("content") and ttft is None:
                        ttft = time.perf_counter() - started
                    finished |= choice.get("finish_reason") is not None
                if chunk.get("usage"):
                    usage = chunk["usage"]
            if not (done and finished and usage is not None):
                raise _Malformed(f"stream ended with done={done}, finish_reason={finished}, usage={usage is not None}")
            tokens = usage["completion_tokens"]
        except (ValueError, KeyError, TypeError, AttributeError, _Malformed) as exc:
            return _Outcome("chat_stream", time.perf_counter() - started, "malformed", str(exc)[:200])
    return _Outcome("chat_stream", time.perf_counter() - started, ttft_s=ttft, completion_tokens=tokens)


def _one(client: httpx.Client, endpoint: str, i: int, max_tokens: int) -> _Outcome:
    started = time.perf_counter()
    try:
        if endpoint == "prune":
            return _prune(client, i)
        if endpoint == "chat":
            return _chat(client, i, max_tokens)
        return _chat_stream(client, i, max_tokens)
    except httpx.HTTPError as exc:  # refused, reset, timed out: the server failed this request
        return _Outcome(endpoint, time.perf_counter() - started, "transport", f"{type(exc).__name__}: {exc}"[:200])


# ------------------------------------------------------------------------------------------ the run


def _client_loop(
    index: int,
    base_url: str,
    headers: dict[str, str],
    deadline: float,
    max_tokens: int,
    timeout_s: float,
    tally: _Tally,
) -> list[_Outcome]:
    outcomes: list[_Outcome] = []
    with httpx.Client(base_url=base_url, headers=headers, timeout=timeout_s) as client:
        step = index  # clients start at different places of the cycle, so the mix is even from the first second
        while time.monotonic() < deadline:
            outcome = _one(client, SCHEDULE[step % len(SCHEDULE)], step, max_tokens)
            outcomes.append(outcome)
            tally.add(outcome)
            step += 1
    return outcomes


def _preflight(base_url: str, headers: dict[str, str]) -> None:
    """Fail fast, with a message, when the server is not there or refuses the key."""
    try:
        health = httpx.get(f"{base_url}/health", timeout=10)
        models = httpx.get(f"{base_url}/v1/models", headers=headers, timeout=10)
    except httpx.HTTPError as exc:
        raise LoadTestError(f"cannot reach the service at {base_url}: {exc}") from exc
    if not health.is_success:
        raise LoadTestError(f"GET {base_url}/health answered {health.status_code}: is this a prunekit service?")
    if models.status_code == 401:
        raise LoadTestError("the service requires an API key: pass --api-key (api_key=) with one of its keys")
    if not models.is_success:
        raise LoadTestError(f"GET {base_url}/v1/models answered {models.status_code}: {models.text[:200]}")
    try:
        ids = [m.get("id") for m in models.json().get("data", [])]
    except (ValueError, AttributeError, TypeError) as exc:  # HTML, a JSON list, entries that are not objects
        raise LoadTestError(
            f"GET {base_url}/v1/models is not an OpenAI model list: is this a prunekit service?"
        ) from exc
    if CHAT_MODEL not in ids:
        raise LoadTestError(f"the service does not serve {CHAT_MODEL!r} (it lists {ids})")


def _figures(outcomes: list[_Outcome], elapsed: float, clients: int, rss: list[float]) -> dict[str, float]:
    ok = [o for o in outcomes if o.error is None]
    tokens = sum(o.completion_tokens for o in ok)
    figures: dict[str, float] = {
        "clients": float(clients),
        "seconds": elapsed,
        "requests": float(len(outcomes)),
        "errors": float(len(outcomes) - len(ok)),
        "error_rate": (len(outcomes) - len(ok)) / len(outcomes) if outcomes else 0.0,
        "throughput_rps": len(ok) / elapsed,
        "completion_tokens": float(tokens),
        "completion_tokens_per_s": tokens / elapsed,
    }
    for endpoint in ENDPOINTS:
        mine = [o for o in outcomes if o.endpoint == endpoint]
        latencies = [o.latency_s * 1000 for o in mine if o.error is None]
        figures[f"{endpoint}.requests"] = float(len(mine))
        figures[f"{endpoint}.errors"] = float(len(mine) - len(latencies))
        if latencies:
            figures[f"{endpoint}.p50_ms"] = percentile(latencies, 50)
            figures[f"{endpoint}.p99_ms"] = percentile(latencies, 99)
            figures[f"{endpoint}.max_ms"] = max(latencies)
    ttfts = [o.ttft_s * 1000 for o in outcomes if o.error is None and o.ttft_s is not None]
    if ttfts:
        figures["chat_stream.ttft_p50_ms"] = percentile(ttfts, 50)
        figures["chat_stream.ttft_p99_ms"] = percentile(ttfts, 99)
    for kind, count in sorted(Counter(o.error for o in outcomes if o.error).items()):
        figures[f"errors.{kind}"] = float(count)
    if rss:
        figures |= {"rss.start_mb": rss[0], "rss.max_mb": max(rss), "rss.end_mb": rss[-1], "rss.samples": len(rss)}
    return figures


def run_load(
    base_url: str,
    *,
    api_key: str | None = None,
    clients: int = 16,
    seconds: float = 60.0,
    server_pid: int | None = None,
    max_tokens: int = 32,
    timeout_s: float = 120.0,
    on_tick: Callable[[float, int, int], None] | None = None,
) -> dict[str, float]:
    """Load the service at `base_url` for `seconds` with `clients` concurrent clients; return the figures.

    No new request starts after `seconds`; requests in flight finish, and `seconds` in the figures is
    the wall time until the last one did. `on_tick(elapsed_s, requests, errors)` is called every second
    (for a progress display). Raises LoadTestError when the service cannot be load-tested as asked.

    With `prunekit serve` running, `run_load("http://127.0.0.1:8000", clients=2, seconds=5)["throughput_rps"]`
    is requests per second; `python -m prunekit.eval.bench.load --url ...` prints every figure.
    Bad arguments fail before any request:

    >>> run_load("http://127.0.0.1:8000", clients=0)
    Traceback (most recent call last):
    ...
    prunekit.eval.bench.load.LoadTestError: clients must be a positive integer, got 0
    """
    if not isinstance(clients, int) or clients < 1:
        raise LoadTestError(f"clients must be a positive integer, got {clients!r}")
    if not seconds > 0:
        raise LoadTestError(f"seconds must be positive, got {seconds!r}")
    if not isinstance(max_tokens, int) or max_tokens < 1:
        raise LoadTestError(f"max_tokens must be a positive integer, got {max_tokens!r}")
    base_url = base_url.rstrip("/").removesuffix("/v1")
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    rss = [read_rss_mb(server_pid)] if server_pid is not None else []  # also checks that the process exists
    _preflight(base_url, headers)

    tally = _Tally()
    results: list[list[_Outcome]] = [[] for _ in range(clients)]
    started = time.monotonic()
    deadline = started + seconds

    def client(i: int) -> None:
        results[i] = _client_loop(i, base_url, headers, deadline, max_tokens, timeout_s, tally)

    threads = [threading.Thread(target=client, args=(i,), name=f"load-client-{i}", daemon=True) for i in range(clients)]
    for thread in threads:
        thread.start()
    # The main thread is the once-a-second sampler: memory of the server, and the progress callback.
    exited = False
    next_tick = started + 1.0
    while alive := [thread for thread in threads if thread.is_alive()]:
        alive[0].join(timeout=max(0.0, next_tick - time.monotonic()))
        if time.monotonic() < next_tick:
            continue
        next_tick += 1.0
        if server_pid is not None and not exited:
            exited = not _sample(server_pid, rss)
        if on_tick is not None:
            on_tick(time.monotonic() - started, tally.requests, tally.errors)
    elapsed = time.monotonic() - started
    if server_pid is not None and not exited:
        exited = not _sample(server_pid, rss)

    outcomes = [o for per_client in results for o in per_client]
    for kind, examples in _examples(outcomes).items():
        log.warning("%d requests failed with %s, e.g. %s", examples[0], kind, examples[1])
    figures = _figures(outcomes, elapsed, clients, rss)
    if server_pid is not None:
        figures["server_exited"] = float(exited)
    return figures


def _sample(pid: int, rss: list[float]) -> bool:
    """Append the server's memory to `rss`; False (and a warning) when the process is gone."""
    try:
        rss.append(read_rss_mb(pid))
    except LoadTestError:
        log.warning("the server process %d exited during the load test (killed for memory?)", pid)
        return False
    return True


def _examples(outcomes: list[_Outcome]) -> dict[str, tuple[int, str]]:
    """Per error kind: how many, and the first one's detail (so a failed run says why)."""
    out: dict[str, tuple[int, str]] = {}
    for o in outcomes:
        if o.error:
            count, detail = out.get(o.error, (0, o.detail))
            out[o.error] = (count + 1, detail)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: run the load test and print its figures as one JSON object on stdout."""
    parser = argparse.ArgumentParser(prog="python -m prunekit.eval.bench.load", description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", required=True, help="the service, e.g. http://127.0.0.1:8000")
    parser.add_argument("--api-key", default=None, help="one of the service's API keys, if it requires one")
    parser.add_argument("--clients", type=int, default=16, help="concurrent clients (default 16)")
    parser.add_argument("--seconds", type=float, default=60.0, help="how long to keep sending (default 60)")
    parser.add_argument("--pid", type=int, default=None, help="the server's process id, to sample its memory")
    parser.add_argument("--max-tokens", type=int, default=32, help="max_tokens of each chat request (default 32)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s", stream=sys.stderr)

    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    columns = (TextColumn("load"), BarColumn(), TextColumn("{task.fields[status]}"), TimeElapsedColumn())
    with Progress(*columns, transient=True, console=_stderr_console()) as progress:
        task = progress.add_task("load", total=args.seconds, status="")

        def tick(elapsed: float, requests: int, errors: int) -> None:
            progress.update(task, completed=min(elapsed, args.seconds), status=f"{requests} requests, {errors} errors")

        try:
            figures = run_load(
                args.url,
                api_key=args.api_key,
                clients=args.clients,
                seconds=args.seconds,
                server_pid=args.pid,
                max_tokens=args.max_tokens,
                on_tick=tick,
            )
        except LoadTestError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
    print(json.dumps(figures, sort_keys=True))
    return 0


def _stderr_console() -> Any:
    from rich.console import Console

    return Console(stderr=True)


if __name__ == "__main__":
    raise SystemExit(main())
