"""`prunekit bench attack` against a live service on the real embedded model: every attack is contained."""

from __future__ import annotations

import pytest

from prunekit.app.api.service import create_app
from prunekit.app.settings import Settings
from prunekit.eval.bench.attack import run_attacks
from tests.conftest import LiveServer


@pytest.mark.slow
def test_every_attack_is_contained(embedded_model, tmp_path):
    settings = Settings(
        data_dir=tmp_path, rate_limit_per_minute=0, max_concurrent_requests=2, max_waiting_requests=2, queue_timeout_s=5
    )
    with LiveServer(create_app(settings, model=embedded_model)) as server:
        figures = run_attacks(server.url, hangups=3, hangup_after_s=1.0, burst=12)
    failed = {name: o for name, o in figures["attacks"].items() if not o["contained"]}
    assert not failed
    assert figures["contained"] == figures["total"] >= 15
    assert figures["worst_refusal_s"] < 1.0
    overload = figures["overload"]
    assert overload["transport_failures"] == 0 and overload["missing_retry_after"] == 0
    assert overload["statuses"].get("503", 0) > 0  # 12 at once against 2 places and 2 waiting
    assert set(overload["statuses"]) <= {"200", "503"}
    assert overload["recovery_s"] is not None and overload["recovery_s"] < 2.0
    # after the hang-ups the service answers a short request about as fast as when idle (not after 1,024 tokens x 3)
    assert figures["after_hangups_short_request_s"] < figures["idle_short_request_s"] + 2.0
