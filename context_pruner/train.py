"""Train the context pruner: token keep/drop cross-entropy + lambda * (teacher score - rerank score)^2.

Provence (Chirkova et al., ICLR 2025, arXiv 2501.16214) fine-tunes a cross-encoder with a token head on
(question, passage) pairs labelled per sentence, and regresses its rerank head onto the initial cross-encoder's
scores (self-distillation, lambda 0.05 on logits). We start from a bi-encoder (all-MiniLM-L6-v2) that has no
reranking head to preserve, so the teacher score is

    teacher = label_weight * [passage holds a relevant sentence] + (1 - label_weight) * cosine(question, passage)

with the cosine of the same MiniLM used as a bi-encoder. The label term makes the head rank gold passages above
distractors (what recall@1 measures); the cosine term orders passages within each class, at the price of a
bi-encoder pass over all training passages. Gold labels alone (label_weight = 1, the default and the first two
stages of the shipped weights) taught the head to tell a question's topic from another, not to rank paragraphs
of one topic: with hard same-article negatives and label_weight 0.3 (`recipes/stage3.json`) its recall@1 on
held-out SQuAD articles rose from 0.48 to 0.80 (0.63 at label_weight 0.5). Both terms lie in [0, 1], so lambda
is 1-2 here rather than Provence's 0.05 on unbounded logits.

Distillation into a smaller student (`teacher_weights`): a trained pruner reads the same batches; its keep
probability of every context token is mixed into the token target (`soft_label_weight`) and its rerank score
replaces the teacher score above. With `init_weights` and a smaller `num_layers`, the student starts from the
teacher's first layers and heads, so what it must learn is how to do in k layers what the teacher does in more.

CPU, fp32, AdamW with linear warm-up then linear decay, batches bucketed by length; a checkpoint every
`checkpoint_every` steps in `out_dir`, from which a rerun resumes. Never imported at serve time.

`train_validate_calibrate` is the whole recipe (what `prunekit train pruner` runs): train, validate ranking on
held-out SQuAD articles (`validate`), calibrate the keep-logit bias (`calibrate`). It checks every input before the
first step and refuses evaluation splits (`EvaluationSplitError`, a `LeakageError`): nothing is trained or
calibrated on data the evaluations score.
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm
from transformers import PreTrainedTokenizerBase

from prunekit.context_pruner.calibrate import (
    DEFAULT_CALIBRATION_FILE,
    DEFAULT_TARGET_COMPRESSION,
    Calibration,
    Status,
    calibrate_weights,
    calibration_path,
    check_calibration_data,
    check_calibration_split,
    no_status,
)
from prunekit.context_pruner.data import Passage, is_evaluation_split, read_training_passages
from prunekit.context_pruner.encoding import IGNORE, collate
from prunekit.context_pruner.errors import EvaluationSplitError, PrunerWeightsError, TrainingDataError
from prunekit.context_pruner.labels import EncodedPassage, encode_passage, silver_labels
from prunekit.context_pruner.model import (
    DEFAULT_BASE,
    PrunerConfig,
    PrunerModel,
    check_weights,
    first_layers,
    load_pretrained,
    load_tokenizer,
    save_pretrained,
    update_config,
)
from prunekit.context_pruner.validate import RankingValidation, validate_held_out_articles
from prunekit.decoding.protocol import ChatModel

__all__ = [
    "DEFAULT_TRAIN_FILES",
    "TrainConfig",
    "TrainingRun",
    "check_training_inputs",
    "data_paths",
    "train",
    "train_validate_calibrate",
]

logger = logging.getLogger(__name__)

DEFAULT_TRAIN_FILES = (
    "qa/hotpotqa/train.jsonl",
    "qa/hotpotqa/train_hipporag.json",
    "qa/squad_v1.1/train_subset-v1.1.json",
)  # relative to the shared data folder; the training splits only (see data/README.md)


@dataclass
class TrainConfig:
    data: tuple[str, ...] = DEFAULT_TRAIN_FILES  # training files (absolute, or relative to data_root)
    data_root: str = "../shared/data"
    out_dir: str = "runs/context_pruner"  # checkpoints and the teacher-score cache
    export_dir: str | None = None  # where the final fp16 weights go (default: out_dir/weights)
    base_model: str = DEFAULT_BASE
    num_layers: int | None = 4
    max_length: int = 256
    batch_size: int = 16
    epochs: int = 1
    lr: float = 1e-4
    weight_decay: float = 0.01
    warmup_ratio: float = 0.06
    max_grad_norm: float = 1.0
    rerank_weight: float = 1.0  # lambda
    label_weight: float = 1.0  # share of the gold label in the teacher score (the rest: bi-encoder cosine)
    hotpot_distractors: int | None = 3  # distractor paragraphs kept per HotpotQA question (None: all)
    squad_questions: int | None = 1500
    squad_negative_rate: float = 0.3  # share of SQuAD questions that also get a negative passage
    squad_same_article_negatives: bool = False  # negatives from the question's own article (hard) or another
    squad_held_out_every: int | None = None  # every n-th SQuAD article is kept out, for ranking validation
    max_passages: int | None = None
    checkpoint_every: int = 50
    max_steps: int | None = None  # stop early (tests, time budgets); the schedule still spans the full run
    seed: int = 0
    num_threads: int | None = None
    encoder_config: dict | None = field(default=None)  # random encoder of this shape instead of base_model (tests)
    init_weights: str | None = None  # start from these pruner weights (their first num_layers layers)
    teacher_weights: str | None = None  # distil from this trained pruner (module docstring)
    soft_label_weight: float = 0.5  # with a teacher: token target = this * teacher keep prob + rest * gold label

    @classmethod
    def from_json(cls, path: str | Path, **overrides: Any) -> TrainConfig:
        """A recipe file (a JSON object of field names and values, e.g. `context_pruner/recipes/*.json`), then
        `overrides`; unknown names raise `ValueError` rather than being ignored."""
        try:
            recipe = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ValueError(f"cannot read the recipe {path}: {exc}") from exc
        if not isinstance(recipe, dict):
            raise ValueError(f"{path}: a recipe is a JSON object of TrainConfig fields")
        recipe = {k: v for k, v in recipe.items() if not k.startswith("_")}  # "_comment" keys explain the recipe
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(recipe) - known)
        if unknown:
            raise ValueError(f"{path}: unknown TrainConfig fields {unknown}; known: {sorted(known)}")
        from pydantic import TypeAdapter, ValidationError

        try:  # types checked against the field annotations ("lr": "fast" is an error, not a crash later)
            return TypeAdapter(cls).validate_python({**recipe, **overrides})
        except ValidationError as exc:
            problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
            raise ValueError(f"{path}: {problems}") from exc


def data_paths(config: TrainConfig) -> list[Path]:
    """The training files of `config`, resolved against its data root."""
    root = Path(config.data_root)
    return [Path(p) if Path(p).is_absolute() or Path(p).exists() else root / p for p in config.data]


def check_training_inputs(config: TrainConfig) -> None:
    """The leakage guard and the training data, before anything loads: the weights to start or distil from (a
    `PrunerWeightsError`), then evaluation splits among the training files (`EvaluationSplitError`, a
    `LeakageError`), then whether every training file exists (`TrainingDataError`). The recipe's own mistakes come
    first, so they are reported the same with or without the data."""
    for name in ("init_weights", "teacher_weights"):
        folder = getattr(config, name)
        if folder:
            try:
                check_weights(folder)
            except PrunerWeightsError as exc:
                raise PrunerWeightsError(f"{name}: {exc}", argument=f"config.{name}") from None
    paths = data_paths(config)
    for path in paths:
        if is_evaluation_split(path):
            raise EvaluationSplitError(
                f"{path} is an evaluation split: train on training splits only", argument="config.data"
            )
    for path in paths:
        if not path.is_file():
            raise TrainingDataError(
                f"training file {path} does not exist (relative paths are under the data folder)",
                argument="config.data",
            )


def _fingerprint(passages: Sequence[Passage]) -> str:
    h = hashlib.sha256()
    for p in passages:
        h.update(f"{p.question}\x00{p.title}\x00{'|'.join(p.sentences)}\x00{p.labels}\n".encode())
    return h.hexdigest()[:16]


def _teacher_scores(config: TrainConfig, passages: Sequence[Passage], cache: Path) -> np.ndarray:
    """label_weight * relevant + (1 - label_weight) * bi-encoder cosine, cached on disk for resumed runs."""
    key = _fingerprint(passages) + f"-{config.label_weight}-{config.base_model}"
    if cache.exists():
        saved = np.load(cache, allow_pickle=False)
        if str(saved["key"]) == key:
            return saved["scores"]
    labels = np.asarray([float(p.relevant) for p in passages])
    if config.label_weight < 1.0 and config.encoder_config is None:
        from prunekit.context_pruner.biencoder import BiEncoder

        enc = BiEncoder(config.base_model)
        texts = [f"{p.title or ''}\n{''.join(p.sentences)}".strip() for p in passages]
        questions = sorted({p.question for p in passages})
        q_emb = dict(zip(questions, enc.embed(questions), strict=True))
        logger.info("teacher: embedding %d passages with the bi-encoder", len(texts))
        p_emb = enc.embed(texts)  # (N, H)
        cos = np.einsum("nh,nh->n", p_emb, np.stack([q_emb[p.question] for p in passages]))
    else:
        cos = labels
    scores = config.label_weight * labels + (1.0 - config.label_weight) * cos
    cache.parent.mkdir(parents=True, exist_ok=True)
    np.savez(cache, key=np.asarray(key), scores=scores)
    return scores


def _batches(examples: Sequence[EncodedPassage], batch_size: int, rng: random.Random) -> list[list[int]]:
    """Length-bucketed batches: shuffle, sort within pools of 50 batches, cut, shuffle the batches."""
    order = list(range(len(examples)))
    rng.shuffle(order)
    pool = batch_size * 50
    batches = []
    for p in range(0, len(order), pool):
        chunk = sorted(order[p : p + pool], key=lambda i: len(examples[i].ids))
        batches.extend(chunk[b : b + batch_size] for b in range(0, len(chunk), batch_size))
    rng.shuffle(batches)
    return batches


def _label_missing(passages: list[Passage], labeller: ChatModel | None) -> list[Passage]:
    """Silver-label passages that have no labels (Provence); without a labeller they are dropped."""
    out, dropped = [], 0
    todo = [p for p in passages if p.labels is None]
    if todo and labeller is None:
        logger.warning("%d unlabeled passages and no labeller: dropping them", len(todo))
    for p in passages:
        if p.labels is not None:
            out.append(p)
        elif labeller is not None:
            labels = silver_labels(p.question, p.sentences, labeller)
            if labels is None:
                dropped += 1
            else:
                out.append(Passage(p.question, p.title, p.sentences, tuple(labels), p.group, p.source))
    if dropped:
        logger.info("silver labelling dropped %d of %d passages (no citation)", dropped, len(todo))
    return out


def train(config: TrainConfig, labeller: ChatModel | None = None, progress: bool = True) -> Path:
    """Train (or resume) and write fp16 weights loadable by `ContextPruner(path)`; returns that folder.

    `labeller`: a ChatModel that silver-labels passages read without labels (`data.read_unlabeled_jsonl` layout).
    The steps run in a fixed order, since each draws from the seeded generators: passages, teacher, student,
    batches, then the optimisation (resumed from `out_dir/checkpoint.pt` when one of the same run is there).
    """
    if config.num_threads:
        torch.set_num_threads(config.num_threads)
    torch.manual_seed(config.seed)
    rng = random.Random(config.seed)
    out_dir = Path(config.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    passages = _training_passages(config, rng, labeller)
    targets = _targets(config, passages, out_dir)
    model, tokenizer = _student(config)
    examples = [
        encode_passage(tokenizer, model.cfg, p.question, p.title, p.sentences, p.labels or ()) for p in passages
    ]
    batches = [b for _ in range(config.epochs) for b in _batches(examples, config.batch_size, rng)]
    run = _Run(config, model, _optimiser(model, config, len(batches)), examples, batches, targets,
               out_dir / "checkpoint.pt", _run_key(config, passages))  # fmt: skip
    run.resume()
    run.train(progress)
    model.eval()
    _record_provenance(model, config, len(passages), run.step, distilled=targets.model is not None)
    return save_pretrained(model, Path(config.export_dir) if config.export_dir else out_dir / "weights")


def _training_passages(config: TrainConfig, rng: random.Random, labeller: ChatModel | None) -> list[Passage]:
    """The labelled passages of `config.data`, shuffled and cut to `max_passages`."""
    passages = read_training_passages(
        data_paths(config),
        rng,
        config.hotpot_distractors,
        config.squad_questions,
        squad_negative_rate=config.squad_negative_rate,
        squad_same_article_negatives=config.squad_same_article_negatives,
        squad_held_out_every=config.squad_held_out_every,
    )
    passages = _label_missing(passages, labeller)
    rng.shuffle(passages)
    if config.max_passages is not None:
        passages = passages[: config.max_passages]
    if not passages:
        raise ValueError("no training passages: check config.data")
    return passages


@dataclass(frozen=True)
class _Targets:
    """What the rerank head regresses onto: the teacher scores of every passage, or a trained pruner (distillation),
    which also gives the soft token targets."""

    scores: np.ndarray | None  # (N,)
    model: PrunerModel | None


def _targets(config: TrainConfig, passages: Sequence[Passage], out_dir: Path) -> _Targets:
    if config.teacher_weights:
        return _Targets(None, load_pretrained(config.teacher_weights)[0].eval())
    return _Targets(_teacher_scores(config, passages, out_dir / "teacher.npz"), None)


def _student(config: TrainConfig) -> tuple[PrunerModel, PreTrainedTokenizerBase]:
    """The model to train and its tokenizer: a new one on the base encoder, or `init_weights` (a new domain, a
    second stage, a student), cut to its first `num_layers` layers."""
    if not config.init_weights:
        mcfg = PrunerConfig(
            base_model=config.base_model,
            num_layers=config.num_layers,
            max_length=config.max_length,
            encoder_config=config.encoder_config,
        )
        return PrunerModel.from_base(mcfg), load_tokenizer(mcfg)
    model, tokenizer = load_pretrained(config.init_weights)
    model.cfg.max_length = config.max_length
    layers = model.cfg.num_layers or model.encoder.config.num_hidden_layers
    if config.num_layers is not None and config.num_layers < layers:
        model = first_layers(model, config.num_layers)
    return model, tokenizer


@dataclass(frozen=True)
class _Optimiser:
    params: list[nn.Parameter]  # the trainable ones (the frozen word embeddings are left out)
    optim: torch.optim.AdamW
    sched: torch.optim.lr_scheduler.LambdaLR


def _optimiser(model: PrunerModel, config: TrainConfig, total: int) -> _Optimiser:
    """AdamW with linear warm-up then linear decay over `total` steps; no weight decay on biases and LayerNorms."""
    params = [p for p in model.parameters() if p.requires_grad]
    decay = [p for p in params if p.ndim >= 2]
    no_decay = [p for p in params if p.ndim < 2]
    optim = torch.optim.AdamW(
        [{"params": decay, "weight_decay": config.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=config.lr,
    )
    warmup = max(1, int(config.warmup_ratio * total))
    sched = torch.optim.lr_scheduler.LambdaLR(
        optim, lambda s: min((s + 1) / warmup, max(0.0, (total - s) / max(1, total - warmup)))
    )
    return _Optimiser(params, optim, sched)


def _run_key(config: TrainConfig, passages: Sequence[Passage]) -> str:
    """What must match to resume: everything but the knobs that only say where to stop or write."""
    volatile = {"max_steps", "num_threads", "export_dir", "checkpoint_every"}
    key = {"config": {k: v for k, v in asdict(config).items() if k not in volatile}, "passages": _fingerprint(passages)}
    return json.dumps(key, sort_keys=True, default=str)


@dataclass
class _Run:
    """One training run: the model, its optimiser and data, and the step it has reached (checkpointed)."""

    config: TrainConfig
    model: PrunerModel
    opt: _Optimiser
    examples: list[EncodedPassage]
    batches: list[list[int]]
    targets: _Targets
    checkpoint: Path
    run_key: str
    step: int = 0

    def resume(self) -> None:
        """Continue from the checkpoint of this same run, if there is one; one of another run is refused."""
        if not self.checkpoint.exists():
            return
        ckpt = torch.load(self.checkpoint, weights_only=True)
        if ckpt["run_key"] != self.run_key:
            raise ValueError(
                f"{self.checkpoint} belongs to a different run (config or data changed): use another out_dir"
            )
        self.model.load_state_dict(ckpt["model"], strict=False)
        self.opt.optim.load_state_dict(ckpt["optim"])
        self.opt.sched.load_state_dict(ckpt["sched"])
        self.step = ckpt["step"]
        torch.set_rng_state(ckpt["torch_rng"])
        logger.info("resumed from %s at step %d/%d", self.checkpoint, self.step, len(self.batches))

    def save(self) -> None:
        frozen = self.model.frozen_keys()
        state = {
            "model": {k: v for k, v in self.model.state_dict().items() if k not in frozen},
            "optim": self.opt.optim.state_dict(),
            "sched": self.opt.sched.state_dict(),
            "step": self.step,
            "torch_rng": torch.get_rng_state(),
            "run_key": self.run_key,
        }
        tmp = self.checkpoint.with_suffix(".tmp")
        torch.save(state, tmp)
        tmp.replace(self.checkpoint)  # atomic: a kill mid-save never leaves a broken checkpoint

    def train(self, progress: bool) -> None:
        """Optimise from `step` to the end (or `max_steps`: the schedule still spans the full run)."""
        total = len(self.batches)
        stop = min(total, self.config.max_steps) if self.config.max_steps is not None else total
        self.model.train()
        bar = tqdm(total=stop, initial=self.step, desc="train pruner", disable=not progress, dynamic_ncols=True)
        while self.step < stop:
            token_loss, rerank_loss = self.losses(self.batches[self.step])
            loss = token_loss + self.config.rerank_weight * rerank_loss
            self.opt.optim.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(self.opt.params, self.config.max_grad_norm)
            self.opt.optim.step()
            self.opt.sched.step()
            self.step += 1
            bar.update(1)
            bar.set_postfix(tok=f"{token_loss.item():.3f}", rank=f"{rerank_loss.item():.3f}")
            if self.step % self.config.checkpoint_every == 0 or self.step == stop:
                self.save()
        bar.close()

    def losses(self, idx: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        """The token keep/drop loss and the rerank loss (squared error to the target score) of one batch."""
        examples = [self.examples[i] for i in idx]
        ids, mask, types = collate([e.ids for e in examples], [e.token_types for e in examples], 0)
        labels = torch.full((len(idx), ids.shape[1]), IGNORE, dtype=torch.long)  # (B, T)
        for row, e in enumerate(examples):
            labels[row, : len(e.labels)] = torch.from_numpy(e.labels)
        token_logits, rerank = self.model(ids, mask, types)  # (B, T, 2), (B,)
        teacher = self.targets.model
        if teacher is None:
            target = torch.tensor(self.targets.scores[idx], dtype=torch.float32)  # (B,)
            token_loss = nn.CrossEntropyLoss(ignore_index=IGNORE)(token_logits.reshape(-1, 2), labels.reshape(-1))
        else:
            with torch.no_grad():
                teacher_logits, target = teacher(ids, mask, types)
            token_loss = _soft_token_loss(token_logits, labels, teacher_logits, self.config.soft_label_weight)
        return token_loss, torch.mean((target - rerank) ** 2)


def _record_provenance(model: PrunerModel, config: TrainConfig, passages: int, steps: int, distilled: bool) -> None:
    """What the weights were trained on and how, in their config (`extra`), after that of the stage they started
    from."""
    earlier = dict(model.cfg.extra) if config.init_weights else None
    model.cfg.extra = {
        "train_files": [Path(p).name for p in config.data],
        "passages": passages,
        "steps": steps,
        "batch_size": config.batch_size,
        "lr": config.lr,
        "teacher": (
            f"distilled from {config.teacher_weights}: token target {config.soft_label_weight} * its keep "
            f"probability + {1 - config.soft_label_weight:.2f} * gold label; rerank target its score"
            if distilled
            else f"{config.label_weight} * gold label + {1 - config.label_weight:.2f} * bi-encoder cosine"
        ),
        "rerank_weight": config.rerank_weight,
    }
    if earlier is not None:
        model.cfg.extra["init_weights"] = {"path": config.init_weights, "extra": earlier}


@dataclass(frozen=True)
class TrainingRun:
    """What `train_validate_calibrate` produced."""

    weights: Path  # the trained, calibrated fp16 weights
    validation: dict[str, RankingValidation]  # rerank recall@1 on held-out articles, by SQuAD file; {}: none held out
    calibration: Calibration


def train_validate_calibrate(
    config: TrainConfig,
    calibration_file: str | Path = DEFAULT_CALIBRATION_FILE,
    *,
    target_compression: float = DEFAULT_TARGET_COMPRESSION,
    recipe: str | Path | None = None,
    labeller: ChatModel | None = None,
    progress: bool = True,
    status: Status = no_status,
) -> TrainingRun:
    """Provence's whole training: `train`, then ranking validation on the SQuAD articles `config` held out
    (`squad_held_out_every`), then the keep-logit bias fitted on the HotpotQA training file `calibration_file`
    (absolute, or under `config.data_root`) so that threshold 0.1 removes `target_compression` of the context.

    Every input is checked before the first step, arguments before data (`check_calibration_split`,
    `check_training_inputs`, `check_calibration_data`): an evaluation split among the training or calibration files
    raises `EvaluationSplitError`, a `LeakageError`. `recipe`: the file `config` was read from, recorded in the
    weights' provenance. `status` shows the validation and the calibration while they run.
    """
    calibration_data = calibration_path(calibration_file, config.data_root)
    check_calibration_split(calibration_data)
    check_training_inputs(config)
    check_calibration_data(calibration_data, config.data_root)
    weights = train(config, labeller, progress)
    if recipe is not None:
        update_config(weights, extra={"recipe": Path(recipe).as_posix()})
    validation: dict[str, RankingValidation] = {}
    if config.squad_held_out_every:
        with status("ranking validation on held-out SQuAD articles"):
            validation = validate_held_out_articles(weights, config)
    calibration = calibrate_weights(
        weights, calibration_data, data_root=config.data_root, target_compression=target_compression, status=status
    )
    return TrainingRun(weights, validation, calibration)


def _soft_token_loss(
    logits: torch.Tensor, labels: torch.Tensor, teacher_logits: torch.Tensor, soft_weight: float
) -> torch.Tensor:
    """Cross-entropy of the student's keep/drop against a soft target on the labelled (context) tokens:
    soft_weight * the teacher's keep probability + (1 - soft_weight) * the gold label."""
    used = labels != IGNORE  # (B, T)
    keep_target = soft_weight * teacher_logits.softmax(-1)[..., 1] + (1 - soft_weight) * labels.clamp(min=0).float()
    log_p = logits.log_softmax(-1)  # (B, T, 2)
    loss = -(keep_target * log_p[..., 1] + (1 - keep_target) * log_p[..., 0])
    return loss[used].mean()
