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
from prunekit.decoding.decog.guided import DEFAULT_HMM_DIR

if TYPE_CHECKING:
    from prunekit.context_pruner.train import TrainConfig

DataDirOption = Annotated[Path, typer.Option("--data-dir", help="the shared data folder")]


def _is_shipped_hmm(path: Path) -> bool:
    """Whether `path` is the embedded model's HMM folder (another model must not overwrite it)."""
    return path.resolve() == DEFAULT_HMM_DIR.resolve()


@train_app.command("hmm")
def train_hmm(
    out: Annotated[Path, typer.Option("--out", help="folder for hmm.safetensors + config.json")] = DEFAULT_HMM_DIR,
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


@train_app.command("guidance")
def train_guidance(
    tasks: Annotated[list[str], typer.Option("--task", help="math | extract | judge (repeat for several)")] = [  # noqa: B006
        "math",
        "extract",
        "judge",
    ],
    weights: Annotated[str, typer.Option("--weights", help="comma-separated candidate weights")] = "0.25,0.5,1.0",
    limit: Annotated[int, typer.Option("--limit", min=4, help="training items per task")] = 30,
    hmm_dir: Annotated[Path, typer.Option("--hmm", help="the HMM whose config stores the choice")] = DEFAULT_HMM_DIR,
    data_dir: DataDirOption = Path("../shared/data"),
    concurrency: ConcurrencyOption = 8,
    model_path: LocalModelOption = None,
) -> None:
    """Deco-G: choose the guidance weight per task on TRAINING items (decog_pruned) and store it in the HMM config."""
    from prunekit.decoding.decog.guidance_weights import choose_guidance_weight, store_guidance_weights
    from prunekit.eval.decoding import TASKS, guidance_trial

    unknown = [t for t in tasks if t not in TASKS]
    if unknown:
        raise typer.BadParameter(f"unknown task {unknown[0]!r}: choose among {', '.join(TASKS)}", param_hint="--task")
    grid = _guidance_grid(weights)
    check_hmm_dir(hmm_dir)
    if model_path is not None and _is_shipped_hmm(hmm_dir):
        raise typer.BadParameter("give the HMM distilled for --model (this is the embedded model's)",
                                 param_hint="--hmm")  # fmt: skip
    paths = _guidance_train_files(tasks, data_dir)
    model = load_local(model_path, hmm_dir)
    tables, chosen = {}, {}
    for task in tasks:
        stderr.print(f"{task}: decog_pruned at weights {grid} on {limit} training items")
        trial = guidance_trial(model, task, paths[task], limit=limit, hmm_dir=hmm_dir, concurrency=concurrency)
        best, table = choose_guidance_weight(trial, task, grid)
        tables[task], chosen[task] = table, best
        flat = {f"w={w} {k}": v for w, row in table.items() for k, v in row.items() if k in _GUIDANCE_COLUMNS}
        stderr.print(figures_table(f"{task}: decog_pruned on training items (best w={best})", flat))
    source = ", ".join(sorted({p.name for ps in paths.values() for p in ps}))
    path = store_guidance_weights(hmm_dir, tables, chosen, f"{limit} items per task of {source}")
    stderr.print(f"chosen weights {chosen}; written to {path}")


_GUIDANCE_COLUMNS = ("accuracy", "f1", "compliance", "loglik_per_token", "ms_per_step")


def _guidance_grid(weights: str) -> list[float]:
    """The candidate weights of `--weights` ("0.25,0.5,1.0"), sorted; a one-line error unless all are positive."""
    try:
        grid = sorted({float(w) for w in weights.split(",") if w.strip()})
    except ValueError:
        raise typer.BadParameter(f"{weights!r} is not a list of numbers", param_hint="--weights") from None
    if not grid or any(not math.isfinite(w) or w <= 0 for w in grid):
        raise typer.BadParameter("give positive weights, e.g. 0.25,0.5,1.0", param_hint="--weights")
    return grid


def _guidance_train_files(tasks: list[str], data_dir: Path) -> dict[str, list[Path]]:
    """Each task's training files under `data_dir` (`eval.datasets.GUIDANCE_TRAIN_DATA`); a one-line error for a
    missing one."""
    from prunekit.eval.datasets import GUIDANCE_TRAIN_DATA, dataset_files

    paths = {t: dataset_files(GUIDANCE_TRAIN_DATA, t, data_dir) for t in tasks}
    for path in (p for ps in paths.values() for p in ps):
        if not path.is_file():
            raise typer.BadParameter(f"{path} is missing", param_hint="--data-dir")
    return paths


@train_app.command("nl2sql")
def train_nl2sql(
    synthesize: Annotated[
        bool, typer.Option("--synthesize", help="search decompositions of training questions")
    ] = False,
    dpo: Annotated[bool, typer.Option("--dpo", help="margin-aware DPO with LoRA on the search's pairs")] = False,
    sft: Annotated[
        bool, typer.Option("--sft", help="supervised LoRA on the agent's prompts over Spider train (stage 1)")
    ] = False,
    preference: Annotated[
        bool,
        typer.Option("--preference", help="stage 2: pairs mined from stage 1's answers, margin-aware DPO on top"),
    ] = False,
    recipe: Annotated[
        Path | None,
        typer.Option(
            "--recipe", help="--sft / --preference: a JSON recipe (nl2sql/recipes/sft.json, nl2sql/recipes/dpo.json)"
        ),
    ] = None,
    data_dir: Annotated[Path, typer.Option("--data", help="the Spider folder")] = Path("../shared/data/spider"),
    trajectories: Annotated[Path, typer.Option("--trajectories", help="the search's JSONL file")] = Path(
        "runs/nl2sql/trajectories.jsonl"
    ),
    out: Annotated[
        Path | None,
        typer.Option("--out", help="where the LoRA adapters go (default runs/nl2sql/sft, /pref or /dpo)"),
    ] = None,
    start: Annotated[int, typer.Option("--start", min=0, help="first training question")] = 0,
    limit: Annotated[int | None, typer.Option("--limit", min=1, help="training questions to search")] = None,
    steps: Annotated[int, typer.Option("--steps", min=1, help="DPO optimisation steps")] = 100,
    model_path: Annotated[
        Path | None, typer.Option("--model-path", help="DPO: a transformers model folder (default: embedded)")
    ] = None,
    concurrency: ConcurrencyOption = 2,
    backend: BackendOption = None,
) -> None:
    """LearNAT training: `--sft` (stage 1, supervised LoRA), `--preference` (stage 2, margin-aware DPO on pairs
    mined from stage 1's answers), `--synthesize` (tree search, trajectories JSONL), `--dpo` (margin-aware DPO
    on the search's pairs). Each resumes where it stopped when run again."""
    if sum((sft, preference, synthesize, dpo)) != 1:
        raise typer.BadParameter("give exactly one of --sft, --preference, --synthesize and --dpo")
    if recipe is not None and not recipe.is_file():
        raise typer.BadParameter(f"{recipe} does not exist", param_hint="--recipe")
    if (sft or preference or synthesize) and not (data_dir / "train_spider_slim.json").is_file():
        raise typer.BadParameter(f"{data_dir} has no train_spider_slim.json", param_hint="--data")
    if preference:
        from prunekit.decoding.errors import InvalidRequestError
        from prunekit.nl2sql.retrieval import RetrievalError
        from prunekit.nl2sql.train import train_preference

        try:
            summary = train_preference(data_dir, out or Path("runs/nl2sql/pref"), recipe=recipe)
        except RetrievalError as err:  # stage 1 is missing where the recipe's sft_dir points
            raise typer.BadParameter(str(err), param_hint="--recipe's sft_dir") from None
        except (InvalidRequestError, TypeError, ValueError) as err:
            raise typer.BadParameter(str(err), param_hint="--recipe") from None
        mined = {f"mining: {k}": v for k, v in summary.pop("mining").items()}
        stderr.print(figures_table("preference stage", {**mined, **summary}))
        return
    if sft:
        from prunekit.decoding.errors import InvalidRequestError
        from prunekit.nl2sql.train import train_supervised

        try:
            summary = train_supervised(data_dir, out or Path("runs/nl2sql/sft"), recipe=recipe)
        except (InvalidRequestError, TypeError, ValueError) as err:
            raise typer.BadParameter(str(err), param_hint="--recipe") from None
        stderr.print(figures_table("supervised stage", {k: v for k, v in summary.items() if k != "segments"}))
        return
    if synthesize:
        from prunekit.nl2sql.train import synthesize as run_search

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
    out = out or Path("runs/nl2sql/dpo")
    stats = train_dpo([trajectories], out, model_path=model_path, config=DPOConfig(steps=steps))
    stderr.print(f"DPO finished: {stats}")
    stderr.print(f"LoRA adapters in {out / 'adapter'}")


RecipeOption = Annotated[
    Path | None,
    typer.Option(
        "--recipe",
        help="a JSON file of TrainConfig fields (context_pruner/recipes/): the stage to run; it sets epochs "
        "and batch size, the command line only where to read and write and --max-steps",
    ),
]
CalibrateOnlyOption = Annotated[
    Path | None, typer.Option("--calibrate-only", help="skip training: only calibrate the weights in this folder")
]
CalibrationDataOption = Annotated[
    str, typer.Option("--calibration-data", help="HotpotQA training file, relative to --data-dir")
]
TargetCompressionOption = Annotated[
    float, typer.Option("--target-compression", min=0.05, max=0.95, help="share of context removed at 0.1")
]
# The option of `train pruner` that gave each input the context pruner's errors name (`PrunerInputError.argument`).
_PRUNER_OPTIONS = {
    "calibration_file": "--calibration-data",
    "data_root": "--data-dir",
    "weights": "--calibrate-only",
    "config.init_weights": "--recipe",
    "config.teacher_weights": "--recipe",
    "config.data": None,  # the training files: the recipe's, or the default ones under --data-dir
}


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
    recipe: RecipeOption = None,
    calibrate_only: CalibrateOnlyOption = None,
    calibration_data: CalibrationDataOption = "qa/hotpotqa/train.jsonl",  # context_pruner's DEFAULT_CALIBRATION_FILE
    target_compression: TargetCompressionOption = 0.55,  # DEFAULT_TARGET_COMPRESSION (not imported: --help is fast)
) -> None:
    """Provence: train the context pruner (token keep/drop + rerank heads) on the training splits; resumable.

    After training (or alone, with --calibrate-only) the keep-logit bias is calibrated on a training split so that
    the default threshold 0.1 removes --target-compression of the context.
    """
    from prunekit.context_pruner.calibrate import calibrate_weights
    from prunekit.context_pruner.errors import PrunerInputError
    from prunekit.context_pruner.train import train_validate_calibrate

    try:
        if calibrate_only is not None:
            calibration = calibrate_weights(calibrate_only, calibration_data, data_root=data_dir,
                                            target_compression=target_compression, status=stderr.status)  # fmt: skip
            weights = calibrate_only
        else:
            config = _train_config(data_dir, out, export, epochs, max_steps, batch_size, recipe)
            run = train_validate_calibrate(config, calibration_data, target_compression=target_compression,
                                           recipe=recipe, status=stderr.status)  # fmt: skip
            for name, result in run.validation.items():
                stderr.print(figures_table(f"rerank recall@1, held-out articles of {name}", vars(result)))
            weights, calibration = run.weights, run.calibration
    except PrunerInputError as exc:  # a wrong input is named by its option; an error while running stays as it is
        if exc.argument not in _PRUNER_OPTIONS:
            raise
        raise typer.BadParameter(str(exc), param_hint=_PRUNER_OPTIONS[exc.argument]) from None
    stderr.print(
        f"keep_logit_bias {calibration.keep_logit_bias}: compression {calibration.compression:.3f} at threshold "
        f"{calibration.threshold} on {calibration.questions} training questions"
    )
    stderr.print(f"pruner weights in {weights}")


def _train_config(
    data_dir: Path,
    out: Path,
    export: Path | None,
    epochs: int,
    max_steps: int | None,
    batch_size: int,
    recipe: Path | None,
) -> TrainConfig:
    """Where to read and write and how far to go, from the command line; with a recipe, everything else comes from
    the recipe (a bad one is a one-line error naming --recipe)."""
    from prunekit.context_pruner.train import TrainConfig

    where: dict[str, object] = {"data_root": str(data_dir), "out_dir": str(out)}
    if export is not None:
        where["export_dir"] = str(export)
    if max_steps is not None:
        where["max_steps"] = max_steps
    if recipe is None:
        return TrainConfig(**where, epochs=epochs, batch_size=batch_size)
    try:
        return TrainConfig.from_json(recipe, **where)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--recipe") from exc
