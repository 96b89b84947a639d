"""The pruner: shapes, every parameter trained, deterministic and sampled choices, files."""

from __future__ import annotations

import hashlib

import networkx as nx
import numpy as np
import pytest
import torch

from prunekit.graph_pruning.errors import UnknownDomainError
from prunekit.graph_pruning.model import WEIGHTS_DIR, GraphPruner, keep_decision, normalized_adjacency
from prunekit.graph_pruning.pools import DOMAINS, get_pool
from prunekit.graph_pruning.train import TrainConfig, pruner_loss


def fake_embed(texts):
    """Deterministic pseudo-embeddings (no MiniLM load): a unit vector seeded by the text."""
    out = []
    for t in texts:
        seed = int.from_bytes(hashlib.sha1(t.encode()).digest()[:4], "little")
        v = np.random.default_rng(seed).standard_normal(384).astype(np.float32)
        out.append(v / np.linalg.norm(v))
    return np.stack(out)


def test_forward_shapes_and_no_self_edges() -> None:
    model = GraphPruner.from_pool(get_pool("general"), embed=fake_embed)
    out = model(torch.as_tensor(fake_embed(["a", "b", "c"])))
    assert out.keep_logits.shape == (3, 9) and out.edge_logits.shape == (3, 9, 9)
    assert (torch.diagonal(out.edge_prob, dim1=1, dim2=2) == 0).all()


def test_normalized_adjacency_is_symmetric_with_self_loops() -> None:
    a = normalized_adjacency(3, [(0, 1)])
    assert torch.allclose(a, a.T) and (torch.diagonal(a) > 0).all() and a[0, 2] == 0


@pytest.mark.parametrize("domain", DOMAINS)
def test_every_parameter_gets_a_gradient(domain: str) -> None:
    pool = get_pool(domain)
    model = GraphPruner.from_pool(pool, embed=fake_embed)
    model.train()
    n = pool.size
    keep_t = torch.tensor([[1.0] * (n - 1) + [0.0], [0.0] + [1.0] * (n - 1)])
    edge_t = torch.triu(torch.ones(n, n), 1).expand(2, n, n) * keep_t[:, :, None] * keep_t[:, None, :]
    out = model(torch.as_tensor(fake_embed(["task one", "task two"])))
    loss, parts = pruner_loss(out, keep_t, edge_t, TrainConfig(), model.config.keep_threshold)
    loss.backward()
    names = [name for name, _ in model.named_parameters()]
    assert {"edge_src.weight", "edge_dst.weight", "edge_prior", "keep_prior", "gcn1.weight"} <= set(names)
    for name, p in model.named_parameters():
        assert p.grad is not None, name
        assert p.grad.abs().sum() > 0, name
    assert parts["edge"] > 0 and parts["node"] > 0 and parts["cost"] >= 0


def test_token_cost_reaches_the_keep_head_through_the_straight_through_estimator() -> None:
    model = GraphPruner.from_pool(get_pool("math"), embed=fake_embed)
    out = model(torch.as_tensor(fake_embed(["a task"])))
    zeros = torch.zeros(1, 4)
    loss, _ = pruner_loss(out, zeros, torch.zeros(1, 4, 4), TrainConfig(node_loss=0, edge_loss=0, cost_coef=1.0), 0.5)
    loss.backward()
    assert model.keep_prior.grad is not None and (model.keep_prior.grad > 0).all()  # cost pushes keep probs down


def test_deterministic_choice_is_stable_acyclic_and_nonempty() -> None:
    pool = get_pool("general")
    model = GraphPruner.from_pool(pool, embed=fake_embed).eval()
    t1, t2 = model.choose("Who wrote Hamlet?"), model.choose("Who wrote Hamlet?")
    assert t1.kept == t2.kept and t1.edges == t2.edges
    assert nx.is_directed_acyclic_graph(t1.graph) and t1.kept
    with torch.no_grad():
        model.keep_prior.fill_(-50.0)  # every agent below threshold: still one agent
    assert len(model.choose("Who wrote Hamlet?").kept) == 1


