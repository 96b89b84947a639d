"""AGP (multi-agent graph pruning) on the command line: `prunekit agents`, `train agp`, `eval agents`.

Wiring only: the task, the team and the savings come from graph_pruning's face (`make_task`, `solve`), stage I and
II from `graph_pruning.stage1` / `graph_pruning.train`, the side-by-side evaluation from `eval.agents`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

import typer

from prunekit.app.cli.common import (
    BackendOption,
    ConcurrencyOption,
    JsonOption,
    LimitOption,
    OutOption,
    app,
    eval_app,
    figures_table,
    finish_eval,
    load_model,
    print_json_last,
    settings_for,
    stderr,
    stdout,
    train_app,
)

DomainOption = Annotated[str, typer.Option("--domain", help="math | general | code")]
SharedDataOption = Annotated[
    Path | None,
    typer.Option("--data-dir", help="the shared data folder (default: $PRUNEKIT_SHARED_DATA or ../shared/data)"),
]


# --------------------------------------------------------------------------- multi-agent (AGP)
@app.command()
def agents(
    task: Annotated[str, typer.Argument(help="the question (math, general) or the function to complete (code)")],
    domain: DomainOption = "math",
    context: Annotated[str, typer.Option("--context", help="general: the paragraph to answer from")] = "",
    choices: Annotated[str, typer.Option("--choices", help="general: option letters, e.g. A,B,C,D")] = "",
    png: Annotated[Path | None, typer.Option("--png", help="also draw the chosen graph to this PNG")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print the whole run as JSON on the last line")] = False,
    code_execution: Annotated[
        Literal["off", "sandbox"],
        typer.Option(
            "--code-execution",
            help="off: never run the agents' code; sandbox: run tests and math programs in bubblewrap",
        ),
    ] = "off",
    backend: BackendOption = None,
) -> None:
    """Solve a task with the agent team the AGP pruner picks for it; pruned agents cost nothing."""
    from prunekit.graph_pruning import make_task, solve

    if not task.strip():
        raise typer.BadParameter("the task is empty", param_hint="TASK")
    agent_task = make_task(domain, task, context, tuple(c.strip() for c in choices.split(",") if c.strip()))
    if code_execution == "sandbox":
        from prunekit.graph_pruning.sandbox import require_sandbox

        require_sandbox()  # no bubblewrap: one line of how to install it, before a model loads
    model = load_model(settings_for(backend))
    with stderr.status("the agents are working"):
        run = solve(model, agent_task, domain, code_execution=code_execution)
    _print_run(run, domain, code_execution)
    if png is not None:
        from prunekit.graph_pruning import draw_topology, get_pool, pruner_for

        topology = pruner_for(domain).choose(agent_task)
        draw_topology(topology, png, get_pool(domain).role_names, title=task[:60])
        stderr.print(f"graph drawn to {png}")
    if as_json:
        print_json_last(run)


def _print_run(run: dict[str, Any], domain: str, code_execution: str) -> None:
    """The team, every turn and the answer; what it cost and what the pruning avoided."""
    stderr.print(
        f"[bold]team[/] ({run['agents_kept']} of {run['agents_total']} agents)\n{run['graph']}", highlight=False
    )
    for turn in run["turns"]:
        stderr.print(f"[bold]{turn['role']}[/] (round {turn['round']}): {turn['text'].strip()}", highlight=False)
    stdout.print(f"answer: {run['answer']}", markup=False, highlight=False)
    if not run["code_executed"] and code_execution == "off" and domain in ("code", "math"):
        stderr.print("code was not executed (code execution is off; --code-execution sandbox runs it)")
    stderr.print(f"tokens {run['tokens']}, LLM calls {run['llm_calls']}, calls avoided {run['agent_calls_avoided']}")


# --------------------------------------------------------------------------- train
@train_app.command("agp")
def train_agp(
    stage: Annotated[int, typer.Option("--stage", min=1, max=2, help="1: collect records; 2: train the pruner")],
    domain: DomainOption = "general",
    benchmark: Annotated[
        str, typer.Option("--benchmark", help="stage 1: only this training set (squad | multiarith | svamp)")
    ] = "",
    limit: Annotated[int, typer.Option("--limit", min=1, help="stage 1: training tasks per benchmark")] = 200,
    records: Annotated[
        list[Path] | None, typer.Option("--records", help="stage 1: where to write; stage 2: our records to train on")
    ] = None,
    data_dir: SharedDataOption = None,
    agp_records: Annotated[bool, typer.Option("--agp-records/--no-agp-records", help="stage 2: also AGP's")] = True,
    folds: Annotated[
        int, typer.Option("--folds", min=0, help="stage 2: k-fold by task for the held-out figures (< 2: one split)")
    ] = 5,
    epochs: Annotated[int, typer.Option("--epochs", min=1, help="stage 2: the most epochs per training run")] = 60,
    note: Annotated[str, typer.Option("--note", help="stage 2: why these records, kept with the weights")] = "",
    out: Annotated[Path | None, typer.Option("--out", help="stage 2: where to save (default: shipped weights)")] = None,
    concurrency: ConcurrencyOption = 8,
    backend: BackendOption = None,
) -> None:
    """AGP training: stage 1 keeps the best cheapest teams on training tasks; stage 2 trains the pruner."""
    from prunekit.graph_pruning import get_pool

    get_pool(domain)  # an unknown domain fails here, before any model loads
    if stage == 1:
        _collect_stage1(domain, benchmark, limit, records, data_dir, concurrency, backend)
        return
    from prunekit.graph_pruning.train import TrainConfig, train_domain

    config = TrainConfig(epochs=epochs, folds=folds)
    extra = records or []
    result = train_domain(
        domain, data_dir=data_dir, extra_records=extra, include_agp=agp_records, out_dir=out, config=config, note=note
    )
    stderr.print(figures_table(f"stage 2 ({domain}): held-out records", result.metrics))


def _collect_stage1(
    domain: str,
    benchmark: str,
    limit: int,
    records: list[Path] | None,
    data_dir: Path | None,
    concurrency: int,
    backend: str | None,
) -> None:
    """Stage 1 of `train agp`: the arguments checked before a model loads, then `collect_domain`."""
    from prunekit.graph_pruning.stage1 import STAGE1_BENCHMARKS, collect_domain, default_records_path

    if benchmark and benchmark not in STAGE1_BENCHMARKS.get(domain, ()):
        raise typer.BadParameter(
            f"{benchmark!r} is not a stage-1 training set of the {domain} pool", param_hint="--benchmark"
        )
    if not STAGE1_BENCHMARKS.get(domain):
        raise typer.BadParameter(f"the {domain} pool has no stage-1 training set here", param_hint="--domain")
    names = (benchmark,) if benchmark else STAGE1_BENCHMARKS[domain]
    out_path = (records or [default_records_path(domain, names)])[0]
    model = load_model(settings_for(backend))
    kept = collect_domain(
        domain, model, out_path, limit=limit, benchmarks=names, data_dir=data_dir, concurrency=concurrency
    )
    stderr.print(f"{len(kept)} stage-1 records in {out_path}")


# --------------------------------------------------------------------------- eval
@eval_app.command("agents")
def eval_agents(
    benchmark: Annotated[
        str, typer.Option("--benchmark", help="squad | multiarith | gsm8k | svamp | aqua | humaneval")
    ] = "squad",
    limit: LimitOption = None,
    out: OutOption = Path("runs/agents"),
    methods: Annotated[
        str, typer.Option("--methods", help="comma-separated: single,chain,full,random,agp (default: all)")
    ] = "single,chain,full,random,agp",
    data_dir: SharedDataOption = None,
    pruner: Annotated[
        Path | None, typer.Option("--pruner", help="a trained pruner's folder (default: the shipped one)")
    ] = None,
    seed: Annotated[int, typer.Option("--seed", help="the random method's seed")] = 0,
    as_json: JsonOption = False,
    concurrency: ConcurrencyOption = 8,
    backend: BackendOption = None,
) -> None:
    """Agent teams side by side on held-out items (stage-I tasks excluded): accuracy, tokens, LLM calls, seconds
    per task for single, chain, full (3-round debate), random and AGP's pruned team."""
    from prunekit.eval.agents import evaluate_agents

    chosen = _check_eval_arguments(benchmark, methods, pruner, data_dir)
    model = load_model(settings_for(backend))
    result = evaluate_agents(
        model,
        benchmark,
        data_dir=data_dir,
        limit=limit,
        methods=chosen,
        concurrency=concurrency,
        seed=seed,
        pruner=pruner,
    )
    from prunekit.eval.agents import plot_accuracy_vs_tokens

    title = f"eval agents {result.config['benchmark']} ({result.config['n_items']} items)"
    finish_eval(result, out, as_json, plots=[plot_accuracy_vs_tokens], title=title)


