"""Prometheus counters of the proxy (served at `GET /metrics`), in a registry of its own per app."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest

from prunekit.app.proxy.gate import BreakEven
from prunekit.app.proxy.pipeline import Outcome

__all__ = ["ProxyMetrics"]


class ProxyMetrics:
    def __init__(self, gate: BreakEven) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "prunekit_proxy_requests", "Chat requests by pruning outcome", ["pruned", "reason"], registry=self.registry
        )
        self.tokens_before = Counter(
            "prunekit_proxy_context_tokens_before", "Context tokens of pruned requests before pruning",
            registry=self.registry,
        )  # fmt: skip
        self.tokens_after = Counter(
            "prunekit_proxy_context_tokens_after", "Context tokens of pruned requests after pruning",
            registry=self.registry,
        )  # fmt: skip
        self.tokens_saved = Counter(
            "prunekit_proxy_context_tokens_saved", "Context tokens pruning kept from the upstream",
            registry=self.registry,
        )  # fmt: skip
        self.prune_seconds = Counter("prunekit_proxy_prune_seconds", "Time spent pruning", registry=self.registry)
        self.upstream_errors = Counter(
            "prunekit_proxy_upstream_errors", "Upstream failures by kind", ["kind"], registry=self.registry
        )
        estimates = Gauge(
            "prunekit_proxy_gate_estimate", "The break-even gate's running estimates", ["estimate"],
            registry=self.registry,
        )  # fmt: skip
        for name in gate.snapshot():
            estimates.labels(name).set_function(lambda name=name: gate.snapshot()[name])

    def record(self, outcome: Outcome) -> None:
        self.requests.labels(outcome.status, outcome.reason).inc()
        if outcome.status == "yes":
            self.tokens_before.inc(outcome.tokens_before)
            self.tokens_after.inc(outcome.tokens_after)
            self.tokens_saved.inc(outcome.saved)
            self.prune_seconds.inc(outcome.seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)
