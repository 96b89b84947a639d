"""`prunekit bench ...`: speed benchmarks. Two are about decoding, and measure different things:

- `bench decode`: how fast the embedded model decodes at all (tokens/s of its backend against transformers);
- `bench decoding`: what Deco-G's format guidance costs per token on top of that (the `eval decoding` methods).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Annotated, Any

import typer

from prunekit.app.cli.common import (
    CandidateGapOption,
    HmmDirOption,
    LocalModelOption,
    PrunerOption,
    bench_app,
    check_pruner_weights,
    figures_table,
    load_local,
    load_settings,
    print_json_last,
    stderr,
)
from prunekit.decoding.decog.guided import DEFAULT_CANDIDATE_GAP


def _report(title: str, figures: dict[str, Any], as_json: bool, notes: Iterable[str] = ()) -> None:
    """The tail of every bench command: the numeric figures as a table and `notes` on stderr, then (`--json`) every
    figure as one JSON object on stdout's last line."""
    stderr.print(figures_table(title, {k: v for k, v in figures.items() if isinstance(v, int | float)}))
    for note in notes:
        stderr.print(note)
    if as_json:
        print_json_last(figures)


@bench_app.command("decode")
def bench_decode_cmd(
    max_tokens: Annotated[int, typer.Option(min=8, max=1024, help="tokens per request")] = 128,
    requests: Annotated[int, typer.Option(min=1, max=50, help="sequential requests for single-stream speed")] = 3,
    hf: Annotated[bool, typer.Option("--hf/--no-hf", help="also measure transformers generate")] = True,
    rounds: Annotated[
        int,
        typer.Option(min=1, max=20, help="rounds per figure (speeds keep the best round, slowdowns the median ratio)"),
    ] = 2,
    as_json: Annotated[bool, typer.Option("--json", help="print the figures as JSON on the last line")] = False,
) -> None:
    """Embedded model speed: tokens/s of its default backend (plain, with a per-step hook, with chat's loop guard)
    vs. plain transformers generate, time to first token, and prefill tokens/s of one long prompt alone and of 8
    concurrent ones (with their time to first token). Deco-G's cost per token: `bench decoding`."""
    from prunekit.decoding.backends.loader import load_embedded
    from prunekit.decoding.backends.local import LocalModel
    from prunekit.eval.bench.decode import bench_decode

    guard = load_settings().repetition_penalty  # what `prunekit chat` and the service decode with
    with stderr.status("loading the embedded model"):
        model = load_embedded()
    with stderr.status("benchmarking (a minute or two)"):
        figures = bench_decode(
            model,
            LocalModel.embedded if hf else None,
            max_tokens=max_tokens,
            requests=requests,
            rounds=rounds,
            repetition_penalty=guard,
        )
    # Stop llama.cpp's scheduler before the interpreter exits: freed under a running scheduler thread at exit,
    # the process could die of a segmentation fault after printing its figures.
    model.close()
    _report("bench decode", figures, as_json)


@bench_app.command("prune")
def bench_prune_cmd(
    passages: Annotated[int, typer.Option(min=8, max=4096, help="passages to prune")] = 256,
    tokens: Annotated[int, typer.Option(min=32, max=512, help="tokens per encoder input (question + passage)")] = 256,
    batch_size: Annotated[int, typer.Option(min=1, max=256)] = 16,
    deberta: Annotated[int, typer.Option(min=0, max=64, help="passages for the DeBERTa-v3-large reference")] = 4,
    as_json: Annotated[bool, typer.Option("--json", help="print the figures as JSON on the last line")] = False,
    pruner: PrunerOption = None,
    precision: Annotated[
        str, typer.Option(help="auto | bf16 | int8 | fp32 (auto: bf16 on CPUs with native bf16, else int8)")
    ] = "auto",
    compare_precisions: Annotated[
        bool, typer.Option("--compare-precisions", help="also time the same weights in bf16, int8 and fp32")
    ] = False,
) -> None:
    """Passages/s and tokens/s of the context pruner, beside a DeBERTa-v3-large-sized encoder (Provence's size)."""
    from prunekit.context_pruner.precision import PRECISIONS
    from prunekit.eval.bench.pruner import bench_prune

    if precision not in PRECISIONS:
        raise typer.BadParameter(f"must be one of {', '.join(PRECISIONS)}, got {precision!r}", param_hint="--precision")

    with stderr.status("benchmarking the context pruner"):
        figures = bench_prune(
            n_passages=passages,
            tokens=tokens,
            batch_size=batch_size,
            deberta_passages=deberta,
            weights=check_pruner_weights(pruner),
            precision=precision,  # type: ignore[arg-type]  # checked against PRECISIONS above
            compare_precisions=compare_precisions,
        )
    _report("bench prune", figures, as_json)