def _check_eval_arguments(benchmark: str, methods: str, pruner: Path | None, data_dir: Path | None) -> tuple[str, ...]:
    """`eval agents`' arguments, its data and the sandbox, checked before a model loads; the chosen methods."""
    from prunekit.eval.agents import METHODS
    from prunekit.graph_pruning.data import BENCHMARK_DOMAIN, BENCHMARKS, load_benchmark
    from prunekit.graph_pruning.errors import PrunerNotFoundError
    from prunekit.graph_pruning.saved import check_pruner_dir

    if benchmark not in BENCHMARKS:
        raise typer.BadParameter(f"must be one of {', '.join(BENCHMARKS)}, got {benchmark!r}", param_hint="--benchmark")
    chosen = tuple(m.strip() for m in methods.split(",") if m.strip())
    unknown = [m for m in chosen if m not in METHODS]
    if unknown or not chosen:
        raise typer.BadParameter(f"choose from {', '.join(METHODS)}, got {methods!r}", param_hint="--methods")
    if pruner is not None:
        try:
            check_pruner_dir(pruner)
        except PrunerNotFoundError as exc:
            raise typer.BadParameter(str(exc), param_hint="--pruner") from None
    load_benchmark(benchmark, data_dir=data_dir, limit=1)  # fail on missing data before loading a model
    if BENCHMARK_DOMAIN[benchmark] in ("math", "code"):
        from prunekit.graph_pruning.sandbox import require_sandbox

        require_sandbox()  # these run model-written code: in bubblewrap or not at all
    return chosen