def test_probabilities_to_topology_breaks_cycles_and_samples() -> None:
    model = GraphPruner.from_pool(get_pool("math"), embed=fake_embed)
    keep = np.array([0.9, 0.2, 0.8, 0.7])
    edge = np.full((4, 4), 0.9)
    edge[2, 0] = 0.95
    t = model.topology_from_probs(keep, edge)
    assert t.kept == [0, 2, 3] and (2, 0) in t.edges and (0, 2) not in t.edges
    assert nx.is_directed_acyclic_graph(t.graph)
    s1 = model.topology_from_probs(keep, edge, sample=True, rng=7)
    s2 = model.topology_from_probs(keep, edge, sample=True, rng=7)
    assert s1.kept == s2.kept and s1.edges == s2.edges
    sizes = {len(model.topology_from_probs(keep, edge, sample=True, rng=i).kept) for i in range(30)}
    assert len(sizes) > 1  # sampling explores team sizes


def test_save_load_round_trip(tmp_path) -> None:
    model = GraphPruner.from_pool(get_pool("code"), embed=fake_embed).eval()
    model.save(tmp_path / "code")
    loaded = GraphPruner.load(tmp_path / "code", embed=fake_embed)
    x = torch.as_tensor(fake_embed(["def f(): pass"]))
    assert torch.allclose(model(x).keep_logits, loaded(x).keep_logits, atol=1e-2)  # stored as fp16
    assert loaded.config.role_names == list(get_pool("code").role_names)
    assert sum(f.stat().st_size for f in (tmp_path / "code").iterdir()) < 2_000_000


def test_load_unknown_domain() -> None:
    with pytest.raises(UnknownDomainError, match="no trained pruner"):
        GraphPruner.load("chemistry")


@pytest.mark.parametrize("domain", DOMAINS)
def test_shipped_weights_fit_their_pool(domain: str) -> None:
    path = WEIGHTS_DIR / domain
    assert (path / "config.json").exists() and (path / "pruner.safetensors").exists()
    model = GraphPruner.load(domain, embed=fake_embed)
    assert model.config.n_agents == get_pool(domain).size
    assert (path / "pruner.safetensors").stat().st_size < 1_000_000
    assert "heldout_metrics" in model.config.extra


def test_shipped_math_pruner_with_minilm() -> None:
    model = GraphPruner.load("math")  # the real encoder
    topology = model.choose("Tom has 3 apples and buys 5 more. How many apples does he have?")
    assert 1 <= len(topology.kept) <= 4 and nx.is_directed_acyclic_graph(topology.graph)


def test_never_an_empty_team_the_most_probable_agent_stays() -> None:
    model = GraphPruner.from_pool(get_pool("math"), embed=fake_embed)
    low = np.array([0.10, 0.30, 0.05, 0.29])  # nobody above 0.5
    edge = np.full((4, 4), 0.9)
    assert model.topology_from_probs(low, edge).kept == [1]
    assert model.topology_from_probs(np.zeros(4), edge).kept == [0]  # a tie: the lowest index
    for seed in range(20):  # sampling may draw nobody: the most probable agent then runs
        assert 1 in model.topology_from_probs(low * 0.01, edge, sample=True, rng=seed).kept
    batch = keep_decision(np.array([[0.1, 0.4, 0.2, 0.0], [0.9, 0.1, 0.7, 0.2]]), 0.5)
    assert batch.tolist() == [[False, True, False, False], [True, False, True, False]]


@pytest.mark.parametrize("domain", DOMAINS)
def test_shipped_pruner_never_returns_an_empty_team(domain: str) -> None:
    """Whatever the task, the shipped pruner keeps at least its most probable agent (the weak model's records put
    every keep probability below 0.5, so this rule is what runs in practice)."""
    model = GraphPruner.load(domain, embed=fake_embed)
    tasks = [f"task number {i}: what is {i} + {i}?" for i in range(30)]
    keep_p, edge_p = model.predict(fake_embed(tasks))
    for k, e in zip(keep_p, edge_p, strict=True):
        topology = model.topology_from_probs(k, e)
        assert topology.kept and int(np.argmax(k)) in topology.kept
