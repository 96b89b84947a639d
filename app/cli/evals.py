"""`prunekit eval ...`: evaluations that write results.json, report.md and plots."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Annotated, Any

import typer

from prunekit.app.cli.common import (
    BackendOption,
    CandidateGapOption,
    ConcurrencyOption,
    DataOption,
    HmmDirOption,
    JsonOption,
    LimitOption,
    LocalModelOption,
    OutOption,
    PrunerOption,
    RepetitionPenaltyOption,
    check_hmm_dir,
    check_model_path,
    check_pruner_weights,
    eval_app,
    finish_eval,
    load_local,
    load_model,
    load_pruner,
    load_sql_model,
    require_files,
    settings_for,
    stderr,
)
from prunekit.decoding.decog.guided import DEFAULT_CANDIDATE_GAP
from prunekit.decoding.errors import InvalidRequestError


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
    pruner: PrunerOption = None,
) -> None:
    """Context pruning vs. full / bi-encoder / random context on HotpotQA or SQuAD (compression, evidence
    recall, rerank recall@1, answer F1/EM)."""
    from prunekit.eval.qa import evaluate_qa, load_qa, plot_sweep

    check_pruner_weights(pruner)  # an argument, checked before the data
    load_qa(data, 1)  # fail on a bad path before loading models
    context_pruner = load_pruner(pruner)
    model = load_model(settings_for(backend)) if answer else None
    result = evaluate_qa(
        model, data, pruner=context_pruner, limit=limit, threshold=threshold, concurrency=concurrency, answer=answer
    )
    finish_eval(result, out, as_json, plots=[plot_sweep])


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
    from prunekit.eval.nq_open import evaluate_nq_open, load_nq_open

    load_nq_open(data, 1)  # fail on a bad path before loading a model
    result = evaluate_nq_open(load_model(settings_for(backend)), data, limit=limit, concurrency=concurrency)
    finish_eval(result, out, as_json)


@eval_app.command("chat")
def eval_chat(
    data: Annotated[
        Path | None, typer.Option("--data", help="questions .jsonl (default: the project's general questions)")
    ] = None,
    limit: LimitOption = None,
    out: OutOption = Path("runs/chat"),
    as_json: JsonOption = False,
    concurrency: ConcurrencyOption = 8,
    repetition_penalty: RepetitionPenaltyOption = None,
    max_tokens: Annotated[int, typer.Option(min=1, max=2048, help="as `prunekit chat`")] = 256,
    backend: BackendOption = None,
) -> None:
    """The default chat path on short general-knowledge questions, loop guard on vs off (correct share, share of
    replies with a repeated 4-gram, answer tokens)."""
    from prunekit.eval.chat import DEFAULT_QUESTIONS, evaluate_chat, load_questions

    path = data or DEFAULT_QUESTIONS
    load_questions(path, 1)  # fail on a bad path before loading a model
    settings = settings_for(backend)
    guard = settings.repetition_penalty if repetition_penalty is None else repetition_penalty
    result = evaluate_chat(
        load_model(settings),
        path,
        repetition_penalty=guard,
        limit=limit,
        max_tokens=max_tokens,
        concurrency=concurrency,
    )
    finish_eval(result, out, as_json)


@eval_app.command("spider")
def eval_spider(
    data: Annotated[Path, typer.Option("--data", help="the Spider folder")] = Path("../shared/data/spider"),
    limit: Annotated[
        int | None, typer.Option("--limit", min=1, help="a seeded sample stratified by database (default: all)")
    ] = None,
    seed: Annotated[
        int, typer.Option("--seed", min=0, help="with --limit: the seed (another seed, other questions)")
    ] = 0,
    methods: Annotated[
        str, typer.Option("--methods", help="comma-separated: gold,single_shot,single_shot_demos,learnat")
    ] = "gold,single_shot,single_shot_demos,learnat",
    adapters: Annotated[
        str | None,
        typer.Option(
            "--adapter",
            help="the embedded model's SQL adapter: shipped, none or a folder; several, comma-separated, run side "
            "by side (e.g. shipped,none: figures under learnat[shipped] and learnat[none]). Default: "
            "PRUNEKIT_SQL_ADAPTER, else shipped",
        ),
    ] = None,
    split: Annotated[str, typer.Option("--split", help="dev, or train with --databases (held-out ones)")] = "dev",
    databases: Annotated[
        str | None,
        typer.Option(
            "--databases",
            help="only these databases: comma-separated ids, or a JSON file with a 'databases' list "
            "(runs/nl2sql/sft/heldout.json); on train they leave the demonstrations too",
        ),
    ] = None,
    out: OutOption = Path("runs/spider"),
    as_json: JsonOption = False,
    concurrency: ConcurrencyOption = 8,
    backend: BackendOption = None,
) -> None:
    """Spider: execution accuracy (test-suite semantics), exact-set match, by hardness, executable rate, per method."""
    from prunekit.eval.spider import METHODS, SPLIT_FILES, evaluate_spider

    chosen = tuple(m.strip() for m in methods.split(",") if m.strip())
    unknown = set(chosen) - set(METHODS)
    if unknown or not chosen:
        raise typer.BadParameter(f"methods must be among {', '.join(METHODS)}", param_hint="--methods")
    if split not in SPLIT_FILES:
        raise typer.BadParameter(f"must be one of {', '.join(SPLIT_FILES)}", param_hint="--split")
    if split == "train" and databases is None:
        raise typer.BadParameter("the train split is evaluated on held-out databases only: give --databases")
    settings = settings_for(backend)
    choices = [a.strip() for a in (adapters or settings.sql_adapter).split(",") if a.strip()]
    if not choices or len(set(choices)) != len(choices):
        raise typer.BadParameter("give distinct adapters, e.g. shipped,none", param_hint="--adapter")
    for choice in choices:
        _check_adapter(choice)
    if not any((data / name).is_file() for name in SPLIT_FILES[split]):
        raise typer.BadParameter(f"{data} has no {' or '.join(SPLIT_FILES[split])}", param_hint="--data")
    db_ids = _database_ids(databases) if databases is not None else None
    models: dict[str, Any] | None = None
    if chosen != ("gold",):
        models = {(c if len(choices) > 1 else ""): load_sql_model(settings, c) for c in choices}
    result = evaluate_spider(
        models if models is None or len(models) > 1 else models[""],
        data,
        limit=limit,
        seed=seed,
        methods=chosen,
        concurrency=concurrency,
        split=split,
        databases=db_ids,
    )
    finish_eval(result, out, as_json)


def _check_adapter(choice: str) -> None:
    from prunekit.nl2sql.adapter import resolve_adapter

    try:
        resolve_adapter(choice)
    except InvalidRequestError as err:
        raise typer.BadParameter(str(err), param_hint="--adapter") from None


def _database_ids(value: str) -> list[str]:
    """--databases: comma-separated ids, or a JSON file with a `databases` list."""
    path = Path(value)
    if path.suffix == ".json":
        try:
            ids = json.loads(path.read_text())["databases"]
        except (OSError, ValueError, KeyError, TypeError) as err:
            raise typer.BadParameter(f"{path}: no 'databases' list ({err})", param_hint="--databases") from None
    else:
        ids = [d.strip() for d in value.split(",") if d.strip()]
    if not ids or not all(isinstance(d, str) for d in ids):
        raise typer.BadParameter("give at least one database id", param_hint="--databases")
    return ids


@eval_app.command("decoding")
def eval_decoding(
    task: Annotated[str, typer.Option("--task", help="math | extract | judge")] = "math",
    data_dir: Annotated[Path, typer.Option("--data-dir", help="the shared data folder")] = Path("../shared/data"),
    limit: Annotated[int, typer.Option("--limit", min=1, help="items (a seeded sample)")] = 50,
    methods: Annotated[
        str,
        typer.Option(
            "--methods",
            help="comma-separated: prompt,format_prompt,hard_mask,decog,decog_pruned, and outlines "
            "(outlines-core's hard mask, an external reference; not in the default run)",
        ),
    ] = "prompt,format_prompt,hard_mask,decog,decog_pruned",
    out: OutOption = Path("runs/decoding"),
    as_json: JsonOption = False,
    concurrency: ConcurrencyOption = 8,
    model_path: LocalModelOption = None,
    hmm_dir: HmmDirOption = None,
    candidate_gap: CandidateGapOption = DEFAULT_CANDIDATE_GAP,
) -> None:
    """Deco-G: format compliance, task quality and speed against prompting and a hard mask (embedded model, or
    --model with the HMM distilled for it)."""
    from prunekit.eval.datasets import DECODING_EVAL_DATA, dataset_files, decoding_exclude_file
    from prunekit.eval.decoding import METHODS, TASKS, evaluate_decoding

    if task not in TASKS:
        raise typer.BadParameter(f"must be one of {', '.join(TASKS)}", param_hint="--task")
    chosen = tuple(m.strip() for m in methods.split(",") if m.strip())
    if not chosen or set(chosen) - set(METHODS):
        raise typer.BadParameter(f"methods must be among {', '.join(METHODS)}", param_hint="--methods")
    check_model_path(model_path)  # arguments before data: a wrong one is named even where the data is absent
    check_hmm_dir(hmm_dir)
    paths = dataset_files(DECODING_EVAL_DATA, task, data_dir)
    require_files(paths, "--data-dir")
    model = load_local(model_path, hmm_dir)
    if model_path is not None and hmm_dir is None and any(m.startswith("decog") for m in chosen):
        stderr.print("[yellow]no --hmm: Deco-G uses the HMM distilled from the embedded SmolLM2, which fits only its "
                     "tokenizer; distil one for this model with `prunekit train hmm --model`[/]")  # fmt: skip
    result = evaluate_decoding(
        model,
        task,
        paths,
        limit=limit,
        methods=chosen,
        concurrency=concurrency,
        exclude_path=decoding_exclude_file(task, data_dir),
        candidate_gap=candidate_gap or None,
    )
    finish_eval(result, out / task, as_json)


@eval_app.command("rag")
def eval_rag(
    data: DataOption = Path("../shared/data/qa/hotpotqa/test.jsonl"),
    limit: LimitOption = 100,
    out: OutOption = Path("runs/rag"),
    as_json: JsonOption = False,
    concurrency: ConcurrencyOption = 8,
    top_k: Annotated[int, typer.Option("--top-k", min=1, max=64, help="chunks retrieved")] = 8,
    keep: Annotated[int, typer.Option("--keep", min=1, max=64, help="passages given to the LLM")] = 3,
    threshold: Annotated[float, typer.Option(min=0.0, max=1.0, help="the pruner's threshold")] = 0.1,
    backend: BackendOption = None,
) -> None:
    """RAG end to end on HotpotQA, pruned vs. unpruned: answer F1/EM, context tokens, latency, retrieval recall."""
    from prunekit.app.graphs.rag import RagSystem
    from prunekit.context_pruner import default_pruner
    from prunekit.eval.qa import load_qa
    from prunekit.eval.rag import evaluate_rag

    load_qa(data, 1)  # fail on a bad path before loading models
    result = evaluate_rag(
        load_model(settings_for(backend)),
        data,
        system=RagSystem,
        limit=limit,
        top_k=top_k,
        keep=keep,
        threshold=threshold,
        concurrency=concurrency,
        pruner=default_pruner(),
    )
    finish_eval(result, out, as_json)


@eval_app.command("proxy")
def eval_proxy(
    data: DataOption = Path("../shared/data/qa/hotpotqa/test.jsonl"),
    limit: LimitOption = 20,
    out: OutOption = Path("runs/proxy"),
    as_json: JsonOption = False,
    upstream: Annotated[
        str | None,
        typer.Option(
            "--upstream", help="an OpenAI base URL (default: start llama-cpp-python's server on the embedded GGUF)"
        ),
    ] = None,
    model: Annotated[str | None, typer.Option("--model", help="the model name the upstream knows")] = None,
    max_tokens: Annotated[int, typer.Option("--max-tokens", min=1, max=512, help="answer tokens")] = 24,
    threshold: Annotated[
        float | None, typer.Option("--threshold", min=0.0, max=1.0, help="the proxy's threshold (default: its own)")
    ] = None,
) -> None:
    """The pruning proxy vs. the same upstream reached directly, on HotpotQA as a user message and as tool results:
    answer F1, prompt tokens reaching the upstream, end-to-end latency."""
    from prunekit.app.proxy import ProxySettings, create_proxy_app
    from prunekit.app.proxy.background import serve_in_background
    from prunekit.app.proxy.llama_server import LLAMA_SERVER_MODEL, llama_server
    from prunekit.eval.proxy import evaluate_proxy
    from prunekit.eval.qa import load_qa

    load_qa(data, 1)  # fail on a bad path before starting servers
    with contextlib.ExitStack() as stack:
        direct = upstream or stack.enter_context(llama_server())
        settings = ProxySettings(upstream=direct, **({} if threshold is None else {"threshold": threshold}))
        proxy_app = create_proxy_app(settings)
        proxy_url = stack.enter_context(serve_in_background(proxy_app)) + "/v1"
        result = evaluate_proxy(direct, proxy_url, data, model=model or LLAMA_SERVER_MODEL, limit=limit,
                                max_tokens=max_tokens, threshold=settings.threshold)  # fmt: skip
    finish_eval(result, out, as_json)


@eval_app.command("schemas")
def eval_schemas(
    data: Annotated[Path, typer.Option("--data", help="the JSONSchemaBench folder (holding schemas.tar.xz)")] = Path(
        "../shared/data/jsonschemabench"
    ),
    limit_per_subset: Annotated[int, typer.Option("--limit-per-subset", min=1, help="seeded schemas per subset")] = 10,
    generate: Annotated[int, typer.Option("--generate", min=0, help="outputs per subset and engine")] = 2,
    compile_timeout: Annotated[
        float, typer.Option("--compile-timeout", min=0.1, max=120.0, help="seconds each engine may compile a schema")
    ] = 5.0,
    max_tokens: Annotated[int, typer.Option("--max-tokens", min=16, max=2048, help="tokens per output")] = 256,
    seed: Annotated[int, typer.Option("--seed", min=0)] = 0,
    out: OutOption = Path("runs/schemas"),
    as_json: JsonOption = False,
    concurrency: ConcurrencyOption = 4,
) -> None:
    """JSON Schema coverage (schemas accepted within --compile-timeout) and compliance (outputs that validate) on
    JSONSchemaBench, per subset: prunekit beside llguidance and outlines-core alone (embedded model)."""
    from prunekit.eval.jsonschemabench import load_schemas
    from prunekit.eval.schemas import evaluate_schemas

    load_schemas(data, limit_per_subset=1)  # fail on a bad path before loading the model
    result = evaluate_schemas(load_local(None), data, limit_per_subset=limit_per_subset, generate=generate,
                              compile_timeout_s=compile_timeout, max_tokens=max_tokens, seed=seed,
                              concurrency=concurrency)  # fmt: skip
    finish_eval(result, out, as_json)
