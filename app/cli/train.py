"""`prunekit train ...`: training commands (each resumes an interrupted run). AGP's lives in `app.cli.agp`."""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from prunekit.app.cli.common import (
    BackendOption,
    ConcurrencyOption,
    LocalModelOption,
    check_hmm_dir,
    figures_table,
    load_local,
    load_model,
    settings_for,
    stderr,
    train_app,
)

if TYPE_CHECKING:
    from prunekit.context_pruner.train import TrainConfig

DataDirOption = Annotated[Path, typer.Option("--data-dir", help="the shared data folder")]


SHIPPED_HMM = Path("decoding/decog/weights/hmm-smollm2-h128")  # the embedded model's, in the repo


def _is_shipped_hmm(path: Path) -> bool:
    """Whether `path` is the embedded model's HMM folder (another model must not overwrite it)."""
    from prunekit.decoding.decog.guided import DEFAULT_HMM_DIR

    return path.resolve() == DEFAULT_HMM_DIR.resolve()


@train_app.command("hmm")
def train_hmm(
    out: Annotated[Path, typer.Option("--out", help="folder for hmm.safetensors + config.json")] = SHIPPED_HMM,
    hidden: Annotated[int, typer.Option("--hidden", min=2, max=4096, help="hidden states H")] = 128,
    sequences: Annotated[int, typer.Option("--sequences", min=10, help="LLM samples to distil from")] = 1000,
    seq_len: Annotated[int, typer.Option("--seq-len", min=2, max=1024, help="tokens per sample")] = 128,
    shard_size: Annotated[int, typer.Option("--shard-size", min=1, help="samples per resumable shard")] = 100,
    data_dir: DataDirOption = Path("../shared/data"),
    concurrency: ConcurrencyOption = 8,
    model_path: LocalModelOption = None,
) -> None:
    """Deco-G: distil an HMM from the embedded LLM or --model (sampling, hidden-state k-means, EM); resumes from its
    cache."""
    from prunekit.decoding.decog.distill import DistillConfig, distill_hmm

    if model_path is not None and _is_shipped_hmm(out):
        raise typer.BadParameter("give another model's HMM its own folder (this is the embedded model's)",
                                 param_hint="--out")  # fmt: skip
    config = DistillConfig(
        hidden_size=hidden, n_sequences=sequences, seq_len=seq_len, concurrency=concurrency, shard_size=shard_size
    )
    # the embedded model loads only when there is sampling left to do (a finished run resumes without it)
    model = load_local(model_path) if model_path is not None else None
    path = distill_hmm(out, config=config, data_dir=data_dir, model=model)
    stderr.print(f"HMM written to {path}")


_GUIDANCE_TRAIN_DATA = {
    "math": ("agp/multiarith_train.json", "agp/svamp_train.json"),
    "extract": ("qa/squad_v1.1/train_subset-v1.1.json",),
    "judge": ("qa/squad_v1.1/train_subset-v1.1.json",),
}


