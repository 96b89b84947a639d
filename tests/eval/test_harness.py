import json
import threading
import time

import pytest

from prunekit.eval.harness import EvalResult, render_report, run_concurrently, write_results


def test_results_json_report_and_plot(tmp_path):
    result = EvalResult(
        task="demo",
        config={"limit": 2},
        metrics={"a.f1": 0.5, "a.tokens": 10, "b.f1": 0.25},
        items=[{"id": 1}, {"id": 2, "error": "boom"}],
    )
    write_results(result, tmp_path)
    data = json.loads((tmp_path / "results.json").read_text())
    assert list(data) == ["task", "config", "environment", "metrics", "items"]
    assert data["metrics"] == {"a.f1": 0.5, "a.tokens": 10, "b.f1": 0.25}
    assert data["environment"]["cpu_count"] >= 1
    report = (tmp_path / "report.md").read_text()
    assert "| a | 0.5 | 10 |" in report and "| b | 0.25 | - |" in report
    assert "1 with errors" in report
    assert (tmp_path / "metrics.png").stat().st_size > 1000


@pytest.mark.parametrize("metrics", [{"f1": 0.5}, {"a.f1": "high"}, {"a.ok": True}])
def test_metrics_must_be_flat_numbers(metrics):
    with pytest.raises(ValueError):
        EvalResult(task="t", config={}, metrics=metrics, items=[])


def test_run_concurrently_keeps_order_records_errors_and_overlaps():
    active, peak = 0, 0
    lock = threading.Lock()

    def work(x: int) -> int:
        nonlocal active, peak
        with lock:
            active += 1
            peak = max(peak, active)
        time.sleep(0.05)
        with lock:
            active -= 1
        if x == 3:
            raise ValueError("bad item")
        return x * 10

    out = run_concurrently(work, list(range(8)), concurrency=4)
    assert out[:3] == [0, 10, 20] and isinstance(out[3], ValueError) and out[7] == 70
    assert 1 < peak <= 4


def test_render_report_without_images():
    result = EvalResult(task="t", config={}, metrics={"m.x": 1.0}, items=[])
    assert render_report(result).startswith("# Evaluation: t")