@bench_app.command("load")
def bench_load_cmd(
    url: Annotated[str, typer.Option("--url", help="the running service, e.g. http://127.0.0.1:8000")],
    api_key: Annotated[str | None, typer.Option("--api-key", help="one of the service's keys, if it needs one")] = None,
    clients: Annotated[int, typer.Option(min=1, max=256, help="concurrent clients")] = 16,
    seconds: Annotated[float, typer.Option(min=1.0, max=3600.0, help="how long to send")] = 60.0,
    pid: Annotated[int | None, typer.Option("--pid", help="the server's process id, to sample its RSS")] = None,
    max_tokens: Annotated[int, typer.Option(min=1, max=1024, help="max_tokens of each chat request")] = 32,
    as_json: Annotated[bool, typer.Option("--json", help="print the figures as JSON on the last line")] = False,
) -> None:
    """Load a running service: concurrent clients on /v1/prune and /v1/chat/completions; latency, errors, RSS."""
    from prunekit.eval.bench.load import run_load

    with stderr.status(f"{clients} clients for {seconds:.0f} s"):
        figures = run_load(
            url, api_key=api_key, clients=clients, seconds=seconds, server_pid=pid, max_tokens=max_tokens
        )
    _report("bench load", figures, as_json)


@bench_app.command("attack")
def bench_attack_cmd(
    url: Annotated[str, typer.Option("--url", help="the running service, e.g. http://127.0.0.1:8000")],
    api_key: Annotated[str | None, typer.Option("--api-key", help="one of the service's keys, if it needs one")] = None,
    hangups: Annotated[int, typer.Option(min=0, max=64, help="streaming clients that hang up")] = 8,
    burst: Annotated[int, typer.Option(min=1, max=512, help="concurrent requests of the overload burst")] = 64,
    as_json: Annotated[bool, typer.Option("--json", help="print the figures as JSON on the last line")] = False,
) -> None:
    """Attack a running service (code execution, format bombs, bad fields, hosts, hang-ups, overload): what held."""
    from prunekit.eval.bench.attack import run_attacks

    with stderr.status("attacking"):
        figures = run_attacks(url, api_key=api_key, hangups=hangups, burst=burst)
    breaches = [f"[red]not contained[/red] {name}: {o['detail']}" for name, o in figures["attacks"].items()
                if not o["contained"]]  # fmt: skip
    _report("bench attack", figures, as_json, notes=breaches)


@bench_app.command("decoding")
def bench_decoding_cmd(
    max_tokens: Annotated[int, typer.Option(min=8, max=512, help="tokens every run generates")] = 64,
    prompts: Annotated[int, typer.Option(min=1, max=32, help="prompts per variant")] = 4,
    repeats: Annotated[int, typer.Option(min=1, max=10)] = 2,
    as_json: Annotated[bool, typer.Option("--json", help="print the figures as JSON on the last line")] = False,
    model_path: LocalModelOption = None,
    hmm_dir: HmmDirOption = None,
    candidate_gap: CandidateGapOption = DEFAULT_CANDIDATE_GAP,
) -> None:
    """Deco-G step cost: per-token overhead of format guidance over unconstrained decoding, H in {64, 128, 256},
    with/without pruning (sizes without a distilled HMM, e.g. all of them for --model without --hmm, time a random
    one). The model's own speed: `bench decode`."""
    from prunekit.decoding.decog.guided import DEFAULT_HMM_DIR
    from prunekit.eval.bench.guidance import bench_guidance

    model = load_local(model_path, hmm_dir)
    if hmm_dir is not None:
        hmms: list[Path] | None = [hmm_dir]
    elif model_path is None and (DEFAULT_HMM_DIR / "config.json").is_file():
        hmms = [DEFAULT_HMM_DIR]
    else:
        hmms = None
    with stderr.status("benchmarking guidance (a few minutes)"):
        figures = bench_guidance(
            model, hmms, max_tokens=max_tokens, n_prompts=prompts, repeats=repeats, candidate_gap=candidate_gap or None
        )
    _report("bench decoding", figures, as_json)