@train_app.command("guidance")
def train_guidance(
    tasks: Annotated[list[str], typer.Option("--task", help="math | extract | judge (repeat for several)")] = [  # noqa: B006
        "math",
        "extract",
        "judge",
    ],
    weights: Annotated[str, typer.Option("--weights", help="comma-separated candidate weights")] = "0.25,0.5,1.0",
    limit: Annotated[int, typer.Option("--limit", min=4, help="training items per task")] = 30,
    hmm_dir: Annotated[Path, typer.Option("--hmm", help="the HMM whose config stores the choice")] = SHIPPED_HMM,
    data_dir: DataDirOption = Path("../shared/data"),
    concurrency: ConcurrencyOption = 8,
    model_path: LocalModelOption = None,
) -> None:
    """Deco-G: choose the guidance weight per task on TRAINING items (decog_pruned) and store it in the HMM config."""
    from prunekit.eval.decoding import TASKS, choose_guidance_weight, store_guidance_weights

    unknown = [t for t in tasks if t not in TASKS]
    if unknown:
        raise typer.BadParameter(f"unknown task {unknown[0]!r}: choose among {', '.join(TASKS)}", param_hint="--task")
    try:
        grid = sorted({float(w) for w in weights.split(",") if w.strip()})
    except ValueError:
        raise typer.BadParameter(f"{weights!r} is not a list of numbers", param_hint="--weights") from None
    if not grid or any(not math.isfinite(w) or w <= 0 for w in grid):
        raise typer.BadParameter("give positive weights, e.g. 0.25,0.5,1.0", param_hint="--weights")
    check_hmm_dir(hmm_dir)
    if model_path is not None and _is_shipped_hmm(hmm_dir):
        raise typer.BadParameter("give the HMM distilled for --model (this is the embedded model's)",
                                 param_hint="--hmm")  # fmt: skip
    paths = {t: [data_dir / p for p in _GUIDANCE_TRAIN_DATA[t]] for t in tasks}
    for path in (p for ps in paths.values() for p in ps):
        if not path.is_file():
            raise typer.BadParameter(f"{path} is missing", param_hint="--data-dir")
    model = load_local(model_path, hmm_dir)
    tables, chosen = {}, {}
    for task in tasks:
        stderr.print(f"{task}: decog_pruned at weights {grid} on {limit} training items")
        best, table = choose_guidance_weight(
            model, task, paths[task], weights=grid, limit=limit, hmm_dir=hmm_dir, concurrency=concurrency
        )
        tables[task], chosen[task] = table, best
        flat = {f"w={w} {k}": v for w, row in table.items() for k, v in row.items() if k in _GUIDANCE_COLUMNS}
        stderr.print(figures_table(f"{task}: decog_pruned on training items (best w={best})", flat))
    source = ", ".join(sorted({p.name for ps in paths.values() for p in ps}))
    path = store_guidance_weights(hmm_dir, tables, chosen, f"{limit} items per task of {source}")
    stderr.print(f"chosen weights {chosen}; written to {path}")


