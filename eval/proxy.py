"""`prunekit eval proxy`: the pruning proxy against the same upstream reached directly, on HotpotQA.

Each question goes, as a plain OpenAI chat request, once straight to the upstream and once through the proxy
(alternating which goes first, so neither always finds the other's prompt prefix in the server's cache), in two
shapes:
- `user`: one user message, the ten passages numbered in a "Context:" block, then "Question: ...";
- `tool`: an agent loop's shape: the question as the user turn, an assistant tool call, and the passages as the
  tool's numbered result.
Metrics (`<shape>_<direct|proxy>.<metric>`, means over questions): `answer_f1`, `answer_em` (SQuAD's), `prompt_tokens`
(the upstream's own count of the prompt it read), `seconds` (end to end, as the client sees it), `error_rate`; and
`<shape>_proxy.prompt_token_reduction` (1 - proxy / direct prompt tokens, summed over questions both answered),
`<shape>_proxy.f1_delta_points` (proxy minus direct F1, in points), `<shape>_proxy.latency_ratio` (proxy / direct
seconds), `<shape>_proxy.pruned_share` (share of requests the proxy pruned).

`eval/` never imports `app/`: the upstream and the proxy come in as base URLs; the CLI starts both (llama-cpp-python's
own server on the embedded GGUF, and `app.proxy` in front of it).
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx

from prunekit.eval.harness import EvalResult, progress_bar
from prunekit.eval.metrics.qa import exact_match, max_over_golds, token_f1
from prunekit.eval.qa import QAItem, load_qa

__all__ = ["SHAPES", "evaluate_proxy", "messages_for"]

SHAPES = ("user", "tool")
INSTRUCTION = "Answer the question from the context with a short phrase only."
TOOL_INSTRUCTION = "Answer the user's question from the search results with a short phrase only."


def _numbered(item: QAItem) -> str:
    return "\n\n".join(f"[{i + 1}] {title}\n{text}" for i, (title, text) in enumerate(zip(item.titles, item.passages,
                                                                                           strict=True)))  # fmt: skip


def messages_for(item: QAItem, shape: str) -> list[dict[str, Any]]:
    """The chat messages of one question in `shape` (see the module docstring)."""
    if shape == "user":
        content = f"{INSTRUCTION}\n\nContext:\n{_numbered(item)}\n\nQuestion: {item.question}"
        return [{"role": "user", "content": content}]
    if shape == "tool":
        call = {"id": "call_0", "type": "function",
                "function": {"name": "search", "arguments": json.dumps({"query": item.question})}}  # fmt: skip
        return [
            {"role": "system", "content": TOOL_INSTRUCTION},
            {"role": "user", "content": item.question},
            {"role": "assistant", "content": "", "tool_calls": [call]},
            {"role": "tool", "tool_call_id": "call_0", "content": _numbered(item)},
        ]
    raise ValueError(f"shape must be one of {SHAPES}, got {shape!r}")


def _ask(client: httpx.Client, url: str, body: dict[str, Any]) -> dict[str, Any]:
    started = time.perf_counter()
    response = client.post(f"{url}/chat/completions", json=body)
    seconds = time.perf_counter() - started
    if response.status_code != 200:
        return {"error": f"HTTP {response.status_code}: {response.text[:200]}", "seconds": seconds}
    data = response.json()
    return {
        "answer": data["choices"][0]["message"].get("content") or "",
        "prompt_tokens": int(data["usage"]["prompt_tokens"]),
        "seconds": seconds,
        "pruned": response.headers.get("x-prunekit-pruned"),
    }


def _record(item: QAItem, index: int, shape: str, route: str, reply: dict[str, Any]) -> dict[str, Any]:
    record = {"index": index, "shape": shape, "route": route, **reply}
    if "answer" in reply:
        record["answer_f1"] = max_over_golds(token_f1, reply["answer"], item.answers)
        record["answer_em"] = max_over_golds(exact_match, reply["answer"], item.answers)
    return record


def _mean(rows: Sequence[dict[str, Any]], key: str) -> float:
    values = [r[key] for r in rows if key in r]
    return sum(values) / len(values) if values else 0.0


def _metrics(records: list[dict[str, Any]], shapes: Sequence[str]) -> dict[str, float]:
    metrics: dict[str, float] = {}
    for shape in shapes:
        for route in ("direct", "proxy"):
            rows = [r for r in records if r["shape"] == shape and r["route"] == route]
            ok = [r for r in rows if "error" not in r]
            for key in ("answer_f1", "answer_em", "prompt_tokens", "seconds"):
                metrics[f"{shape}_{route}.{key}"] = _mean(ok, key)
            metrics[f"{shape}_{route}.error_rate"] = 1 - len(ok) / max(len(rows), 1)
        pairs = _pairs(records, shape)
        direct_tokens = sum(d["prompt_tokens"] for d, _ in pairs)
        proxy_tokens = sum(p["prompt_tokens"] for _, p in pairs)
        metrics[f"{shape}_proxy.prompt_token_reduction"] = 1 - proxy_tokens / max(direct_tokens, 1)
        metrics[f"{shape}_proxy.f1_delta_points"] = 100 * (_mean([p for _, p in pairs], "answer_f1")
                                                           - _mean([d for d, _ in pairs], "answer_f1"))  # fmt: skip
        direct_s = sum(d["seconds"] for d, _ in pairs)
        metrics[f"{shape}_proxy.latency_ratio"] = sum(p["seconds"] for _, p in pairs) / max(direct_s, 1e-9)
        metrics[f"{shape}_proxy.pruned_share"] = sum(p.get("pruned") == "yes" for _, p in pairs) / max(len(pairs), 1)
    return metrics


def _pairs(records: list[dict[str, Any]], shape: str) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """(direct, proxy) records of the questions both routes answered."""
    by_index: dict[int, dict[str, dict[str, Any]]] = {}
    for r in records:
        if r["shape"] == shape and "error" not in r:
            by_index.setdefault(r["index"], {})[r["route"]] = r
    return [(v["direct"], v["proxy"]) for v in by_index.values() if len(v) == 2]


def evaluate_proxy(
    direct_url: str,
    proxy_url: str,
    data: Path,
    *,
    model: str,
    limit: int | None = 20,
    shapes: Sequence[str] = SHAPES,
    max_tokens: int = 24,
    threshold: float | None = None,
    timeout_s: float = 300.0,
) -> EvalResult:
    """Ask every question of `data` (HotpotQA) in each shape, straight to `direct_url` and through `proxy_url`
    (both OpenAI base URLs, `.../v1`, in front of the same upstream), one request at a time. `threshold` is the
    proxy's, recorded in the result's config."""
    items = load_qa(data, limit)
    records: list[dict[str, Any]] = []
    with httpx.Client(timeout=timeout_s) as client, progress_bar() as bar:
        _ask(client, direct_url, {"model": model, "messages": messages_for(items[0], "user"), "max_tokens": 1})
        task = bar.add_task("direct vs proxy", total=len(items) * len(shapes))
        for index, item in enumerate(items):
            for shape in shapes:
                body = {"model": model, "messages": messages_for(item, shape), "max_tokens": max_tokens,
                        "temperature": 0.0}  # fmt: skip
                routes = [("direct", direct_url), ("proxy", proxy_url)]
                for route, url in routes if index % 2 == 0 else routes[::-1]:
                    records.append(_record(item, index, shape, route, _ask(client, url, body)))
                bar.advance(task)
    config = {"data": str(data), "limit": limit, "shapes": list(shapes), "max_tokens": max_tokens, "model": model,
              "threshold": threshold, "direct_url": direct_url, "proxy_url": proxy_url}  # fmt: skip
    return EvalResult("proxy", config, _metrics(records, shapes), records)
