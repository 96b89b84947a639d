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
from prunekit.context_pruner.data import Passage, read_training_passages
from prunekit.context_pruner.encoding import IGNORE, collate
from prunekit.context_pruner.labels import EncodedPassage, encode_passage, silver_labels
from prunekit.context_pruner.model import (
    DEFAULT_BASE,
    PrunerConfig,
    PrunerModel,
    first_layers,
    load_pretrained,
    load_tokenizer,
    save_pretrained,
)
from prunekit.decoding.protocol import ChatModel
from torch import nn
from tqdm.auto import tqdm

__all__ = ["DEFAULT_TRAIN_FILES", "TrainConfig", "train"]

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
    """
    if config.num_threads:
        torch.set_num_threads(config.num_threads)
    torch.manual_seed(config.seed)
    rng = random.Random(config.seed)
    out_dir = Path(config.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    export_dir = Path(config.export_dir) if config.export_dir else out_dir / "weights"

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
    teacher = _teacher_scores(config, passages, out_dir / "teacher.npz") if not config.teacher_weights else None
    teacher_model = load_pretrained(config.teacher_weights)[0].eval() if config.teacher_weights else None

    mcfg = PrunerConfig(
        base_model=config.base_model,
        num_layers=config.num_layers,
        max_length=config.max_length,
        encoder_config=config.encoder_config,
    )
    if config.init_weights:  # continue from a trained pruner (a new domain, a second stage, a student)
        model, tokenizer = load_pretrained(config.init_weights)
        model.cfg.max_length = config.max_length
        layers = model.cfg.num_layers or model.encoder.config.num_hidden_layers
        if config.num_layers is not None and config.num_layers < layers:
            model = first_layers(model, config.num_layers)
        mcfg = model.cfg
    else:
        model = PrunerModel.from_base(mcfg)
        tokenizer = load_tokenizer(mcfg)
    examples = [encode_passage(tokenizer, mcfg, p.question, p.title, p.sentences, p.labels or ()) for p in passages]
    batches = [b for _ in range(config.epochs) for b in _batches(examples, config.batch_size, rng)]
    total = len(batches)

    params = [p for p in model.parameters() if p.requires_grad]
    decay = [p for p in params if p.ndim >= 2]  # no weight decay on biases and LayerNorms
    no_decay = [p for p in params if p.ndim < 2]
    optim = torch.optim.AdamW(
        [{"params": decay, "weight_decay": config.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=config.lr,
    )
    warmup = max(1, int(config.warmup_ratio * total))
    sched = torch.optim.lr_scheduler.LambdaLR(
        optim, lambda s: min((s + 1) / warmup, max(0.0, (total - s) / max(1, total - warmup)))
    )

    ckpt_path = out_dir / "checkpoint.pt"
    step = 0
    # what must match to resume: everything but the knobs that only say where to stop or write
    volatile = {"max_steps", "num_threads", "export_dir", "checkpoint_every"}
    run_key = {
        "config": {k: v for k, v in asdict(config).items() if k not in volatile},
        "passages": _fingerprint(passages),
    }
    if ckpt_path.exists():
        ckpt = torch.load(ckpt_path, weights_only=True)
        if ckpt["run_key"] != json.dumps(run_key, sort_keys=True, default=str):
            raise ValueError(f"{ckpt_path} belongs to a different run (config or data changed): use another out_dir")
        model.load_state_dict(ckpt["model"], strict=False)
        optim.load_state_dict(ckpt["optim"])
        sched.load_state_dict(ckpt["sched"])
        step = ckpt["step"]
        torch.set_rng_state(ckpt["torch_rng"])
        logger.info("resumed from %s at step %d/%d", ckpt_path, step, total)

    def save_checkpoint() -> None:
        frozen = model.frozen_keys()
        state = {
            "model": {k: v for k, v in model.state_dict().items() if k not in frozen},
            "optim": optim.state_dict(),
            "sched": sched.state_dict(),
            "step": step,
            "torch_rng": torch.get_rng_state(),
            "run_key": json.dumps(run_key, sort_keys=True, default=str),
        }
        tmp = ckpt_path.with_suffix(".tmp")
        torch.save(state, tmp)
        tmp.replace(ckpt_path)  # atomic: a kill mid-save never leaves a broken checkpoint

    stop = min(total, config.max_steps) if config.max_steps is not None else total
    ce = nn.CrossEntropyLoss(ignore_index=IGNORE)
    model.train()
    bar = tqdm(total=stop, initial=step, desc="train pruner", disable=not progress, dynamic_ncols=True)
    while step < stop:
        idx = batches[step]
        ids, mask, types = collate([examples[i].ids for i in idx], [examples[i].token_types for i in idx], 0)
        width = ids.shape[1]
        labels = torch.full((len(idx), width), IGNORE, dtype=torch.long)  # (B, T)
        for row, i in enumerate(idx):
            labels[row, : len(examples[i].labels)] = torch.from_numpy(examples[i].labels)
        token_logits, rerank = model(ids, mask, types)  # (B, T, 2), (B,)
        if teacher_model is None:
            target = torch.tensor(teacher[idx], dtype=torch.float32)  # (B,)
            token_loss = ce(token_logits.reshape(-1, 2), labels.reshape(-1))
        else:
            with torch.no_grad():
                teacher_logits, target = teacher_model(ids, mask, types)
            token_loss = _soft_token_loss(token_logits, labels, teacher_logits, config.soft_label_weight)
        rerank_loss = torch.mean((target - rerank) ** 2)
        loss = token_loss + config.rerank_weight * rerank_loss
        optim.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, config.max_grad_norm)
        optim.step()
        sched.step()
        step += 1
        bar.update(1)
        bar.set_postfix(tok=f"{token_loss.item():.3f}", rank=f"{rerank_loss.item():.3f}")
        if step % config.checkpoint_every == 0 or step == stop:
            save_checkpoint()
    bar.close()

    model.eval()
    earlier = dict(model.cfg.extra) if config.init_weights else None  # the provenance of the stage we started from
    model.cfg.extra = {
        "train_files": [Path(p).name for p in config.data],
        "passages": len(passages),
        "steps": step,
        "batch_size": config.batch_size,
        "lr": config.lr,
        "teacher": (
            f"{config.label_weight} * gold label + {1 - config.label_weight:.2f} * bi-encoder cosine"
            if teacher_model is None
            else f"distilled from {config.teacher_weights}: token target {config.soft_label_weight} * its keep "
            f"probability + {1 - config.soft_label_weight:.2f} * gold label; rerank target its score"
        ),
        "rerank_weight": config.rerank_weight,
    }
    if earlier is not None:
        model.cfg.extra["init_weights"] = {"path": config.init_weights, "extra": earlier}
    return save_pretrained(model, export_dir)


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
