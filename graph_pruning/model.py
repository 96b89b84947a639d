"""The AGP pruner: a GCN over the agent pool that decides which agents run and who talks to whom.

AGP (Adaptive Graph Pruning for Multi-Agent Communication, arXiv 2506.02951) jointly learns
- hard pruning: how many / which agents to keep (a per-agent keep probability, thresholded, straight-through);
- soft pruning: which communication edges to keep among them (edge probabilities from node embeddings).

Read top to bottom:
    node features  x_i = [MiniLM(task) ; MiniLM(role_i)]                  (B, N, 768)
    GCN layer 1    h = relu(Â x W1 + x R1)                                (B, N, H)
    GCN layer 2    z = Â h W2 + h R2                                      (B, N, H)
    keep head      keep_logit_i = MLP(z_i) + p_i                          (B, N)
    edge head      edge_logit_ij = <z_i Ws, z_j Wt> / sqrt(D) + P_ij      (B, N, N), row = source
with Â the symmetric-normalised role-connection graph plus self loops, R1, R2 root (self) weights, and p (N,),
P (N, N) learned per-agent and
per-pair priors: with a few hundred records most of the signal is "which role, which pair" and the task-dependent
part only has to learn the deviation from it (it overfits otherwise; see `train.py` for the measured effect).
The root weights matter: AGP's math role graph is complete, and on a complete graph with self loops Â = J / N, so a
plain GCN gives every agent the same embedding (measured: identical keep logits for all agents) and could never
keep one agent and prune another by task. Unlike AGP's Z Z^T (symmetric, so an edge
and its reverse always get the same probability) the source and target projections differ, so direction is
learned. Unlike AGP's code, every parameter (both heads included) is trained; `parameters()` is all there is.

Inference (`choose`): deterministic (agents with keep prob > threshold, edges among them with prob > threshold,
cycles broken by dropping the weakest edges, at least one agent kept) or sampling (Bernoulli draws).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import random
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import nn

from prunekit.graph_pruning.embed import EMBED_DIM, EmbedFn, embed_texts
from prunekit.graph_pruning.errors import InvalidRequestError, UnknownDomainError
from prunekit.graph_pruning.pools import AgentPool, get_pool
from prunekit.graph_pruning.saved import CONFIG_FILE, TENSORS_FILE, WEIGHTS_DIR
from prunekit.graph_pruning.task import AgentTask
from prunekit.graph_pruning.topology import Topology

__all__ = [
    "WEIGHTS_DIR",
    "GraphPruner",
    "PrunerConfig",
    "PrunerOutput",
    "keep_decision",
    "normalized_adjacency",
    "role_fingerprint",
]

logger = logging.getLogger(__name__)


@dataclass
class PrunerConfig:
    domain: str
    role_names: list[str]
    embed_dim: int = EMBED_DIM  # MiniLM
    hidden_dim: int = 64  # GCN width (AGP: 16)
    edge_dim: int = 32  # edge projection width
    head_dim: int = 64  # keep-head MLP width (AGP: 64)
    dropout: float = 0.1
    task_dropout: float = 0.5  # dropout on the task embedding: a few hundred tasks are easy to memorise
    keep_threshold: float = 0.5
    edge_threshold: float = 0.5
    rounds: int = 1
    temporal: bool = False  # with rounds > 1: every kept agent reads every kept agent's previous-round message
    role_fingerprint: str = ""  # hash of the role texts the stored role embeddings came from
    extra: dict = field(default_factory=dict)  # free-form provenance (training data, metrics)

    @property
    def n_agents(self) -> int:
        return len(self.role_names)


class PrunerOutput(NamedTuple):
    keep_logits: torch.Tensor  # (B, N)
    edge_logits: torch.Tensor  # (B, N, N), row = source, diagonal = -inf

    @property
    def keep_prob(self) -> torch.Tensor:
        return torch.sigmoid(self.keep_logits)

    @property
    def edge_prob(self) -> torch.Tensor:
        return torch.sigmoid(self.edge_logits)


def role_text(pool: AgentPool) -> list[str]:
    """What gets embedded for each role."""
    return [f"{r.name}: {r.description}" for r in pool.roles]


def role_fingerprint(pool: AgentPool) -> str:
    return hashlib.sha1("\n".join(role_text(pool)).encode()).hexdigest()[:12]


def normalized_adjacency(n: int, edges: Sequence[tuple[int, int]]) -> torch.Tensor:
    """D^-1/2 (A + A^T + I) D^-1/2 (Kipf & Welling): the GCN propagates both ways along role connections."""
    a = torch.eye(n)
    for u, v in edges:
        a[u, v] = a[v, u] = 1.0
    d = a.sum(1).rsqrt()
    return d[:, None] * a * d[None, :]


def keep_decision(keep_p: np.ndarray, threshold: float) -> np.ndarray:
    """Keep probabilities (..., N) -> kept agents (..., N) bool: above `threshold`, and never an empty team.

    Where no agent clears the threshold the most probable one is kept (the lowest index on a tie): a pruner trained
    on a weak model's records often puts every agent below 0.5 (each single agent wins only some tasks), and its
    answer is then "one agent, this one", not "nobody". Training metrics use this same rule (`train.evaluate_pruner`).

    >>> keep_decision(np.array([[0.2, 0.4, 0.1], [0.9, 0.1, 0.6]]), 0.5).astype(int).tolist()
    [[0, 1, 0], [1, 0, 1]]
    """
    keep_p = np.asarray(keep_p, dtype=float)
    flat_p = keep_p.reshape(-1, keep_p.shape[-1])  # (B, N)
    keep = flat_p > threshold  # (B, N)
    empty = np.flatnonzero(~keep.any(1))
    keep[empty, flat_p[empty].argmax(1)] = True
    return keep.reshape(keep_p.shape)


def straight_through(prob: torch.Tensor, threshold: float) -> torch.Tensor:
    """Hard 0/1 in the forward pass, the gradient of `prob` in the backward pass."""
    hard = (prob > threshold).float()
    return hard + prob - prob.detach()


class GraphPruner(nn.Module):
    def __init__(self, config: PrunerConfig, role_emb: torch.Tensor, adj: torch.Tensor) -> None:
        super().__init__()
        n, e, h = config.n_agents, config.embed_dim, config.hidden_dim
        if role_emb.shape != (n, e) or adj.shape != (n, n):
            raise ValueError(
                f"role_emb must be ({n}, {e}) and adj ({n}, {n}); got {tuple(role_emb.shape)}, {tuple(adj.shape)}"
            )
        self.config = config
        self.register_buffer("role_emb", role_emb.float())  # (N, E): fixed, stored with the weights
        self.register_buffer("adj", adj.float())  # (N, N): normalised role-connection graph
        self.gcn1 = nn.Linear(2 * e, h)  # neighbour transform W1
        self.root1 = nn.Linear(2 * e, h, bias=False)  # self transform R1: keeps agents apart on dense role graphs
        self.gcn2 = nn.Linear(h, h)
        self.root2 = nn.Linear(h, h, bias=False)
        self.drop = nn.Dropout(config.dropout)
        self.keep_head = nn.Sequential(nn.Linear(h, config.head_dim), nn.ReLU(), nn.Linear(config.head_dim, 1))
        self.edge_src = nn.Linear(h, config.edge_dim)
        self.edge_dst = nn.Linear(h, config.edge_dim)
        self.keep_prior = nn.Parameter(torch.zeros(n))  # (N,) per-agent keep prior
        self.edge_prior = nn.Parameter(torch.zeros(n, n))  # (N, N) per-pair edge prior (diagonal unused)
        self.task_drop = nn.Dropout(config.task_dropout)
        self.embed_fn: EmbedFn = embed_texts

    # ------------------------------------------------------------------ forward
    def forward(self, task_emb: torch.Tensor) -> PrunerOutput:
        """task_emb (B, E) -> keep logits (B, N) and edge logits (B, N, N)."""
        b, n = task_emb.shape[0], self.config.n_agents
        task_emb = self.task_drop(task_emb)
        x = torch.cat(
            [task_emb[:, None, :].expand(b, n, -1), self.role_emb[None].expand(b, n, -1)], dim=-1
        )  # (B, N, 2E)
        h = F.relu(torch.einsum("ij,bjf->bif", self.adj, self.gcn1(x)) + self.root1(x))  # (B, N, H)
        h = self.drop(h)
        z = torch.einsum("ij,bjf->bif", self.adj, self.gcn2(h)) + self.root2(h)  # (B, N, H)
        keep_logits = self.keep_head(z).squeeze(-1) + self.keep_prior  # (B, N)
        src, dst = self.edge_src(z), self.edge_dst(z)  # (B, N, D) each
        edge_logits = src @ dst.transpose(1, 2) / math.sqrt(self.config.edge_dim) + self.edge_prior  # (B, N, N)
        eye = torch.eye(n, dtype=torch.bool, device=edge_logits.device)
        edge_logits = edge_logits.masked_fill(eye, float("-inf"))  # no self edges
        return PrunerOutput(keep_logits, edge_logits)

    # ------------------------------------------------------------------ inference
    @torch.no_grad()
    def predict(self, task_emb: np.ndarray | torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        """(B, E) embeddings -> keep probabilities (B, N) and edge probabilities (B, N, N)."""
        was_training = self.training
        self.eval()
        out = self(torch.as_tensor(np.asarray(task_emb), dtype=torch.float32))
        self.train(was_training)
        return out.keep_prob.numpy(), out.edge_prob.numpy()

    def choose(
        self,
        task: AgentTask | str,
        *,
        sample: bool = False,
        rng: random.Random | int | None = None,
        rounds: int | None = None,
    ) -> Topology:
        """The topology for one task: deterministic by default, Bernoulli-sampled with `sample=True`."""
        text = task.text if isinstance(task, AgentTask) else task
        if not text.strip():
            raise InvalidRequestError("the task is empty: pass the question the agents should answer")
        keep_p, edge_p = self.predict(self.embed_fn([text]))
        return self.topology_from_probs(keep_p[0], edge_p[0], sample=sample, rng=rng, rounds=rounds)

    def topology_from_probs(
        self,
        keep_p: np.ndarray,
        edge_p: np.ndarray,
        *,
        sample: bool = False,
        rng: random.Random | int | None = None,
        rounds: int | None = None,
    ) -> Topology:
        """Keep probs (N,) + edge probs (N, N) -> topology (cycles broken by weight, at least one agent)."""
        cfg = self.config
        rounds = rounds or cfg.rounds
        temporal = "all" if cfg.temporal and rounds > 1 else ()
        if sample:
            r = rng if isinstance(rng, random.Random) else random.Random(rng)
            keep = np.array([r.random() < p for p in keep_p])
            drawn = np.array([[r.random() < p for p in row] for row in edge_p])
            weights, threshold = np.where(drawn, edge_p, 0.0), 0.0
            if not keep.any():
                keep[int(np.argmax(keep_p))] = True  # never an empty team: keep the most probable agent
        else:
            keep = keep_decision(keep_p, cfg.keep_threshold)
            weights, threshold = edge_p, cfg.edge_threshold
        weights = np.array(weights, dtype=float)
        np.fill_diagonal(weights, 0.0)
        return Topology.from_adjacency(keep, weights, threshold, rounds=rounds, temporal=temporal)

    # ------------------------------------------------------------------ construction and files
    @classmethod
    def from_pool(cls, pool: AgentPool, embed: EmbedFn = embed_texts, **overrides: object) -> GraphPruner:
        """A fresh (untrained) pruner for a pool; role embeddings computed with `embed`."""
        config = PrunerConfig(
            domain=pool.domain,
            role_names=list(pool.role_names),
            rounds=pool.default_rounds,
            temporal=pool.default_rounds > 1,
            role_fingerprint=role_fingerprint(pool),
        )
        for key, value in overrides.items():
            if not hasattr(config, key):
                raise InvalidRequestError(f"unknown pruner setting {key!r}")
            setattr(config, key, value)
        role_emb = torch.as_tensor(np.asarray(embed(role_text(pool))), dtype=torch.float32)
        model = cls(config, role_emb, normalized_adjacency(pool.size, pool.role_connections))
        model.embed_fn = embed
        return model

    def save(self, directory: str | Path) -> Path:
        """`pruner.safetensors` (fp16) + `config.json` under `directory`."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        tensors = {k: v.detach().to(torch.float16).contiguous() for k, v in self.state_dict().items()}
        save_file(tensors, str(directory / TENSORS_FILE))
        (directory / CONFIG_FILE).write_text(json.dumps(asdict(self.config), indent=2) + "\n")
        return directory

    @classmethod
    def load(cls, domain_or_dir: str | Path, embed: EmbedFn = embed_texts) -> GraphPruner:
        """Load the shipped pruner of a domain (`math`, `general`, `code`) or one saved under a directory."""
        path = Path(domain_or_dir)
        if not (path / CONFIG_FILE).exists():
            path = WEIGHTS_DIR / str(domain_or_dir)
            if not (path / CONFIG_FILE).exists():
                raise UnknownDomainError(
                    f"no trained pruner for {domain_or_dir!r}: expected {CONFIG_FILE} under {path} "
                    "(train one with graph_pruning.train, or pass a directory)"
                )
        config = PrunerConfig(**json.loads((path / CONFIG_FILE).read_text()))
        tensors = {k: v.float() for k, v in load_file(str(path / TENSORS_FILE)).items()}
        model = cls(config, tensors["role_emb"], tensors["adj"])
        model.load_state_dict(tensors)
        model.embed_fn = embed
        model.eval()
        try:
            pool = get_pool(config.domain)
        except UnknownDomainError:
            pool = None
        if pool is not None and list(pool.role_names) != config.role_names:
            raise InvalidRequestError(
                f"the pruner at {path} was trained for roles {config.role_names}, "
                f"but the {config.domain} pool has {list(pool.role_names)}"
            )
        if pool is not None and config.role_fingerprint and config.role_fingerprint != role_fingerprint(pool):
            logger.warning(
                "role descriptions of the %s pool changed since the pruner at %s was trained", config.domain, path
            )
        return model
