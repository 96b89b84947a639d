"""Calibrate a trained pruner's keep-logit bias so that the default threshold removes a target share of context.

A pruner trained for a few hundred CPU steps ranks sentences well but its keep probabilities are not calibrated:
the same threshold may remove 30 % of one model's context and 70 % of another's. Provence fixes the operating point
with the threshold (0.1 for its released model). We keep the threshold a stable knob for users (0.1 conservative,
0.5 aggressive) and move the model instead: `keep_logit_bias` is added to every keep-vs-drop logit, and this module
picks it by bisection so that, at `threshold`, the pruner removes `target_compression` of the context tokens of
*training* questions. The encoder runs once; each bisection step only re-thresholds shifted probabilities.

Compression is monotone in the bias (a larger bias raises every keep probability), which is what makes bisection
exact up to the granularity of whole sentences.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from prunekit.context_pruner.data import HotpotItem, is_evaluation_split, read_hotpotqa
from prunekit.context_pruner.errors import EvaluationSplitError, InvalidOptionError, TrainingDataError
from prunekit.context_pruner.model import check_weights, update_config
from prunekit.context_pruner.pruner import ContextPruner, ScoredContext

__all__ = [
    "DEFAULT_CALIBRATION_FILE",
    "DEFAULT_TARGET_COMPRESSION",
    "Calibration",
    "Status",
    "calibrate_weights",
    "calibration_path",
    "check_calibration_data",
    "check_calibration_split",
    "fit_keep_logit_bias",
    "no_status",
    "write_keep_logit_bias",
]

DEFAULT_CALIBRATION_FILE = "qa/hotpotqa/train.jsonl"  # a training split, relative to the shared data folder
DEFAULT_TARGET_COMPRESSION = 0.55  # the low end of Provence's operating range (50-80 % removed): room for recall

# Shows a long step while it runs (e.g. a rich console's `status`); `no_status` shows nothing.
Status = Callable[[str], AbstractContextManager[object]]


def no_status(message: str) -> AbstractContextManager[object]:
    return contextlib.nullcontext()


@dataclass(frozen=True)
class Calibration:
    keep_logit_bias: float  # the bias to store in the weights' config (absolute, not a change)
    compression: float  # share of context tokens removed at that bias on the calibration questions
    target_compression: float
    threshold: float
    questions: int
    contexts: int


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, 1e-7, 1 - 1e-7)
    return np.log(p) - np.log1p(-p)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _shifted(s: ScoredContext, delta: float) -> ScoredContext:
    """The same outputs as if the model had been run with its bias raised by `delta`."""
    return dataclasses.replace(
        s, p_keep=_sigmoid(_logit(s.p_keep) + delta), title_p=_sigmoid(_logit(s.title_p) + delta)
    )


def _compression(scored: Sequence[ScoredContext], delta: float, threshold: float) -> float:
    decided = [ContextPruner.decide(_shifted(s, delta), threshold) for s in scored]
    before = sum(d.tokens_before for d in decided)
    return 1.0 - sum(d.tokens_after for d in decided) / max(before, 1)


_SPAN = 12.0  # biases searched: the current one +- this many logits


def _plateau_edge(
    scored: Sequence[ScoredContext], inside: float, outward: float, value: float, threshold: float
) -> float:
    """The bias nearest `outward` at which compression still equals `value` (bisection from `inside`)."""
    if _compression(scored, outward, threshold) == value:
        return outward
    for _ in range(30):
        mid = (inside + outward) / 2
        if _compression(scored, mid, threshold) == value:
            inside = mid
        else:
            outward = mid
    return inside


def fit_keep_logit_bias(
    pruner: ContextPruner,
    items: Sequence[HotpotItem],
    *,
    target_compression: float = 0.5,
    threshold: float = 0.1,
    tolerance: float = 0.005,
    max_steps: int = 40,
    batch_size: int = 32,
) -> Calibration:
    """The bias at which `pruner` removes `target_compression` of the context of `items` at `threshold`.

    `items`: HotpotQA questions from a training split (every paragraph, gold and distractors, as the pruner sees
    them in a RAG pipeline). The search spans biases of +-12 logits around the pruner's current one.
    """
    if not 0.0 < target_compression < 1.0:
        raise InvalidOptionError(f"target_compression must be in (0, 1), got {target_compression}")
    if not 0.0 <= threshold <= 1.0:
        raise InvalidOptionError(f"threshold must be in [0, 1], got {threshold}")
    if not items:
        raise InvalidOptionError("no calibration questions: pass a non-empty training file")
    questions = [it.question for it in items]
    # each paragraph as `prunekit eval qa` sees it: its non-empty sentences joined by one space
    groups = [[" ".join(t for t in (s.strip() for s in sents) if t) for _, sents in it.paragraphs] for it in items]
    titles = [[title for title, _ in it.paragraphs] for it in items]
    scored = pruner.score(questions, groups, titles, batch_size)

    lo, hi = -_SPAN, _SPAN  # relative to the current bias: compression falls as the bias rises
    delta, got = 0.0, _compression(scored, 0.0, threshold)
    for _ in range(max_steps):
        if abs(got - target_compression) <= tolerance:
            break
        if got > target_compression:
            lo = delta  # too much removed: raise the bias
        else:
            hi = delta
        delta = (lo + hi) / 2
        got = _compression(scored, delta, threshold)
    # Compression is a step function of the bias (whole sentences). Move to the middle of the step we landed on,
    # so that rounding the stored bias or fp32 noise in a rerun cannot tip a sentence over the threshold.
    low = _plateau_edge(scored, delta, -_SPAN, got, threshold)
    high = _plateau_edge(scored, delta, _SPAN, got, threshold)
    delta = (low + high) / 2
    return Calibration(
        keep_logit_bias=round(pruner.cfg.keep_logit_bias + delta, 4),
        compression=got,
        target_compression=target_compression,
        threshold=threshold,
        questions=len(items),
        contexts=len(scored),
    )


def write_keep_logit_bias(weights_dir: str | Path, calibration: Calibration, source: str) -> Path:
    """Store the calibrated bias in the weights' `config.json`, with where it came from."""
    origin = (
        f"calibrated on {calibration.questions} questions of {source} (a training split): threshold "
        f"{calibration.threshold} -> compression {calibration.compression:.3f} "
        f"(target {calibration.target_compression})"
    )
    return update_config(weights_dir, extra={"keep_logit_bias": origin}, keep_logit_bias=calibration.keep_logit_bias)