@bench_app.command("structured")
def bench_structured_cmd(
    rounds: Annotated[int, typer.Option(min=1, max=20, help="rounds (figures: the median over rounds)")] = 3,
    max_tokens: Annotated[int, typer.Option(min=8, max=512, help="tokens per output at most")] = 160,
    compile_timeout: Annotated[float, typer.Option(min=0.1, max=120.0, help="seconds to compile a schema")] = 30.0,
    as_json: Annotated[bool, typer.Option("--json", help="print the figures as JSON on the last line")] = False,
) -> None:
    """Per-token cost of enforcing a JSON Schema on the embedded model: unconstrained vs llguidance's hard mask vs
    Deco-G (small flat schema) vs outlines-core's mask, for a small and a large schema."""
    from prunekit.eval.bench.structured import bench_structured

    model = load_local(None)
    with stderr.status("benchmarking structured outputs (a few minutes)"):
        figures = bench_structured(model, rounds=rounds, max_tokens=max_tokens, compile_timeout_s=compile_timeout)
    model.close()  # stop llama.cpp's scheduler before exit (see bench decode)
    _report("bench structured", figures, as_json)


@bench_app.command("openai-structured")
def bench_openai_structured_cmd(
    data: Annotated[Path, typer.Option("--data", help="the JSONSchemaBench folder (holding schemas.tar.xz)")] = Path(
        "../shared/data/jsonschemabench"
    ),
    schemas: Annotated[int, typer.Option(min=1, max=200, help="JSONSchemaBench schemas (accepted ones, seeded)")] = 20,
    requests: Annotated[int, typer.Option(min=1, max=1000, help="response_format requests over them")] = 100,
    tool_requests: Annotated[int, typer.Option(min=0, max=500, help="tool_choice=required requests")] = 20,
    stream_pairs: Annotated[int, typer.Option(min=0, max=100, help="streamed vs whole tool-call pairs")] = 5,
    max_tokens: Annotated[int, typer.Option(min=16, max=2048, help="max_tokens of each request")] = 256,
    concurrency: Annotated[int, typer.Option(min=1, max=32, help="concurrent clients")] = 4,
    records: Annotated[Path | None, typer.Option("--records", help="write each reply's record to this file")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print the figures as JSON on the last line")] = False,
) -> None:
    """The real service on 127.0.0.1 with the embedded model, through the official `openai` client: json_schema
    strict replies that validate, tool_choice=required replies that are valid calls, streamed = whole tool calls."""
    import json
    import secrets
    import tempfile

    from prunekit.app.api.service import create_app
    from prunekit.app.proxy.background import serve_in_background
    from prunekit.eval.bench.openai_structured import bench_openai_structured, pick_schemas
    from prunekit.eval.jsonschemabench import load_schemas

    items = load_schemas(data)  # a bad path fails before the model loads
    model = load_local(None)
    chosen = pick_schemas(items, schemas, model.vocabulary())
    key = secrets.token_urlsafe(16)
    with tempfile.TemporaryDirectory() as scratch:
        app = create_app(load_settings(api_keys=[key], data_dir=Path(scratch)), model=model)
        with serve_in_background(app) as url, stderr.status(f"{requests + tool_requests} requests to {url}"):
            figures, replies = bench_openai_structured(url + "/v1", chosen, api_key=key, requests=requests,
                                                 tool_requests=tool_requests, stream_pairs=stream_pairs,
                                                 max_tokens=max_tokens, concurrency=concurrency)  # fmt: skip
    model.close()
    if records is not None:
        records.write_text(json.dumps(replies, indent=1))
    _report("bench openai-structured", figures, as_json)
