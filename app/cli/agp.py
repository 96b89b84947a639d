"""AGP (multi-agent graph pruning) on the command line: `prunekit agents`, `train agp`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from app.cli.common import (
    BackendOption,
    ConcurrencyOption,
    app,
    figures_table,
    load_model,
    print_json_last,
    settings_for,
    stderr,
    stdout,
    train_app,
)


# --------------------------------------------------------------------------- multi-agent (AGP)
@app.command()
def agents(
    task: Annotated[str, typer.Argument(help="the question (math, general) or the function to complete (code)")],
    domain: Annotated[str, typer.Option("--domain", help="math | general | code")] = "math",
    context: Annotated[str, typer.Option("--context", help="general: the paragraph to answer from")] = "",
    choices: Annotated[str, typer.Option("--choices", help="general: option letters, e.g. A,B,C,D")] = "",
    png: Annotated[Path | None, typer.Option("--png", help="also draw the chosen graph to this PNG")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print the whole run as JSON on the last line")] = False,
    backend: BackendOption = None,
) -> None:
    """Solve a task with the agent team the AGP pruner picks for it; pruned agents cost nothing."""
    from app.agents import make_task, solve

    if not task.strip():
        raise typer.BadParameter("the task is empty", param_hint="TASK")
    agent_task = make_task(domain, task, context, tuple(c.strip() for c in choices.split(",") if c.strip()))
    model = load_model(settings_for(backend))
    with stderr.status("the agents are working"):
        run = solve(model, agent_task, domain)
    stderr.print(
        f"[bold]team[/] ({run['agents_kept']} of {run['agents_total']} agents)\n{run['graph']}", highlight=False
    )
    for turn in run["turns"]:
        stderr.print(f"[bold]{turn['role']}[/] (round {turn['round']}): {turn['text'].strip()}", highlight=False)
    stdout.print(f"answer: {run['answer']}", markup=False, highlight=False)
    stderr.print(f"tokens {run['tokens']}, LLM calls {run['llm_calls']}, calls avoided {run['agent_calls_avoided']}")
    if png is not None:
        from app.agents import pruner_for
        from graph_pruning import draw_topology, get_pool

        topology = pruner_for(domain).choose(agent_task)
        draw_topology(topology, png, get_pool(domain).role_names, title=task[:60])
        stderr.print(f"graph drawn to {png}")
    if as_json:
        print_json_last(run)


# --------------------------------------------------------------------------- train
_AGP_BENCHMARK_DOMAIN = {"squad": "general", "multiarith": "math", "svamp": "math"}


@train_app.command("agp")
def train_agp(
    stage: Annotated[int, typer.Option("--stage", min=1, max=2, help="1: collect records; 2: train the pruner")],
    domain: Annotated[str, typer.Option("--domain", help="math | general | code")] = "general",
    benchmark: Annotated[
        str, typer.Option("--benchmark", help="stage 1 training set: squad | multiarith | svamp")
    ] = "",
    limit: Annotated[int, typer.Option("--limit", min=1, help="stage 1: training tasks to run")] = 200,
    records: Annotated[
        list[Path] | None, typer.Option("--records", help="stage 1: where to write; stage 2: our records to train on")
    ] = None,
    data_dir: Annotated[Path, typer.Option("--data-dir", help="the shared data folder")] = Path("../shared/data"),
    agp_records: Annotated[bool, typer.Option("--agp-records/--no-agp-records", help="stage 2: also AGP's")] = True,
    out: Annotated[Path | None, typer.Option("--out", help="stage 2: where to save (default: shipped weights)")] = None,
    concurrency: ConcurrencyOption = 8,
    backend: BackendOption = None,
) -> None:
    """AGP training: stage 1 keeps the best cheapest teams on training tasks; stage 2 trains the pruner."""
    from graph_pruning import get_pool

    pool = get_pool(domain)
    if stage == 1:
        from graph_pruning.data import load_benchmark, training_items
        from graph_pruning.stage1 import collect_stage1

        benchmark = benchmark or {"general": "squad", "math": "multiarith"}.get(domain, "")
        if _AGP_BENCHMARK_DOMAIN.get(benchmark) != domain:
            raise typer.BadParameter(
                f"{benchmark!r} is not a stage-1 training set of the {domain} pool", param_hint="--benchmark"
            )
        out_path = (records or [Path(f"runs/agp/stage1_{domain}_{benchmark}.json")])[0]
        items = training_items(benchmark, data_dir=data_dir, limit=limit, seed=0)
        forbidden = load_benchmark(benchmark, data_dir=data_dir)  # the evaluation split: never trained on
        model = load_model(settings_for(backend))
        kept = collect_stage1(items, pool, model, forbidden=forbidden, out_path=out_path, concurrency=concurrency)
        stderr.print(f"{len(kept)} stage-1 records in {out_path}")
        return
    from graph_pruning.train import train_domain

    result = train_domain(domain, data_dir=data_dir, extra_records=records or [], include_agp=agp_records, out_dir=out)
    stderr.print(figures_table(f"stage 2 ({domain})", result.metrics))