_GUIDANCE_COLUMNS = ("accuracy", "f1", "compliance", "loglik_per_token", "ms_per_step")


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
        from prunekit.nl2sql.train import synthesize as run_search

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
    from prunekit.nl2sql.dpo import DPOConfig
    from prunekit.nl2sql.train import train_dpo

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
    recipe: Annotated[
        Path | None,
        typer.Option(
            "--recipe",
            help="a JSON file of TrainConfig fields (context_pruner/recipes/): the stage to run; it sets epochs "
            "and batch size, the command line only where to read and write and --max-steps",
        ),
    ] = None,
    calibrate_only: Annotated[
        Path | None,
        typer.Option("--calibrate-only", help="skip training: only calibrate the weights in this folder"),
    ] = None,
    calibration_data: Annotated[
        str, typer.Option("--calibration-data", help="HotpotQA training file, relative to --data-dir")
    ] = "qa/hotpotqa/train.jsonl",
    target_compression: Annotated[
        float, typer.Option("--target-compression", min=0.05, max=0.95, help="share of context removed at 0.1")
    ] = 0.55,  # the low end of Provence's operating range (50-80 % removed), leaving room for recall
) -> None:
    """Provence: train the context pruner (token keep/drop + rerank heads) on the training splits; resumable.

    After training (or alone, with --calibrate-only) the keep-logit bias is calibrated on a training split so that
    the default threshold 0.1 removes --target-compression of the context.
    """
    from prunekit.context_pruner.data import is_evaluation_split

    # The arguments are checked before the data is looked at: a wrong argument is named as such even on a
    # machine without the shared data (a fresh clone), and the user fixes one thing at a time.
    calibration_file = Path(calibration_data) if Path(calibration_data).is_absolute() else data_dir / calibration_data
    if is_evaluation_split(calibration_file):
        raise typer.BadParameter(
            f"{calibration_file.name} is an evaluation split: calibrate on training data",
            param_hint="--calibration-data",
        )
    if calibrate_only is not None:
        if not (calibrate_only / "config.json").is_file():
            raise typer.BadParameter(f"no pruner weights in {calibrate_only}", param_hint="--calibrate-only")
        _check_calibration_data(data_dir, calibration_file)
        weights = calibrate_only
    else:
        from prunekit.context_pruner.model import update_config
        from prunekit.context_pruner.train import TrainConfig, train
        from prunekit.context_pruner.validate import validate_held_out_articles

        # where to read and write, and how far to go; with a recipe, everything else comes from the recipe
        where: dict[str, object] = {"data_root": str(data_dir), "out_dir": str(out)}
        if export is not None:
            where["export_dir"] = str(export)
        if max_steps is not None:
            where["max_steps"] = max_steps
        if recipe is None:
            config = TrainConfig(**where, epochs=epochs, batch_size=batch_size)
        else:
            try:
                config = TrainConfig.from_json(recipe, **where)
            except ValueError as exc:
                raise typer.BadParameter(str(exc), param_hint="--recipe") from exc
        _check_training_files(config)
        _check_calibration_data(data_dir, calibration_file)
        weights = train(config)
        if recipe is not None:
            update_config(weights, extra={"recipe": recipe.as_posix()})
        if config.squad_held_out_every:
            with stderr.status("ranking validation on held-out SQuAD articles"):
                validation = validate_held_out_articles(weights, config)
            for name, result in validation.items():
                stderr.print(figures_table(f"rerank recall@1, held-out articles of {name}", vars(result)))
    _calibrate(weights, calibration_file, target_compression)
    stderr.print(f"pruner weights in {weights}")


def _check_training_files(config: TrainConfig) -> None:
    """The recipe's weights folders and training splits, then whether its training files exist: the recipe's own
    mistakes come first, so they are reported the same with or without the shared data."""
    from prunekit.context_pruner.data import is_evaluation_split
    from prunekit.context_pruner.train import data_paths

    for name in ("init_weights", "teacher_weights"):
        folder = getattr(config, name)
        if folder and not (Path(folder) / "config.json").is_file():
            raise typer.BadParameter(f"{name}: no pruner weights in {folder}", param_hint="--recipe")
    paths = data_paths(config)
    for path in paths:
        if is_evaluation_split(path):
            raise typer.BadParameter(f"{path} is an evaluation split: train on training splits only")
    for path in paths:
        if not path.is_file():
            raise typer.BadParameter(f"training file {path} does not exist (relative paths are under --data-dir)")


def _check_calibration_data(data_dir: Path, calibration_file: Path) -> None:
    """The data the calibration reads, checked after every argument (see `train_pruner`)."""
    if not data_dir.is_dir():
        raise typer.BadParameter(f"{data_dir} is not a folder", param_hint="--data-dir")
    if not calibration_file.is_file():
        raise typer.BadParameter(f"{calibration_file} does not exist", param_hint="--calibration-data")


def _calibrate(weights: Path, data: Path, target_compression: float) -> None:
    from prunekit.context_pruner.calibrate import fit_keep_logit_bias, write_keep_logit_bias
    from prunekit.context_pruner.data import read_hotpotqa
    from prunekit.context_pruner.pruner import ContextPruner

    items = read_hotpotqa(data)
    with stderr.status(f"calibrating the keep-logit bias on {len(items)} questions of {data.name}"):
        result = fit_keep_logit_bias(ContextPruner(weights), items, target_compression=target_compression)
    write_keep_logit_bias(weights, result, data.name)
    stderr.print(
        f"keep_logit_bias {result.keep_logit_bias}: compression {result.compression:.3f} at threshold "
        f"{result.threshold} on {result.questions} training questions"
    )
