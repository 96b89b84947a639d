"""Stage II of AGP: train the pruner on stage-I records (AGP's released ones and ours).

AGP (arXiv 2506.02951) supervises the joint model with
- an edge loss: edges between kept agents regress to the record's edges, all other pairs are pushed to 0;
- a node loss: BCE of the keep probability against the record's mask (plus small sparsity terms).
Its code optimises only the GCN (the edge MLP never reaches the optimiser) and has no token-cost term. Here:
- edge loss: BCE with logits over all off-diagonal pairs, target 1 where both agents are kept and the record has the
  edge (`StageRecord.edge_target`), 0 elsewhere (which pushes pairs with a pruned endpoint to 0);
- node loss: BCE with logits on the keep target;
- token cost: `cost_coef * (E[kept agents] / N + edge_cost * E[edges] / (N (N - 1)))`, where the expectation uses the
  straight-through hard keep decision, so the threshold the model is run with is the one it pays for;
- AdamW over every parameter of the model (both heads included; `make_optimizer`), mini-batches, a progress bar, and a
  checkpoint after each epoch to resume from.

Task embeddings are computed once and cached on disk (`EmbeddingCache`). Held-out metrics split records by task
(duplicates stay together): `cross_validate` (k-fold, `train_domain`'s default: every record held out once) or one
hold-out (`train_pruner`); `evaluate_pruner` reports held-out keep and edge accuracy next to the always-keep-all and
majority baselines, with the team decided as `GraphPruner.choose` decides it (never empty).
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import random
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from prunekit.graph_pruning.data import agp_stage1_file, normalize_task
from prunekit.graph_pruning.embed import EmbeddingCache, EmbedFn, embed_texts
from prunekit.graph_pruning.errors import InvalidRecordError
from prunekit.graph_pruning.model import WEIGHTS_DIR, GraphPruner, PrunerOutput, keep_decision, straight_through
from prunekit.graph_pruning.pools import AgentPool, get_pool
from prunekit.graph_pruning.records import StageRecord, load_records

__all__ = [
    "Decisions",
    "TrainConfig",
    "TrainResult",
    "cross_validate",
    "evaluate_pruner",
    "heldout_decisions",
    "init_priors",
    "kfold_records",
    "make_optimizer",
    "pruner_loss",
    "score_decisions",
    "split_records",
    "train_domain",
    "train_pruner",
]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainConfig:
    # the epoch is chosen per run on a validation split (see `train_pruner`); `epochs` is only the ceiling
    epochs: int = 60
    batch_size: int = 16
    lr: float = 3e-3
    weight_decay: float = 1e-2
    edge_loss: float = 1.0
    node_loss: float = 1.0
    cost_coef: float = 0.05  # token-cost pressure; raise it to prune harder
    edge_cost: float = 0.5  # an edge's cost relative to an agent's (an edge lengthens one prompt)
    holdout: float = 0.2  # tasks held out for the reported metrics (`train_pruner`; `train_domain` when folds < 2)
    folds: int = 5  # `train_domain`: k-fold by task for the reported metrics, then one model on every record
    val_fraction: float = 0.15  # tasks of the training part that choose the epoch
    patience: int = 10
    seed: int = 0


@dataclass
class TrainResult:
    model: GraphPruner
    metrics: dict[str, float]
    history: list[dict[str, float]] = field(default_factory=list)
    n_train: int = 0
    n_heldout: int = 0
    best_epoch: int = -1  # -1: the untrained start (priors only) had the lowest validation loss


def split_records(
    records: Sequence[StageRecord], holdout: float, seed: int = 0
) -> tuple[list[StageRecord], list[StageRecord]]:
    """Split by task (records of one task stay on one side) into (train, held-out)."""
    tasks = sorted({normalize_task(r.task) for r in records})
    random.Random(seed).shuffle(tasks)
    n_out = round(holdout * len(tasks))
    out = set(tasks[:n_out])
    return [r for r in records if normalize_task(r.task) not in out], [
        r for r in records if normalize_task(r.task) in out
    ]


def _targets(records: Sequence[StageRecord]) -> tuple[torch.Tensor, torch.Tensor]:
    keep = torch.tensor([r.keep_target() for r in records], dtype=torch.float32)  # (R, N)
    edge = torch.tensor([r.edge_target() for r in records], dtype=torch.float32)  # (R, N, N)
    return keep, edge


def init_priors(model: GraphPruner, keep_t: torch.Tensor, edge_t: torch.Tensor, eps: float = 0.02) -> None:
    """Start the per-agent and per-pair priors at the training targets' log-odds.

    Adam moves a bias by about `lr` per step, so a few hundred steps cannot carry a prior from 0 to the +-3 logits
    the records need; starting there lets training spend its steps on the task-dependent part.
    """
    with torch.no_grad():
        model.keep_prior.copy_(torch.logit(keep_t.mean(0).clamp(eps, 1 - eps)))  # (N,)
        model.edge_prior.copy_(torch.logit(edge_t.mean(0).clamp(eps, 1 - eps)))  # (N, N)


def make_optimizer(model: GraphPruner, config: TrainConfig) -> torch.optim.Optimizer:
    """AdamW over every parameter; decoupled weight decay only on weight matrices (decaying biases and priors would
    pull them away from the log-odds they start at). Decoupled matters: Adam's coupled L2 is rescaled by the
    adaptive step, and at 1e-2 it shrank every weight to zero within a few hundred steps (measured), leaving only
    the priors."""
    decay = [p for name, p in model.named_parameters() if p.dim() >= 2 and not name.endswith("_prior")]
    no_decay = [p for name, p in model.named_parameters() if not (p.dim() >= 2 and not name.endswith("_prior"))]
    groups = [{"params": decay, "weight_decay": config.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=config.lr)


def pruner_loss(
    out: PrunerOutput, keep_t: torch.Tensor, edge_t: torch.Tensor, config: TrainConfig, keep_threshold: float
) -> tuple[torch.Tensor, dict[str, float]]:
    """Edge BCE + node BCE + token cost. keep_t (B, N), edge_t (B, N, N)."""
    n = keep_t.shape[1]
    off = ~torch.eye(n, dtype=torch.bool)  # (N, N): self edges are not edges
    l_node = F.binary_cross_entropy_with_logits(out.keep_logits, keep_t)
    l_edge = F.binary_cross_entropy_with_logits(out.edge_logits[:, off], edge_t[:, off])
    keep_st = straight_through(out.keep_prob, keep_threshold)  # (B, N) hard forward, soft backward
    pair = keep_st[:, :, None] * keep_st[:, None, :] * out.edge_prob  # (B, N, N) expected edges among kept
    cost = keep_st.mean(1) + config.edge_cost * pair[:, off].mean(1)  # (B,)
    l_cost = config.cost_coef * cost.mean()
    loss = config.node_loss * l_node + config.edge_loss * l_edge + l_cost
    return loss, {"loss": loss.item(), "node": l_node.item(), "edge": l_edge.item(), "cost": l_cost.item()}


def _accuracy(pred: np.ndarray, target: np.ndarray) -> float:
    return float((pred == target).mean()) if target.size else float("nan")


@dataclass
class Decisions:
    """What a predictor decides on held-out records; the scoring is the same for the model and the baselines."""

    keep: np.ndarray  # (R, N) bool: the team
    edge: np.ndarray  # (R, N, N) bool: the realised edges
    edge_head: np.ndarray  # (R, N, N) bool: the edge call on every pair, whoever the team is

    @staticmethod
    def concat(parts: Sequence[Decisions]) -> Decisions:
        return Decisions(*(np.concatenate([getattr(p, f) for p in parts]) for f in ("keep", "edge", "edge_head")))


def heldout_decisions(
    model: GraphPruner,
    task_emb: np.ndarray,
    records: Sequence[StageRecord],
    train_records: Sequence[StageRecord] = (),
) -> dict[str, Decisions]:
    """The model's decisions on `records` ("" key) and the baselines': `keep_all` (every agent, every edge), and
    with `train_records`, `majority` (the training part's majority class for every agent and every pair; on a weak
    model's records that is the empty team) and `position_majority` (per agent and per pair; the team never empty,
    as the pruner's: the fixed team a pruner that ignores the task would run)."""
    cfg = model.config
    r, n = len(records), cfg.n_agents
    keep_p, edge_p = model.predict(task_emb)  # (R, N), (R, N, N)
    keep = keep_decision(keep_p, cfg.keep_threshold)  # what `choose` runs: never an empty team
    head = edge_p > cfg.edge_threshold
    out = {
        "": Decisions(keep, keep[:, :, None] & keep[:, None, :] & head, head),
        "keep_all": Decisions(np.ones((r, n), bool), np.ones((r, n, n), bool), np.ones((r, n, n), bool)),
    }
    if train_records:
        tk, te = (t.numpy() for t in _targets(train_records))  # (T, N), (T, N, N)
        off = ~np.eye(n, dtype=bool)
        both = tk[:, :, None] * tk[:, None, :] * off  # (T, N, N): pairs whose agents the record kept
        maj_keep, maj_edge = tk.mean() >= 0.5, te[:, off].mean() >= 0.5
        maj_head = (te * both).sum() >= 0.5 * both.sum()
        pos_keep = keep_decision(tk.mean(0), 0.5)  # (N,)
        pos_edge = (te.mean(0) >= 0.5) & pos_keep[:, None] & pos_keep[None, :]  # (N, N)
        pos_head = (te * both).sum(0) >= 0.5 * both.sum(0)  # (N, N): among train records that kept both agents
        out["majority"] = Decisions(
            np.full((r, n), maj_keep), np.full((r, n, n), maj_edge), np.full((r, n, n), maj_head)
        )
        out["position_majority"] = Decisions(
            np.broadcast_to(pos_keep, (r, n)),
            np.broadcast_to(pos_edge, (r, n, n)),
            np.broadcast_to(pos_head, (r, n, n)),
        )
    return out


def score_decisions(decisions: dict[str, Decisions], records: Sequence[StageRecord]) -> dict[str, float]:
    """Accuracies of each predictor's decisions against the records (the model's keys bare, a baseline's prefixed).

    - `keep_acc`: per-agent keep/prune decisions; `keep_exact`: whole teams right;
    - `edge_acc`: per ordered pair (i != j), the realised edge (both kept and the edge called) against `edge_target`;
    - `edge_head_acc`: the edge call alone, on the pairs whose agents the record kept;
    - `mean_kept_pred` / `mean_kept_true`: team sizes.
    """
    keep_t, edge_t = (t.numpy().astype(bool) for t in _targets(records))
    n = keep_t.shape[1]
    off = ~np.eye(n, dtype=bool)
    kept_pairs = keep_t[:, :, None] & keep_t[:, None, :] & off[None]  # (R, N, N)
    m: dict[str, float] = {}
    for name, d in decisions.items():
        prefix = f"{name}." if name else ""
        m |= {
            f"{prefix}keep_acc": _accuracy(d.keep, keep_t),
            f"{prefix}keep_exact": float((d.keep == keep_t).all(1).mean()),
            f"{prefix}edge_acc": _accuracy(d.edge[:, off], edge_t[:, off]),
            f"{prefix}edge_head_acc": _accuracy(d.edge_head[kept_pairs], edge_t[kept_pairs]),
        }
        if not name:
            m |= {"mean_kept_pred": float(d.keep.sum(1).mean()), "mean_kept_true": float(keep_t.sum(1).mean())}
    return m


def evaluate_pruner(
    model: GraphPruner,
    task_emb: np.ndarray,
    records: Sequence[StageRecord],
    train_records: Sequence[StageRecord] = (),
) -> dict[str, float]:
    """Held-out accuracy of the keep head and the edge head, with the keep-all and majority baselines
    (`heldout_decisions`, `score_decisions`). The model's team follows `choose`: never empty."""
    return score_decisions(heldout_decisions(model, task_emb, records, train_records), records)


def kfold_records(
    records: Sequence[StageRecord], folds: int, seed: int = 0
) -> list[tuple[list[StageRecord], list[StageRecord]]]:
    """`folds` (train, held-out) pairs split by task: every task is held out exactly once, its duplicates with it."""
    tasks = sorted({normalize_task(r.task) for r in records})
    if not 2 <= folds <= len(tasks):
        raise InvalidRecordError(f"{folds} folds need between 2 and {len(tasks)} (the number of distinct tasks)")
    random.Random(seed).shuffle(tasks)
    part = {t: i % folds for i, t in enumerate(tasks)}
    return [
        (
            [r for r in records if part[normalize_task(r.task)] != k],
            [r for r in records if part[normalize_task(r.task)] == k],
        )
        for k in range(folds)
    ]


def cross_validate(
    records: Sequence[StageRecord],
    pool: AgentPool,
    *,
    config: TrainConfig | None = None,
    embed: EmbedFn = embed_texts,
    extra_train: Sequence[StageRecord] = (),
    checkpoint_dir: str | Path | None = None,
    resume: bool = True,
    progress: bool = True,
) -> dict[str, float]:
    """k-fold by task (`config.folds`): train on k - 1 parts (plus `extra_train`, which joins every training part
    and is never held out), decide on the held-out part; the metrics pool every record's held-out decision.

    With a few dozen records one 20 % hold-out is a handful of tasks and its accuracy swings by tens of points
    between seeds; k-fold scores every record once. The baselines are fitted on the training part of `records`
    only, so `extra_train` (another model's records) can only help the pruner, never the baselines. Each fold's
    model picks its epoch on its own validation split, as `train_pruner` does.
    """
    config = config or TrainConfig()
    fold_config = replace(config, holdout=0.0)
    decisions: dict[str, list[Decisions]] = {}
    held_all: list[StageRecord] = []
    epochs: list[int] = []
    for k, (train, held) in enumerate(kfold_records(records, config.folds, config.seed)):
        ckpt = Path(checkpoint_dir) / f"fold{k}.pt" if checkpoint_dir is not None else None
        result = train_pruner(
            [*train, *extra_train],
            pool,
            config=fold_config,
            embed=embed,
            checkpoint=ckpt,
            resume=resume,
            progress=progress,
        )
        for name, d in heldout_decisions(result.model, np.asarray(embed([r.task for r in held])), held, train).items():
            decisions.setdefault(name, []).append(d)
        held_all += held
        epochs.append(result.best_epoch)
    metrics = score_decisions({name: Decisions.concat(parts) for name, parts in decisions.items()}, held_all)
    return {"folds": float(config.folds), "fold_best_epoch_mean": float(np.mean(epochs))} | metrics


def train_pruner(
    records: Sequence[StageRecord],
    pool: AgentPool,
    *,
    config: TrainConfig | None = None,
    embed: EmbedFn = embed_texts,
    checkpoint: str | Path | None = None,
    resume: bool = True,
    progress: bool = True,
    model: GraphPruner | None = None,
) -> TrainResult:
    """Train a pruner for `pool` on records; report held-out metrics when `config.holdout > 0`.

    The training part is split again: `config.val_fraction` of its tasks pick the epoch (lowest validation loss,
    the untrained start included, early stop after `patience` epochs without improvement); the held-out part is only
    used for the reported metrics. A fresh model (`model=None`) starts its priors at the training targets' log-odds
    (`init_priors`). `embed` maps texts to (n, 384) vectors (wrap it in `EmbeddingCache` to embed each task once
    across runs). With `checkpoint`, the state is saved after every epoch and a rerun resumes from it.
    """
    config = config or TrainConfig()
    _check_records(records, pool)
    torch.manual_seed(config.seed)  # before the model exists: its initial weights come from this seed
    train, held = split_records(records, config.holdout, config.seed) if config.holdout > 0 else (list(records), [])
    fit, val = split_records(train, config.val_fraction, config.seed + 1) if config.val_fraction > 0 else (train, [])
    if not fit:
        fit, val = train, []
    fresh = model is None
    model = model or GraphPruner.from_pool(pool, embed=embed)
    data = _FitData.from_records(fit, val, embed)
    if fresh:
        init_priors(model, data.keep_t, data.edge_t)
    ckpt = Path(checkpoint) if checkpoint is not None else None
    run = _EpochRun(model, make_optimizer(model, config), data, config, ckpt)
    best = run.fit(desc=f"stage II ({pool.domain})", resume=resume, progress=progress)
    model.load_state_dict(best["state"])
    model.eval()
    metrics: dict[str, float] = {"best_epoch": float(best["epoch"])}
    if held:
        metrics |= evaluate_pruner(model, np.asarray(embed([r.task for r in held])), held, train)
        logger.info("held-out metrics (%d records): %s", len(held), metrics)
    return TrainResult(model, metrics, run.history, len(train), len(held), int(best["epoch"]))


def _check_records(records: Sequence[StageRecord], pool: AgentPool) -> None:
    bad = [i for i, r in enumerate(records) if r.n_agents != pool.size]
    if bad:
        raise InvalidRecordError(
            f"records {bad[:5]} have the wrong number of agents for the {pool.domain} pool ({pool.size})"
        )
    if not records:
        raise InvalidRecordError("no records to train on")


@dataclass
class _FitData:
    """What one training run reads: the fit part's task embeddings and targets, and the validation part's."""

    x_fit: torch.Tensor  # (R, E)
    keep_t: torch.Tensor  # (R, N)
    edge_t: torch.Tensor  # (R, N, N)
    x_val: torch.Tensor | None  # (V, E); None without a validation part
    val_t: tuple[torch.Tensor, torch.Tensor] | None  # (V, N), (V, N, N)

    @classmethod
    def from_records(cls, fit: Sequence[StageRecord], val: Sequence[StageRecord], embed: EmbedFn) -> _FitData:
        x_fit = torch.as_tensor(np.asarray(embed([r.task for r in fit])), dtype=torch.float32)
        keep_t, edge_t = _targets(fit)
        x_val = torch.as_tensor(np.asarray(embed([r.task for r in val])), dtype=torch.float32) if val else None
        return cls(x_fit, keep_t, edge_t, x_val, _targets(val) if val else None)

    @property
    def n_fit(self) -> int:
        return len(self.keep_t)

    @property
    def validates(self) -> bool:
        return self.x_val is not None


class _EpochRun:
    """The epochs of one training run: shuffle, mini-batch steps, validation loss, the best state so far, and a
    checkpoint after each epoch. `best` is `{"loss", "epoch", "state"}` (the checkpoint's layout)."""

    def __init__(
        self,
        model: GraphPruner,
        optimizer: torch.optim.Optimizer,
        data: _FitData,
        config: TrainConfig,
        checkpoint: Path | None,
    ) -> None:
        self.model, self.optimizer, self.data, self.config, self.checkpoint = model, optimizer, data, config, checkpoint
        self.threshold = model.config.keep_threshold
        self.history: list[dict[str, float]] = []

    def validation_loss(self) -> float:
        data = self.data
        if data.x_val is None or data.val_t is None:
            return float("nan")
        self.model.eval()
        with torch.no_grad():
            return pruner_loss(self.model(data.x_val), *data.val_t, self.config, self.threshold)[1]["loss"]

    def fit(self, *, desc: str, resume: bool, progress: bool) -> dict[str, Any]:
        """Train up to `config.epochs` (resuming from the checkpoint when asked); the best state and its epoch."""
        config, data = self.config, self.data
        best = {"loss": self.validation_loss(), "epoch": -1, "state": copy.deepcopy(self.model.state_dict())}
        start_epoch = 0
        if self.checkpoint is not None and resume and self.checkpoint.exists():
            start_epoch, best = self._resume()
        gen = torch.Generator().manual_seed(config.seed)
        for _ in range(start_epoch):  # replay the shuffles so a resumed run matches an uninterrupted one
            torch.randperm(data.n_fit, generator=gen)
        bar = tqdm(range(start_epoch, config.epochs), desc=desc, disable=not progress)
        for epoch in bar:
            if data.validates and epoch - best["epoch"] > config.patience:
                break  # resumed past an early stop
            totals = self._train_epoch(gen)
            totals["val_loss"] = self.validation_loss()
            self.history.append({"epoch": epoch, **totals})
            if not data.validates or totals["val_loss"] < best["loss"]:
                best = {"loss": totals["val_loss"], "epoch": epoch, "state": copy.deepcopy(self.model.state_dict())}
            bar.set_postfix(loss=f"{totals['loss']:.3f}", val=f"{totals['val_loss']:.3f}", best=best["epoch"])
            self._save(epoch, best)
            if data.validates and epoch - best["epoch"] >= config.patience:
                logger.info("early stop at epoch %d; best validation loss at epoch %d", epoch, best["epoch"])
                break
        return best

    def _train_epoch(self, gen: torch.Generator) -> dict[str, float]:
        """One pass over the fit part in shuffled mini-batches; the loss parts, averaged over the records."""
        model, data, config = self.model, self.data, self.config
        model.train()
        order = torch.randperm(data.n_fit, generator=gen)
        totals: dict[str, float] = {}
        for i in range(0, data.n_fit, config.batch_size):
            idx = order[i : i + config.batch_size]
            loss, parts = pruner_loss(
                model(data.x_fit[idx]), data.keep_t[idx], data.edge_t[idx], config, self.threshold
            )
            self.optimizer.zero_grad()
            loss.backward()
            self.optimizer.step()
            for k, v in parts.items():
                totals[k] = totals.get(k, 0.0) + v * len(idx) / data.n_fit
        return totals

    def _resume(self) -> tuple[int, dict[str, Any]]:
        state = torch.load(self.checkpoint, weights_only=False)
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.history = state["history"]
        logger.info("resumed from %s at epoch %d", self.checkpoint, state["epoch"] + 1)
        return state["epoch"] + 1, state["best"]

    def _save(self, epoch: int, best: dict[str, Any]) -> None:
        if self.checkpoint is None:
            return
        self.checkpoint.parent.mkdir(parents=True, exist_ok=True)
        state = {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "epoch": epoch,
            "history": self.history,
            "best": best,
            "config": asdict(self.config),
        }
        torch.save(state, self.checkpoint)


def train_domain(
    domain: str,
    *,
    data_dir: str | Path | None = None,
    extra_records: Sequence[str | Path] = (),
    include_agp: bool = True,
    out_dir: str | Path | None = None,
    config: TrainConfig | None = None,
    cache_dir: str | Path | None = None,
    progress: bool = True,
    resume: bool = True,
    note: str = "",
    embed: EmbedFn = embed_texts,
) -> TrainResult:
    """Train the pruner of a domain on AGP's released records and/or `extra_records` (ours) and save it under
    `out_dir` (default: the shipped `graph_pruning/weights/<domain>/`).

    With `config.folds >= 2` (the default) the reported metrics come from `cross_validate`; the held-out folds are
    drawn from the records of the model the pruner is for: `extra_records` when given (AGP's, when included, join
    every training part), else AGP's. The saved model is then trained once on every record, its epoch picked on a
    validation split as in `train_pruner`. With `folds < 2`, one `config.holdout` split by task. `note` (why these
    records) is stored with the provenance in the weights' `config.json` (`extra`). Task embeddings (`embed`, MiniLM
    by default) are cached under `cache_dir`, with the per-run checkpoints a rerun resumes from.
    """
    pool = get_pool(domain)
    config = config or TrainConfig()
    agp_paths = [agp_stage1_file(domain, data_dir)] if include_agp else []
    our_paths = [Path(p) for p in extra_records]
    paths = agp_paths + our_paths
    if not paths:
        raise InvalidRecordError("no stage-I records to train on: pass record files or include AGP's")
    for p in paths:
        if not p.exists():
            raise InvalidRecordError(f"{p} is missing: pass an existing stage-I record file")
    agp = [r for p in agp_paths for r in load_records(p, pool.size)]
    ours = [r for p in our_paths for r in load_records(p, pool.size)]
    records = agp + ours
    if cache_dir is None:
        import platformdirs

        cache_dir = Path(platformdirs.user_cache_dir("prunekit")) / "graph_pruning"
    cache = EmbeddingCache(Path(cache_dir) / "minilm_embeddings.npz", embed=embed)
    out = Path(out_dir) if out_dir is not None else WEIGHTS_DIR / domain
    # the checkpoint name carries the run's identity, so a resume never continues a different run
    run_id = hashlib.sha1(json.dumps([asdict(config), [str(p) for p in paths]]).encode()).hexdigest()[:10]
    checkpoint = Path(cache_dir) / f"stage2_{domain}_{run_id}.pt"
    if config.folds >= 2:
        result, protocol = _cross_validated(
            agp, ours, agp_paths, our_paths, pool, config, cache, checkpoint, resume=resume, progress=progress
        )
    else:
        result = train_pruner(
            records, pool, config=config, embed=cache, checkpoint=checkpoint, resume=resume, progress=progress
        )
        protocol = f"one {config.holdout:.0%} hold-out by task; the saved model trained on the rest"
    result.model.config.extra = {
        "trained_on": [p.name for p in paths],
        "records": {"train": result.n_train, "heldout": result.n_heldout},
        "heldout_protocol": protocol,
        "train_config": asdict(config),
        # NaN (e.g. no kept pairs to score the edge head on) is written as null: config.json stays standard JSON
        "heldout_metrics": {k: (round(v, 4) if v == v else None) for k, v in result.metrics.items()},
    } | ({"note": note} if note else {})
    result.model.save(out)
    logger.info("saved the %s pruner to %s", domain, out)
    return result


def _cross_validated(
    agp: list[Any],
    ours: list[Any],
    agp_paths: list[Path],
    our_paths: list[Path],
    pool: Any,
    config: TrainConfig,
    cache: EmbeddingCache,
    checkpoint: Path,
    *,
    resume: bool,
    progress: bool,
) -> tuple[TrainResult, str]:
    """k-fold metrics over the target records (ours when given, else AGP's; the others join every training part),
    then the saved model trained once on all records. Returns the result and the protocol, in words."""
    target, target_paths = (ours, our_paths) if ours else (agp, agp_paths)
    extra, extra_paths = (agp, agp_paths) if ours else ([], [])
    metrics = cross_validate(
        target,
        pool,
        config=config,
        embed=cache,
        extra_train=extra,
        checkpoint_dir=checkpoint.with_name(checkpoint.stem + "_folds"),
        resume=resume,
        progress=progress,
    )
    final = train_pruner(
        agp + ours,
        pool,
        config=replace(config, holdout=0.0),
        embed=cache,
        checkpoint=checkpoint,
        resume=resume,
        progress=progress,
    )
    result = TrainResult(
        final.model,
        metrics | {"best_epoch": float(final.best_epoch)},
        final.history,
        len(agp) + len(ours),
        len(target),
        final.best_epoch,
    )
    protocol = (
        f"{config.folds}-fold by task over {', '.join(p.name for p in target_paths)} (each record held out once)"
        + (f"; {', '.join(p.name for p in extra_paths)} in every training part" if extra_paths else "")
        + "; the saved model trained on all records"
    )
    return result, protocol


def _main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    import argparse

    parser = argparse.ArgumentParser(description="Stage II: train the AGP pruner of a domain on stage-I records")
    parser.add_argument("--domain", required=True, choices=["math", "general", "code"])
    parser.add_argument("--records", nargs="*", default=[], help="extra stage-I record files (ours)")
    parser.add_argument("--no-agp", action="store_true", help="do not use AGP's released records")
    parser.add_argument("--out", default=None)
    parser.add_argument("--epochs", type=int, default=TrainConfig.epochs)
    parser.add_argument("--folds", type=int, default=TrainConfig.folds, help="k-fold by task; < 2: one hold-out")
    parser.add_argument("--note", default="", help="why these records (stored with the weights)")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)  # a model this small only loses to thread overhead, and the machine is shared
    result = train_domain(
        args.domain,
        extra_records=args.records,
        include_agp=not args.no_agp,
        out_dir=args.out,
        config=TrainConfig(epochs=args.epochs, folds=args.folds),
        note=args.note,
    )
    print(json.dumps(result.metrics, indent=2))
    return result.metrics


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    _main()
