"""Topologies: which agents of a pool run, who reads whom, and for how many rounds.

A topology (AGP, arXiv 2506.02951: the pruned communication graph) is a networkx DiGraph whose nodes are the
indices of the KEPT agents of a pool and whose edges u -> v are spatial: within a round, v runs after u and reads
u's message. The spatial graph is acyclic (agents run in topological order). Optional temporal edges u -> v let v,
in round r + 1, read u's round-r message (u == v allowed: an agent rereads itself). Agents not in the graph are
pruned and never run.

Helpers build the baselines the evaluation compares: `single`, `chain`, `complete` (all pairs i -> j, i < j: the
maximum acyclic orientation of the complete graph) and `random_topology` (k random agents, random DAG edges).
"""

from __future__ import annotations

import itertools
import logging
import random
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import networkx as nx
import numpy as np

from prunekit.graph_pruning.errors import InvalidTopologyError

__all__ = [
    "Topology",
    "acyclic_from_weights",
    "chain",
    "complete",
    "random_topology",
    "render_text",
    "single",
]

logger = logging.getLogger(__name__)


@dataclass
class Topology:
    """Kept agents, spatial DAG, temporal edges and rounds, over a pool of `n_agents` agents.

    Build one with `Topology.build` (validates) or the helpers below.
    """

    n_agents: int
    graph: nx.DiGraph
    rounds: int = 1
    temporal: frozenset[tuple[int, int]] = field(default_factory=frozenset)

    # ------------------------------------------------------------------ construction
    @classmethod
    def build(
        cls,
        n_agents: int,
        kept: Iterable[int],
        edges: Iterable[tuple[int, int]] = (),
        *,
        weights: Mapping[tuple[int, int], float] | None = None,
        rounds: int = 1,
        temporal: Iterable[tuple[int, int]] | str = (),
    ) -> Topology:
        """Validate and build. `temporal="all"` connects every kept agent to every kept agent (itself included).

        Raises `InvalidTopologyError` for an empty agent set, unknown agents, edges touching pruned agents,
        self-loops or a cycle (use `acyclic_from_weights` to break cycles first).
        """
        kept_list = sorted(set(kept))
        if not kept_list:
            raise InvalidTopologyError("a topology needs at least one agent")
        if n_agents < 1:
            raise InvalidTopologyError(f"n_agents must be positive, got {n_agents}")
        bad = [a for a in kept_list if not (isinstance(a, int | np.integer) and 0 <= a < n_agents)]
        if bad:
            raise InvalidTopologyError(
                f"agents {bad} are not in a pool of {n_agents} agents (indices 0..{n_agents - 1})"
            )
        if not isinstance(rounds, int) or rounds < 1:
            raise InvalidTopologyError(f"rounds must be a positive integer, got {rounds!r}")
        graph = nx.DiGraph()
        graph.add_nodes_from(int(a) for a in kept_list)
        for u, v in edges:
            u, v = int(u), int(v)
            if u == v:
                raise InvalidTopologyError(f"spatial self-loop {u} -> {v}: an agent cannot wait for itself")
            if u not in graph or v not in graph:
                raise InvalidTopologyError(f"edge {u} -> {v} touches an agent that is not kept ({kept_list})")
            w = 1.0 if weights is None else float(weights.get((u, v), 1.0))
            graph.add_edge(u, v, weight=w)
        if not nx.is_directed_acyclic_graph(graph):
            cycle = nx.find_cycle(graph)
            raise InvalidTopologyError(f"spatial edges must be acyclic; found the cycle {cycle}")
        if isinstance(temporal, str):
            if temporal != "all":
                raise InvalidTopologyError(f"temporal must be pairs of agents or 'all', got {temporal!r}")
            temporal_set = frozenset((u, v) for u in kept_list for v in kept_list) if rounds > 1 else frozenset()
        else:
            temporal_set = frozenset((int(u), int(v)) for u, v in temporal)
            outside = [(u, v) for u, v in temporal_set if u not in graph or v not in graph]
            if outside:
                raise InvalidTopologyError(f"temporal edges {outside} touch agents that are not kept")
        return cls(n_agents=n_agents, graph=graph, rounds=rounds, temporal=temporal_set)

    @classmethod
    def from_adjacency(
        cls,
        keep: Sequence[bool] | np.ndarray,
        weights: np.ndarray,
        threshold: float = 0.5,
        *,
        rounds: int = 1,
        temporal: Iterable[tuple[int, int]] | str = (),
    ) -> Topology:
        """Keep mask + (N, N) edge weights (row = source) -> topology: edges among kept agents above threshold,
        cycles broken by dropping the weakest edges. At least one agent is always kept (the first, if none is)."""
        keep = np.asarray(keep, dtype=bool)
        weights = np.asarray(weights, dtype=float)
        n = keep.shape[0]
        if weights.shape != (n, n):
            raise InvalidTopologyError(f"weights must be ({n}, {n}) for {n} agents, got {weights.shape}")
        kept = [i for i in range(n) if keep[i]] or [0]
        candidates = {(u, v): weights[u, v] for u in kept for v in kept if u != v and weights[u, v] > threshold}
        edges = acyclic_from_weights(candidates)
        return cls.build(n, kept, edges, weights=candidates, rounds=rounds, temporal=temporal)

    # ------------------------------------------------------------------ views
    @property
    def kept(self) -> list[int]:
        """Indices of the agents that run, ascending."""
        return sorted(self.graph.nodes)

    @property
    def edges(self) -> list[tuple[int, int]]:
        return sorted(self.graph.edges)

    @property
    def pruned(self) -> list[int]:
        return [i for i in range(self.n_agents) if i not in self.graph]

    def order(self) -> list[int]:
        """A deterministic topological order (smallest index first among ready agents)."""
        return list(nx.lexicographical_topological_sort(self.graph))

    def layers(self) -> list[list[int]]:
        """Agents grouped by the superstep they run in (longest path from a source): one layer runs in parallel."""
        return [sorted(g) for g in nx.topological_generations(self.graph)]

    def predecessors(self, agent: int) -> list[int]:
        return sorted(self.graph.predecessors(agent))

    def temporal_predecessors(self, agent: int) -> list[int]:
        return sorted(u for u, v in self.temporal if v == agent)

    def mask(self) -> list[float]:
        """AGP's record layout: 1.0 = pruned, 0.0 = kept."""
        return [0.0 if i in self.graph else 1.0 for i in range(self.n_agents)]

    def adjacency(self) -> np.ndarray:
        """(N, N) edge weights, row = source, 0 where no edge (AGP's `edge_weight` layout)."""
        a = np.zeros((self.n_agents, self.n_agents))
        for u, v, w in self.graph.edges(data="weight", default=1.0):
            a[u, v] = w
        return a

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able description (for the service and records)."""
        return {
            "n_agents": self.n_agents,
            "agents": self.kept,
            "edges": [list(e) for e in self.edges],
            "weights": [round(float(self.graph.edges[e].get("weight", 1.0)), 4) for e in self.edges],
            "rounds": self.rounds,
            "temporal": sorted(list(e) for e in self.temporal),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Topology:
        edges = [tuple(e) for e in data.get("edges", [])]
        weights = dict(zip(edges, data.get("weights", [1.0] * len(edges)), strict=False))
        return cls.build(
            int(data["n_agents"]),
            data["agents"],
            edges,  # type: ignore[arg-type]
            weights=weights,  # type: ignore[arg-type]
            rounds=int(data.get("rounds", 1)),
            temporal=[tuple(e) for e in data.get("temporal", [])],  # type: ignore[misc]
        )


def acyclic_from_weights(weighted_edges: Mapping[tuple[int, int], float]) -> list[tuple[int, int]]:
    """Greedy maximum-weight acyclic subgraph: add edges strongest first, skip any that would close a cycle.

    Every cycle of the input loses (at least) its weakest edge; ties break by (source, target) for determinism.

    >>> acyclic_from_weights({(0, 1): 0.9, (1, 2): 0.8, (2, 0): 0.3})
    [(0, 1), (1, 2)]
    """
    g = nx.DiGraph()
    kept: list[tuple[int, int]] = []
    for (u, v), _ in sorted(weighted_edges.items(), key=lambda kv: (-kv[1], kv[0])):
        if u == v:
            continue
        if u in g and v in g and nx.has_path(g, v, u):
            continue  # u -> v would close a cycle through a stronger path v ~> u
        g.add_edge(u, v)
        kept.append((u, v))
    return sorted(kept)


def single(n_agents: int, agent: int = 0) -> Topology:
    """One agent alone (AGP's `DirectAnswer` style baseline)."""
    return Topology.build(n_agents, [agent])


def chain(n_agents: int, agents: Sequence[int] | None = None, *, rounds: int = 1) -> Topology:
    """Agents in a line, each reading the previous one."""
    order = list(range(n_agents)) if agents is None else list(agents)
    return Topology.build(n_agents, order, itertools.pairwise(order), rounds=rounds)


def complete(
    n_agents: int, agents: Sequence[int] | None = None, *, rounds: int = 1, temporal: bool = False
) -> Topology:
    """Every pair connected i -> j for i < j (the complete graph's acyclic orientation); with `temporal`, every
    agent reads every agent's previous-round message (the LLM-Debate-like baseline with rounds=3)."""
    nodes = sorted(range(n_agents) if agents is None else agents)
    edges = [(u, v) for i, u in enumerate(nodes) for v in nodes[i + 1 :]]
    return Topology.build(n_agents, nodes, edges, rounds=rounds, temporal="all" if temporal else ())


def random_topology(
    n_agents: int,
    k: int,
    *,
    rng: random.Random | int | None = None,
    edge_prob: float = 0.5,
    rounds: int = 1,
) -> Topology:
    """k agents drawn at random, edges of a random DAG: a random order, each forward pair kept with `edge_prob`."""
    if not 1 <= k <= n_agents:
        raise InvalidTopologyError(f"k must be in 1..{n_agents}, got {k}")
    rng = rng if isinstance(rng, random.Random) else random.Random(rng)
    agents = rng.sample(range(n_agents), k)  # also a random topological order
    edges = [(u, v) for i, u in enumerate(agents) for v in agents[i + 1 :] if rng.random() < edge_prob]
    return Topology.build(n_agents, agents, edges, rounds=rounds)


def render_text(topology: Topology, role_names: Sequence[str] | None = None) -> str:
    """A plain-text picture: the layers that run in parallel, the edges, the pruned agents.

    >>> print(render_text(chain(3, [0, 2]), ["a", "b", "c"]))
    agents: 2 of 3, rounds: 1
    layer 1: [0] a
    layer 2: [2] c
    edges: [0] a -> [2] c
    pruned: [1] b
    """

    def name(i: int) -> str:
        return f"[{i}] {role_names[i]}" if role_names is not None else f"[{i}]"

    lines = [f"agents: {len(topology.kept)} of {topology.n_agents}, rounds: {topology.rounds}"]
    for depth, layer in enumerate(topology.layers(), start=1):
        lines.append(f"layer {depth}: " + ", ".join(name(i) for i in layer))
    lines.append("edges: " + ("; ".join(f"{name(u)} -> {name(v)}" for u, v in topology.edges) or "none"))
    if topology.temporal:
        lines.append(f"temporal edges: {len(topology.temporal)}")
    lines.append("pruned: " + (", ".join(name(i) for i in topology.pruned) or "none"))
    return "\n".join(lines)
