"""The shared skeleton of every evaluation: run items concurrently with a progress bar, then write
`results.json`, `report.md` and plots.

`results.json` has the top-level keys `task`, `config`, `environment`, `metrics` (a flat object
`{"<method>.<metric>": number}`) and `items` (per-example records).
"""

from __future__ import annotations

import json
import logging
import math
import os
import platform
import subprocess
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from prunekit.decoding.errors import InvalidRequestError

__all__ = [
    "EvalResult",
    "environment",
    "progress_bar",
    "read_jsonl",
    "run_concurrently",
    "write_results",
]

log = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")


@dataclass
class EvalResult:
    task: str
    config: dict[str, Any]
    metrics: dict[str, float]
    items: list[dict[str, Any]]
    environment: dict[str, Any] = field(default_factory=lambda: environment())

    def __post_init__(self) -> None:
        for key, value in self.metrics.items():
            if "." not in key:
                raise ValueError(f"metric keys are '<method>.<metric>', got {key!r}")
            if not isinstance(value, int | float) or isinstance(value, bool):
                raise ValueError(f"metric {key} must be a number, got {value!r}")

    def to_json(self) -> dict[str, Any]:
        return {
            "task": self.task,
            "config": self.config,
            "environment": self.environment,
            "metrics": self.metrics,
            "items": self.items,
        }


def environment() -> dict[str, Any]:
    """Where a result was measured: enough to compare runs across machines and commits."""
    import torch

    env: dict[str, Any] = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    try:
        env["git_commit"] = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=5, check=True
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        env["git_commit"] = None
    return env


def progress_bar(transient: bool = False) -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        transient=transient,
    )


def run_concurrently(
    fn: Callable[[T], R],
    items: Sequence[T],
    *,
    concurrency: int = 8,
    description: str = "evaluating",
    progress: Progress | None = None,
) -> list[R | BaseException]:
    """`fn` over `items` on a bounded thread pool, results in input order.

    LLM backends batch concurrent requests, so a pool keeps them busy. A failing item returns its
    exception in its slot (the caller records it) instead of aborting the run.
    """
    results: list[R | BaseException] = [RuntimeError("not run")] * len(items)
    own = progress is None
    bar = progress or progress_bar()
    if own:
        bar.start()
    try:
        task = bar.add_task(description, total=len(items))
        with ThreadPoolExecutor(max_workers=max(1, concurrency)) as pool:
            futures = {pool.submit(fn, item): i for i, item in enumerate(items)}
            for future in as_completed(futures):
                i = futures[future]
                try:
                    results[i] = future.result()
                except Exception as exc:
                    log.warning("item %d failed: %s", i, exc)
                    results[i] = exc
                bar.advance(task)
    finally:
        if own:
            bar.stop()
    return results


def write_results(result: EvalResult, out_dir: Path, plots: Iterable[Callable[[EvalResult, Path], Path]] = ()) -> Path:
    """Write results.json, report.md and plots (a metric chart per metric, plus task-specific ones)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "results.json").write_text(json.dumps(result.to_json(), indent=2, default=str))
    images = [plot_metrics(result, out_dir)]
    images += [make(result, out_dir) for make in plots]
    (out_dir / "report.md").write_text(render_report(result, [p for p in images if p is not None]))
    return out_dir / "results.json"


def methods_and_metrics(metrics: dict[str, float]) -> tuple[list[str], list[str]]:
    methods: list[str] = []
    names: list[str] = []
    for key in metrics:
        method, _, name = key.partition(".")
        if method not in methods:
            methods.append(method)
        if name not in names:
            names.append(name)
    return methods, names


def render_report(result: EvalResult, images: Sequence[Path] = ()) -> str:
    methods, names = methods_and_metrics(result.metrics)
    lines = [f"# Evaluation: {result.task}", ""]
    lines += ["| method | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    for method in methods:
        cells = [_fmt(result.metrics.get(f"{method}.{name}")) for name in names]
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    lines += ["", "## Configuration", "", "```json", json.dumps(result.config, indent=2, default=str), "```"]
    lines += ["", "## Environment", "", "```json", json.dumps(result.environment, indent=2, default=str), "```", ""]
    errors = sum(1 for item in result.items if item.get("error"))
    lines.append(f"{len(result.items)} items, {errors} with errors.")
    for image in images:
        lines += ["", f"![{image.stem}]({image.name})"]
    return "\n".join(lines) + "\n"


def plot_metrics(result: EvalResult, out_dir: Path) -> Path:
    """One bar chart panel per metric, methods side by side."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    methods, names = methods_and_metrics(result.metrics)
    cols = min(3, max(1, len(names)))
    rows = math.ceil(len(names) / cols) or 1
    fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 3 * rows), squeeze=False)
    for ax, name in zip(axes.flat, names, strict=False):
        values = [result.metrics.get(f"{m}.{name}", float("nan")) for m in methods]
        ax.bar(methods, values, color="tab:blue")
        ax.set_title(name)
        ax.tick_params(axis="x", rotation=30)
    for ax in list(axes.flat)[len(names) :]:
        ax.axis("off")
    fig.suptitle(result.task)
    fig.tight_layout()
    path = out_dir / "metrics.png"
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _fmt(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.4g}"


def read_jsonl(
    path: Path, parse: Callable[[dict[str, Any]], dict[str, Any]], *, limit: int | None, what: str, hint: str
) -> list[dict[str, Any]]:
    """The records of a JSON-lines file (the first `limit`), each through `parse`; blank lines are skipped.

    A missing file says `hint` (how to point at the right one); a line that is not JSON, or that `parse` rejects
    (KeyError, TypeError), is an `InvalidRequestError` naming the file, the line and `what` it should be.
    """
    if not path.is_file():
        raise InvalidRequestError(f"{path} does not exist: {hint}")
    items: list[dict[str, Any]] = []
    with path.open() as f:
        for n, line in enumerate(f, 1):
            if limit is not None and len(items) >= limit:
                break
            if not line.strip():
                continue
            try:
                items.append(parse(json.loads(line)))
            except (json.JSONDecodeError, KeyError, TypeError) as exc:
                raise InvalidRequestError(f"{path}:{n} is not {what} ({exc})") from exc
    return items
