"""Topologies: validation, cycle breaking by weight, helpers and renderings."""

from __future__ import annotations

import random

import networkx as nx
import numpy as np
import pytest

from prunekit.graph_pruning.errors import InvalidTopologyError
from prunekit.graph_pruning.topology import (
    Topology,
    acyclic_from_weights,
    chain,
    complete,
    random_topology,
    render_text,
    single,
)


def test_build_rejects_bad_input() -> None:
    with pytest.raises(InvalidTopologyError, match="at least one"):
        Topology.build(4, [])
    with pytest.raises(InvalidTopologyError, match="not in a pool"):
        Topology.build(4, [0, 4])
    with pytest.raises(InvalidTopologyError, match="not kept"):
        Topology.build(4, [0, 1], [(0, 2)])
    with pytest.raises(InvalidTopologyError, match="acyclic"):
        Topology.build(4, [0, 1, 2], [(0, 1), (1, 2), (2, 0)])
    with pytest.raises(InvalidTopologyError, match="self-loop"):
        Topology.build(4, [0], [(0, 0)])
    with pytest.raises(InvalidTopologyError, match="rounds"):
        Topology.build(4, [0], rounds=0)


def test_acyclic_from_weights_drops_the_weakest_edge_of_each_cycle() -> None:
    edges = acyclic_from_weights({(0, 1): 0.9, (1, 2): 0.8, (2, 0): 0.3, (1, 0): 0.6, (2, 1): 0.7})
    assert edges == [(0, 1), (1, 2)]
    g = nx.DiGraph(edges)
    assert nx.is_directed_acyclic_graph(g)


def test_from_adjacency_thresholds_prunes_and_keeps_one() -> None:
    w = np.array([[0, 0.9, 0.2, 0.8], [0.7, 0, 0.6, 0.9], [0.9, 0.9, 0, 0.9], [0.9, 0.9, 0.9, 0]])
    t = Topology.from_adjacency([True, True, False, True], w, 0.5)
    assert t.kept == [0, 1, 3] and t.pruned == [2]
    assert all(2 not in e for e in t.edges)
    assert nx.is_directed_acyclic_graph(t.graph)
    assert (0, 1) in t.edges  # 0.9 beats 1 -> 0 (0.7)
    none_kept = Topology.from_adjacency([False] * 4, w, 0.5)
    assert none_kept.kept == [0]
    assert t.mask() == [0.0, 0.0, 1.0, 0.0]
    assert t.adjacency()[0, 1] == pytest.approx(0.9)


def test_helpers() -> None:
    assert single(4, 2).kept == [2] and single(4).edges == []
    assert chain(4).edges == [(0, 1), (1, 2), (2, 3)]
    assert chain(9, [3, 1]).edges == [(3, 1)]
    full = complete(4, rounds=3, temporal=True)
    assert len(full.edges) == 6 and full.rounds == 3 and len(full.temporal) == 16
    assert full.layers() == [[0], [1], [2], [3]]
    assert complete(4).temporal == frozenset()
    r1 = random_topology(9, 4, rng=random.Random(3))
    r2 = random_topology(9, 4, rng=random.Random(3))
    assert r1.kept == r2.kept and r1.edges == r2.edges and len(r1.kept) == 4
    with pytest.raises(InvalidTopologyError):
        random_topology(4, 5)


def test_layers_group_independent_agents() -> None:
    t = Topology.build(5, [0, 1, 2, 4], [(0, 2), (1, 2), (2, 4)])
    assert t.layers() == [[0, 1], [2], [4]]
    assert t.predecessors(2) == [0, 1]
    assert t.order() == [0, 1, 2, 4]


def test_dict_round_trip_and_text() -> None:
    t = Topology.build(4, [0, 1, 3], [(0, 3), (1, 3)], weights={(0, 3): 0.7}, rounds=2, temporal="all")
    back = Topology.from_dict(t.to_dict())
    assert back.kept == t.kept and back.edges == t.edges and back.temporal == t.temporal and back.rounds == 2
    text = render_text(t, ["a", "b", "c", "d"])
    assert "layer 1: [0] a, [1] b" in text and "pruned: [2] c" in text and "[0] a -> [3] d" in text
