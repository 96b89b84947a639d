"""`prunekit bench ...`: speed benchmarks."""

from __future__ import annotations

from typing import Annotated

import typer

from app.cli.common import (
    bench_app,
    figures_table,
    print_json_last,
    stderr,
)


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
    stderr.print(figures_table("bench decode", figures))
    if as_json:
        print_json_last(figures)


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
    stderr.print(figures_table("bench prune", {k: v for k, v in figures.items() if isinstance(v, int | float)}))
    if as_json:
        print_json_last(figures)
