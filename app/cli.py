"""The `prunekit` command line: serve, chat, bench, eval (and train, as methods land).

Heavy modules (torch, transformers, llama.cpp) are imported inside the commands, so `--help` and
argument errors answer at once. Every known failure ends with a one-line `prunekit: error: ...`
on stderr and a non-zero exit code, never a traceback.
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from app.settings import Settings
from decoding.errors import PrunekitError

__all__ = ["app", "main"]

log = logging.getLogger("prunekit")
# typer vendors its own click; its usage errors all derive from the base of BadParameter.
UsageError: type[Exception] = typer.BadParameter.__mro__[1]
stdout = Console()
stderr = Console(stderr=True)

app = typer.Typer(
    name="prunekit",
    help="Lean LLM pipelines: context pruning, multi-agent graph pruning, format-decoupled decoding, NL2SQL.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
bench_app = typer.Typer(help="Speed benchmarks; `--json` prints the figures as one JSON object on the last line.")
eval_app = typer.Typer(help="Evaluations: write results.json, report.md and plots to --out.")
app.add_typer(bench_app, name="bench", no_args_is_help=True)
train_app = typer.Typer(help="Training: each command resumes where an interrupted run stopped.")
app.add_typer(eval_app, name="eval", no_args_is_help=True)
app.add_typer(train_app, name="train", no_args_is_help=True)

BackendOption = Annotated[
    str | None,
    typer.Option("--backend", help="embedded | hf | openai (default: $PRUNEKIT_BACKEND or embedded)"),
]


def _settings(backend: str | None) -> Settings:
    overrides: dict[str, Any] = {}
    if backend is not None:
        if backend not in ("embedded", "hf", "openai"):
            raise typer.BadParameter(f"must be embedded, hf or openai, got {backend!r}", param_hint="--backend")
        overrides["backend"] = backend
    return Settings(**overrides)


def _model(settings: Settings) -> Any:
    from app.backends import build_chat_model

    with stderr.status(f"loading the {settings.backend} model"):
        return build_chat_model(settings)


def _print_json_last(figures: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(figures) + "\n")
    sys.stdout.flush()


def _figures_table(title: str, figures: dict[str, float]) -> Table:
    table = Table(title=title)
    table.add_column("figure")
    table.add_column("value", justify="right")
    for key, value in figures.items():
        table.add_row(key, f"{value:.4g}" if isinstance(value, float) else str(value))
    return table


# --------------------------------------------------------------------------- serve / chat
@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="bind address (default $PRUNEKIT_HOST or 127.0.0.1)")] = None,
    port: Annotated[int | None, typer.Option(min=1, max=65535, help="port (default $PRUNEKIT_PORT or 8000)")] = None,
    backend: BackendOption = None,
) -> None:
    """Run the OpenAI-compatible service."""
    import uvicorn

    from app.service import create_app

    settings = _settings(backend)
    if host:
        settings.host = host
    if port:
        settings.port = port
    uvicorn.run(create_app(settings), host=settings.host, port=settings.port, log_level="info")


@app.command()
def chat(
    question: Annotated[str | None, typer.Argument(help="ask once and exit; omit for an interactive session")] = None,
    system: Annotated[str | None, typer.Option(help="system prompt")] = None,
    max_tokens: Annotated[int, typer.Option(min=1, max=8192)] = 256,
    temperature: Annotated[float, typer.Option(min=0.0, max=2.0)] = 0.0,
    format: Annotated[
        str | None,
        typer.Option("--format", help="a format the answer must follow, e.g. 'pivot:<free>The answer is <int>'"),
    ] = None,
    format_method: Annotated[str, typer.Option("--format-method", help="decog | decog_pruned | hard_mask")] = "decog",
    backend: BackendOption = None,
) -> None:
    """Chat with the configured model (streams the answer)."""
    from decoding import GenerationParams

    params = GenerationParams(
        max_tokens=max_tokens, temperature=temperature, format=format, format_method=format_method
    )
    if format is not None:
        from decoding.decog import parse_format

        parse_format(format)  # a bad spec fails here, before the model loads
    model = _model(_settings(backend))
    history: list[dict[str, str]] = [{"role": "system", "content": system}] if system else []

    def ask(text: str) -> None:
        history.append({"role": "user", "content": text})
        parts = []
        for chunk in model.stream(history, params):
            parts.append(chunk.text)
            stdout.print(chunk.text, end="", markup=False, highlight=False)
        stdout.print()
        history.append({"role": "assistant", "content": "".join(parts)})

    if question is not None:
        if not question.strip():
            raise typer.BadParameter("the question is empty", param_hint="QUESTION")
        ask(question)
        return
    stderr.print("interactive chat: empty line or Ctrl-D to quit")
    while True:
        try:
            text = input("> ")
        except EOFError:
            break
        if not text.strip():
            break
        ask(text)


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
    model = _model(_settings(backend))
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
        _print_json_last(run)


# --------------------------------------------------------------------------- context pruning
@app.command()
def prune(
    files: Annotated[
        list[Path] | None, typer.Argument(help="context files (one context each); omit to read stdin")
    ] = None,
    question: Annotated[str, typer.Option("--question", "-q", help="the question the contexts should answer")] = "",
    threshold: Annotated[float, typer.Option(min=0.0, max=1.0, help="0.1 conservative ... 0.5 aggressive")] = 0.1,
    as_json: Annotated[bool, typer.Option("--json", help="print the results as JSON")] = False,
) -> None:
    """Prune contexts to the sentences that answer the question (Provence). Without files, reads JSON from
    stdin: {"question": ..., "contexts": [...], "titles": [...]} (or a plain text context with --question)."""
    from context_pruner import default_pruner

    titles: list[str | None] | None = None
    if files:
        contexts = []
        for path in files:
            if not path.is_file():
                raise typer.BadParameter(f"{path} is not a file", param_hint="FILES")
            contexts.append(path.read_text(encoding="utf-8"))
    else:
        raw = sys.stdin.read()
        try:
            payload = json.loads(raw)
        except json.JSONDecodeError:
            payload = {"contexts": [raw]}
        if not isinstance(payload, dict) or not isinstance(payload.get("contexts", []), list):
            raise typer.BadParameter('stdin JSON must be {"question": str, "contexts": [str, ...]}', param_hint="stdin")
        question = question or str(payload.get("question", ""))
        contexts, titles = payload.get("contexts", []), payload.get("titles")
    if not question.strip():
        raise typer.BadParameter("give the question with --question (or in the stdin JSON)", param_hint="--question")
    results = default_pruner().prune(question, contexts, titles=titles, threshold=threshold)
    if as_json:
        _print_json_last({"question": question, "results": [r.to_dict() for r in results]})
        return
    for r in results:
        stderr.print(
            f"[bold]context {r.index}[/]: rerank {r.rerank_score:.3f}, tokens {r.tokens_before} -> {r.tokens_after}"
        )
        stdout.print(r.pruned_text, markup=False, highlight=False)


# --------------------------------------------------------------------------- RAG
@app.command()
def ingest(
    paths: Annotated[list[Path], typer.Argument(help="files or folders (txt, md, html, pdf)")],
    collection: Annotated[str, typer.Option("--collection", help="collection to add the chunks to")] = "default",
    max_chars: Annotated[int, typer.Option(min=100, max=20000, help="chunk size in characters")] = 800,
    overlap: Annotated[int, typer.Option(min=0, max=5000, help="overlap between chunks")] = 150,
) -> None:
    """Read documents, chunk them and store their embeddings for the RAG model."""
    from app.rag.documents import SUPPORTED_SUFFIXES, Chunk, chunk_text, read_document
    from app.rag.store import VectorStore
    from decoding.embeddings import load_embedder

    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            files += sorted(p for p in path.rglob("*") if p.suffix.lower() in SUPPORTED_SUFFIXES)
        else:
            files.append(path)
    if not files:
        raise typer.BadParameter("no supported documents found", param_hint="PATHS")
    chunks: list[Chunk] = []
    for path in files:
        title, text = read_document(path)
        pieces = chunk_text(text, max_chars=max_chars, overlap_chars=overlap)
        chunks += [Chunk(text=t, source=str(path), index=i, title=title) for i, t in enumerate(pieces)]
    settings = Settings()
    with stderr.status(f"embedding {len(chunks)} chunks from {len(files)} files"):
        store = VectorStore(load_embedder(), **settings.vector_store_location())
        try:
            store.add(collection, chunks)
        finally:
            store.close()
    stderr.print(f"ingested {len(chunks)} chunks from {len(files)} files into collection {collection!r}")


# --------------------------------------------------------------------------- bench
@bench_app.command("decode")
def bench_decode_cmd(
    max_tokens: Annotated[int, typer.Option(min=8, max=1024, help="tokens per request")] = 128,
    requests: Annotated[int, typer.Option(min=1, max=50, help="sequential requests for single-stream speed")] = 3,
    hf: Annotated[bool, typer.Option("--hf/--no-hf", help="also measure transformers generate")] = True,
    as_json: Annotated[bool, typer.Option("--json", help="print the figures as JSON on the last line")] = False,
) -> None:
    """Tokens/s of the embedded model: default backend vs. plain transformers generate."""
    from decoding.loader import load_embedded
    from decoding.local import LocalModel
    from eval.bench_decode import bench_decode

    with stderr.status("loading the embedded model"):
        model = load_embedded()
    with stderr.status("benchmarking (a minute or two)"):
        figures = bench_decode(model, LocalModel.embedded if hf else None, max_tokens=max_tokens, requests=requests)
    stderr.print(_figures_table("bench decode", figures))
    if as_json:
        _print_json_last(figures)


@bench_app.command("prune")
def bench_prune_cmd(
    passages: Annotated[int, typer.Option(min=8, max=4096, help="passages to prune")] = 256,
    tokens: Annotated[int, typer.Option(min=16, max=512, help="tokens per passage")] = 256,
    batch_size: Annotated[int, typer.Option(min=1, max=256)] = 16,
    deberta: Annotated[int, typer.Option(min=0, max=64, help="passages for the DeBERTa-v3-large reference")] = 4,
    as_json: Annotated[bool, typer.Option("--json", help="print the figures as JSON on the last line")] = False,
) -> None:
    """Passages/s of the context pruner, beside a DeBERTa-v3-large-sized encoder (Provence's size)."""
    from context_pruner.bench import bench_prune

    with stderr.status("benchmarking the context pruner"):
        figures = bench_prune(n_passages=passages, tokens=tokens, batch_size=batch_size, deberta_passages=deberta)
    stderr.print(_figures_table("bench prune", {k: v for k, v in figures.items() if isinstance(v, int | float)}))
    if as_json:
        _print_json_last(figures)


# --------------------------------------------------------------------------- eval
def _finish_eval(result: Any, out: Path, as_json: bool) -> None:
    from eval.harness import write_results

    path = write_results(result, out)
    stderr.print(_figures_table(f"eval {result.task}", result.metrics))
    stderr.print(f"wrote {path} and {out / 'report.md'}")
    if as_json:
        _print_json_last(result.metrics)


DataOption = Annotated[Path, typer.Option("--data", help="path to the benchmark file")]
LimitOption = Annotated[int | None, typer.Option("--limit", min=1, help="evaluate the first N items")]
OutOption = Annotated[Path, typer.Option("--out", help="output folder")]
JsonOption = Annotated[bool, typer.Option("--json", help="print the metrics as JSON on the last line")]
ConcurrencyOption = Annotated[int, typer.Option("--concurrency", min=1, max=64, help="concurrent LLM calls")]


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
    model = _model(_settings(backend)) if answer else None
    result = evaluate_qa(
        model, data, pruner=default_pruner(), limit=limit, threshold=threshold, concurrency=concurrency, answer=answer
    )
    path = write_results(result, out, plots=[plot_sweep])
    stderr.print(_figures_table("eval qa", result.metrics))
    stderr.print(f"wrote {path} and {out / 'report.md'}")
    if as_json:
        _print_json_last(result.metrics)


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
    result = evaluate_nq_open(_model(_settings(backend)), data, limit=limit, concurrency=concurrency)
    _finish_eval(result, out, as_json)


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
        model = _model(_settings(backend))
        kept = collect_stage1(items, pool, model, forbidden=forbidden, out_path=out_path, concurrency=concurrency)
        stderr.print(f"{len(kept)} stage-1 records in {out_path}")
        return
    from graph_pruning.train import train_domain

    result = train_domain(domain, data_dir=data_dir, extra_records=records or [], include_agp=agp_records, out_dir=out)
    stderr.print(_figures_table(f"stage 2 ({domain})", result.metrics))


# --------------------------------------------------------------------------- entry point
def _fail_line(message: str) -> None:
    """One unwrapped line on stderr, easy to read and to grep."""
    print(f"prunekit: error: {' '.join(message.split())}", file=sys.stderr)


def main() -> None:
    """Console entry point: one-line errors, non-zero exit codes."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        code = app(standalone_mode=False)
    except UsageError as exc:
        message = exc.format_message()  # empty when the help was shown for a bare command group
        if message:
            _fail_line(message)
        sys.exit(2)
    except typer.Abort:
        stderr.print("prunekit: aborted")
        sys.exit(130)
    except PrunekitError as exc:
        _fail_line(str(exc))
        sys.exit(1)
    except KeyboardInterrupt:
        sys.exit(130)
    sys.exit(code if isinstance(code, int) else 0)
