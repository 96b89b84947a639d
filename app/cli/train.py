"""`prunekit train ...`: training commands (each resumes an interrupted run). AGP's lives in `app.cli.agp`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from app.cli.common import BackendOption, ConcurrencyOption, figures_table, load_model, settings_for, stderr, train_app

DataDirOption = Annotated[Path, typer.Option("--data-dir", help="the shared data folder")]


@train_app.command("hmm")
def train_hmm(
    out: Annotated[Path, typer.Option("--out", help="folder for hmm.safetensors + config.json")] = Path(
        "decoding/weights/hmm-smollm2-h128"
    ),
    hidden: Annotated[int, typer.Option("--hidden", min=2, max=4096, help="hidden states H")] = 128,
    sequences: Annotated[int, typer.Option("--sequences", min=10, help="LLM samples to distil from")] = 1000,
    seq_len: Annotated[int, typer.Option("--seq-len", min=2, max=1024, help="tokens per sample")] = 128,
    shard_size: Annotated[int, typer.Option("--shard-size", min=1, help="samples per resumable shard")] = 100,
    data_dir: DataDirOption = Path("../shared/data"),
    concurrency: ConcurrencyOption = 8,
) -> None:
    """Deco-G: distil an HMM from the embedded LLM (sampling, hidden-state k-means, EM); resumes from its cache."""
    from decoding.decog.distill import DistillConfig, distill_hmm

    config = DistillConfig(
        hidden_size=hidden, n_sequences=sequences, seq_len=seq_len, concurrency=concurrency, shard_size=shard_size
    )
    path = distill_hmm(out, config=config, data_dir=data_dir)
    stderr.print(f"HMM written to {path}")


@train_app.command("nl2sql")
def train_nl2sql(
    synthesize: Annotated[
        bool, typer.Option("--synthesize", help="search decompositions of training questions")
    ] = False,
    dpo: Annotated[bool, typer.Option("--dpo", help="margin-aware DPO with LoRA on the search's pairs")] = False,
    data_dir: Annotated[Path, typer.Option("--data", help="the Spider folder")] = Path("../shared/data/spider"),
    trajectories: Annotated[Path, typer.Option("--trajectories", help="the search's JSONL file")] = Path(
        "runs/nl2sql/trajectories.jsonl"
    ),
    out: Annotated[Path, typer.Option("--out", help="DPO: where the LoRA adapters go")] = Path("runs/nl2sql/dpo"),
    start: Annotated[int, typer.Option("--start", min=0, help="first training question")] = 0,
    limit: Annotated[int | None, typer.Option("--limit", min=1, help="training questions to search")] = None,
    steps: Annotated[int, typer.Option("--steps", min=1, help="DPO optimisation steps")] = 100,
    model_path: Annotated[
        Path | None, typer.Option("--model-path", help="DPO: a transformers model folder (default: embedded)")
    ] = None,
    concurrency: ConcurrencyOption = 2,
    backend: BackendOption = None,
) -> None:
    """LearNAT training: `--synthesize` (tree search, trajectories JSONL), then `--dpo` (LoRA adapters)."""
    if synthesize == dpo:
        raise typer.BadParameter("give exactly one of --synthesize and --dpo")
    if synthesize:
        from nl2sql.train import synthesize as run_search

        if not (data_dir / "train_spider_slim.json").is_file():
            raise typer.BadParameter(f"{data_dir} has no train_spider_slim.json", param_hint="--data")
        stats = run_search(
            data_dir,
            trajectories,
            model=load_model(settings_for(backend)),
            start=start,
            limit=limit,
            concurrency=concurrency,
        )
        stderr.print(figures_table("decomposition synthesis", stats))
        stderr.print(f"trajectories in {trajectories}")
        return
    from nl2sql.dpo import DPOConfig
    from nl2sql.train import train_dpo

    if not trajectories.is_file():
        raise typer.BadParameter(f"{trajectories} does not exist: run --synthesize first", param_hint="--trajectories")
    stats = train_dpo([trajectories], out, model_path=model_path, config=DPOConfig(steps=steps))
    stderr.print(f"DPO finished: {stats}")
    stderr.print(f"LoRA adapters in {out / 'adapter'}")


@train_app.command("pruner")
def train_pruner(
    data_dir: DataDirOption = Path("../shared/data"),
    out: Annotated[Path, typer.Option("--out", help="checkpoints and the teacher-score cache")] = Path(
        "runs/context_pruner"
    ),
    export: Annotated[Path | None, typer.Option("--export", help="where the fp16 weights go")] = None,
    epochs: Annotated[int, typer.Option("--epochs", min=1, max=100)] = 1,
    max_steps: Annotated[int | None, typer.Option("--max-steps", min=1, help="stop early (time budgets)")] = None,
    batch_size: Annotated[int, typer.Option("--batch-size", min=1, max=512)] = 16,
) -> None:
    """Provence: train the context pruner (token keep/drop + rerank heads) on the training splits; resumable."""
    from context_pruner.train import TrainConfig, train

    if not data_dir.is_dir():
        raise typer.BadParameter(f"{data_dir} is not a folder", param_hint="--data-dir")
    config = TrainConfig(
        data_root=str(data_dir),
        out_dir=str(out),
        export_dir=str(export) if export else None,
        epochs=epochs,
        max_steps=max_steps,
        batch_size=batch_size,
    )
    path = train(config)
    stderr.print(f"pruner weights in {path}")
