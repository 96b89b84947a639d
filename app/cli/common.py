"""What every `prunekit` command shares: the command groups, common options, model loading, output."""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.table import Table

from prunekit.app.settings import Settings
from prunekit.decoding.errors import InvalidRequestError

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


def settings_for(backend: str | None) -> Settings:
    overrides: dict[str, Any] = {}
    if backend is not None:
        if backend not in ("embedded", "hf", "openai"):
            raise typer.BadParameter(f"must be embedded, hf or openai, got {backend!r}", param_hint="--backend")
        overrides["backend"] = backend
    return load_settings(**overrides)


def load_settings(**overrides: Any) -> Settings:
    """The settings from PRUNEKIT_* variables (and .env); a bad value is one line naming the variable."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        problems = "; ".join(
            f"PRUNEKIT_{'_'.join(str(part) for part in err['loc']).upper()}: {err['msg']}" for err in exc.errors()
        )
        raise InvalidRequestError(f"invalid setting: {problems}") from exc


def load_model(settings: Settings) -> Any:
    from prunekit.app.backends import build_chat_model

    with stderr.status(f"loading the {settings.backend} model"):
        return build_chat_model(settings)


def load_sql_model(settings: Settings, adapter: str | None = None) -> Any:
    """The SQL agent's model (`app.backends.build_sql_model`); a bad --adapter is a one-line error."""
    from prunekit.app.backends import build_sql_model

    try:
        from prunekit.nl2sql.adapter import resolve_adapter

        resolve_adapter(adapter if adapter is not None else settings.sql_adapter)
    except InvalidRequestError as err:
        raise typer.BadParameter(str(err), param_hint="--adapter") from None
    with stderr.status(f"loading the {settings.backend} model for SQL"):
        return build_sql_model(settings, adapter=adapter)


SqlAdapterOption = Annotated[
    str | None,
    typer.Option(
        "--adapter",
        help="the SQL agent's LoRA adapter on the embedded model: shipped (LearNAT-trained), none, or a folder "
        "(default: PRUNEKIT_SQL_ADAPTER, else shipped)",
    ),
]

LocalModelOption = Annotated[
    Path | None,
    typer.Option("--model", help="a GGUF file or a transformers model folder (default: the embedded SmolLM2)"),
]
HmmDirOption = Annotated[
    Path | None,
    typer.Option("--hmm", help="the HMM distilled for --model (`prunekit train hmm --model`); default: the shipped"),
]


CandidateGapOption = Annotated[
    float,
    typer.Option(
        "--candidate-gap",
        min=0.0,
        help="Deco-G: an exact HMM term only for free-text tokens within this many nats of the LLM's best; 0: all",
    ),
]


def check_hmm_dir(hmm_dir: Path | None) -> Path | None:
    """`hmm_dir` when it holds an HMM (None: the shipped one); a one-line `--hmm` error otherwise."""
    from prunekit.decoding.decog.errors import HMMFileError
    from prunekit.decoding.decog.hmm import check_hmm_dir as check

    try:
        return None if hmm_dir is None else check(hmm_dir)
    except HMMFileError as exc:
        raise typer.BadParameter(str(exc), param_hint="--hmm") from None


def check_model_path(model_path: Path | None) -> Path | None:
    """`model_path` when it can be a local model (None: the embedded one); a one-line `--model` error otherwise."""
    from prunekit.decoding.backends.loader import check_model_path as check

    try:
        return None if model_path is None else check(model_path)
    except InvalidRequestError as exc:
        raise typer.BadParameter(str(exc), param_hint="--model") from None


def load_local(model_path: Path | None, hmm_dir: Path | None = None) -> Any:
    """The in-process model for Deco-G's commands: `model_path` (GGUF file or transformers folder) or the embedded
    one, with the HMM in `hmm_dir` for its format guidance."""
    from prunekit.decoding.backends.loader import load_local_model

    check_model_path(model_path)
    with stderr.status(f"loading {model_path or 'the embedded model'}"):
        try:
            return load_local_model(model_path, hmm_dir=check_hmm_dir(hmm_dir))
        except InvalidRequestError as exc:
            raise typer.BadParameter(str(exc), param_hint="--model") from None


def print_json_last(figures: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(figures) + "\n")
    sys.stdout.flush()


def figures_table(title: str, figures: dict[str, float]) -> Table:
    table = Table(title=title)
    table.add_column("figure")
    table.add_column("value", justify="right")
    for key, value in figures.items():
        table.add_row(key, f"{value:.4g}" if isinstance(value, float) else str(value))
    return table


def finish_eval(
    result: Any,
    out: Path,
    as_json: bool,
    *,
    plots: Iterable[Callable[[Any, Path], Path]] = (),
    title: str | None = None,
) -> None:
    """The tail of every evaluation command: write results.json, report.md and the plots (`eval.harness`), the
    metrics as a table (`title`, default "eval <task>") and where they went on stderr, then (`--json`) the metrics
    as one JSON object on stdout's last line."""
    from prunekit.eval.harness import write_results

    path = write_results(result, out, plots=plots)
    stderr.print(figures_table(title or f"eval {result.task}", result.metrics))
    stderr.print(f"wrote {path} and {out / 'report.md'}")
    if as_json:
        print_json_last(result.metrics)


def require_files(paths: Iterable[Path], param_hint: str) -> None:
    """A one-line error naming `param_hint` for the first of `paths` that is not a file."""
    for path in paths:
        if not path.is_file():
            raise typer.BadParameter(f"{path} is missing", param_hint=param_hint)


def _check_repetition_penalty(value: float | None) -> float | None:
    """(0, 2]: typer's Option has no open lower bound, and 0 would divide the logits by zero."""
    if value is not None and not 0.0 < value <= 2.0:
        raise typer.BadParameter(f"must be in (0, 2] (1 turns the loop guard off), got {value}")
    return value


RepetitionPenaltyOption = Annotated[
    float | None,
    typer.Option(
        "--repetition-penalty",
        callback=_check_repetition_penalty,
        help="the loop guard: divide the logits of tokens in the answer's last 64 by this, in (0, 2]; 1 turns it "
        "off (default: $PRUNEKIT_REPETITION_PENALTY, 1.1, on free text)",
    ),
]
DataOption = Annotated[Path, typer.Option("--data", help="path to the benchmark file")]
LimitOption = Annotated[int | None, typer.Option("--limit", min=1, help="evaluate the first N items")]
OutOption = Annotated[Path, typer.Option("--out", help="output folder")]
JsonOption = Annotated[bool, typer.Option("--json", help="print the metrics as JSON on the last line")]
ConcurrencyOption = Annotated[int, typer.Option("--concurrency", min=1, max=64, help="concurrent LLM calls")]
PrunerOption = Annotated[
    Path | None,
    typer.Option("--pruner", help="context pruner weights folder (`prunekit train pruner`); default: the shipped ones"),
]


def check_pruner_weights(weights: Path | None) -> Path | None:
    """`weights` when it holds pruner weights (None: the shipped ones); a one-line error naming --pruner otherwise
    (the context pruner's own check, `check_weights`)."""
    from prunekit.context_pruner.errors import PrunerWeightsError
    from prunekit.context_pruner.model import check_weights

    try:
        return None if weights is None else check_weights(weights)
    except PrunerWeightsError as exc:
        raise typer.BadParameter(str(exc), param_hint="--pruner") from None


def load_pruner(weights: Path | None) -> Any:
    """The shipped context pruner (shared by the process), or the one in `weights` (checked first, as above)."""
    from prunekit.context_pruner.pruner import load_pruner as load

    return load(check_pruner_weights(weights))