def calibration_path(data: str | Path, data_root: str | Path | None) -> Path:
    """The calibration file `data`: itself when absolute (or without a data root), else under `data_root`."""
    data = Path(data)
    return data if data.is_absolute() or data_root is None else Path(data_root) / data


def check_calibration_split(path: str | Path) -> None:
    """The leakage guard: calibrating on an evaluation split raises `EvaluationSplitError` (a `LeakageError`)."""
    if is_evaluation_split(path):
        raise EvaluationSplitError(
            f"{Path(path).name} is an evaluation split: calibrate on training data", argument="calibration_file"
        )


def check_calibration_data(path: Path, data_root: str | Path | None) -> None:
    """The data the calibration reads (`TrainingDataError` when absent): checked after every argument, so a wrong
    argument is named as such even on a machine without the data."""
    if data_root is not None and not Path(data_root).is_dir():
        raise TrainingDataError(f"{data_root} is not a folder", argument="data_root")
    if not path.is_file():
        raise TrainingDataError(f"{path} does not exist", argument="calibration_file")


def calibrate_weights(
    weights: str | Path,
    data: str | Path = DEFAULT_CALIBRATION_FILE,
    *,
    data_root: str | Path | None = None,
    target_compression: float = DEFAULT_TARGET_COMPRESSION,
    status: Status = no_status,
) -> Calibration:
    """Fit the keep-logit bias of the weights in `weights` on the HotpotQA training file `data` (absolute, or under
    `data_root`) so that threshold 0.1 removes `target_compression` of the context, and store it in their config.

    Refused before anything loads: an evaluation split (`EvaluationSplitError`), a folder without weights
    (`PrunerWeightsError`), missing data (`TrainingDataError`); each error's `argument` names the input.
    """
    path = calibration_path(data, data_root)
    check_calibration_split(path)
    check_weights(weights, argument="weights")
    check_calibration_data(path, data_root)
    items = read_hotpotqa(path)
    with status(f"calibrating the keep-logit bias on {len(items)} questions of {path.name}"):
        result = fit_keep_logit_bias(ContextPruner(weights), items, target_compression=target_compression)
    write_keep_logit_bias(weights, result, path.name)
    return result
