"""`prunekit eval ...`: evaluations that write results.json, report.md and plots."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from app.cli.common import (
    BackendOption,
    ConcurrencyOption,
    DataOption,
    JsonOption,
    LimitOption,
    OutOption,
    eval_app,
    figures_table,
    finish_eval,
    load_model,
    print_json_last,
    settings_for,
    stderr,
)


@eval_app.command("qa")
def eval_qa(
    data: DataOption = Path("../shared/data/qa/hotpotqa/test.jsonl"),
    limit: LimitOption = None,
    out: OutOption = Path("runs/qa"),
    as_json: JsonOption = False,
    concurrency: ConcurrencyOption = 8,
    threshold: Annotated[float, typer.Option(min=0.0, max=1.0, help="prunekit's threshold")] = 0.1,
    answer: Annotated[bool, typer.Option("--answer/--no-answer", help="let the LLM answer (F1/EM)")] = True,
    backend: BackendOption = None,
) -> None:
    """Context pruning vs. full / bi-encoder / random context on HotpotQA or SQuAD (compression, evidence
    recall, rerank recall@1, answer F1/EM)."""
    from context_pruner import default_pruner
    from eval.harness import write_results
    from eval.qa import evaluate_qa, load_qa, plot_sweep

    load_qa(data, 1)  # fail on a bad path before loading models
    model = load_model(settings_for(backend)) if answer else None
    result = evaluate_qa(
        model, data, pruner=default_pruner(), limit=limit, threshold=threshold, concurrency=concurrency, answer=answer
    )
    path = write_results(result, out, plots=[plot_sweep])
    stderr.print(figures_table("eval qa", result.metrics))
    stderr.print(f"wrote {path} and {out / 'report.md'}")
    if as_json:
        print_json_last(result.metrics)


@eval_app.command("nq")
def eval_nq(
    data: DataOption = Path("../shared/data/qa/nq_open/NQ-open.dev.jsonl"),
    limit: LimitOption = None,
    out: OutOption = Path("runs/nq"),
    as_json: JsonOption = False,
    concurrency: ConcurrencyOption = 8,
    backend: BackendOption = None,
) -> None:
    """Closed-book QA on NQ-open with the configured model (EM / F1)."""
    from eval.nq_open import evaluate_nq_open, load_nq_open

    load_nq_open(data, 1)  # fail on a bad path before loading a model
    result = evaluate_nq_open(load_model(settings_for(backend)), data, limit=limit, concurrency=concurrency)
    finish_eval(result, out, as_json)
