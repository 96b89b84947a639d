"""Pools: role order and sizes, and what AGP's released stage-I records mean (checked on the data, not assumed)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from prunekit.graph_pruning.data import AGP_STAGE1_FILES
from prunekit.graph_pruning.errors import InvalidTopologyError, UnknownDomainError
from prunekit.graph_pruning.pools import DOMAINS, get_pool
from tests.conftest import require_data


def _arrays(domain: str) -> tuple[np.ndarray, np.ndarray]:
    raw = json.loads(require_data(AGP_STAGE1_FILES[domain]).read_text())
    return np.array([r["mask"] for r in raw]), np.array([r["edge_weight"] for r in raw])


def test_pool_sizes_and_agp_role_order() -> None:
    assert get_pool("math").role_names == ("Math Solver", "Mathematical Analyst", "Programming Expert", "Inspector")
    general = get_pool("general").role_names
    assert len(general) == 9 and general[0] == "Knowledgeable Expert" and general[1] == "Critic"
    assert general[-1] == "Programmer" and "Wiki Searcher" not in general
    assert get_pool("code").role_names == (
        "Project Manager",
        "Algorithm Designer",
        "Programming Expert",
        "Test Analyst",
        "Bug Fixer",
    )
    assert get_pool("code").default_rounds == 2
    for d in DOMAINS:
        pool = get_pool(d)
        assert len(set(pool.role_names)) == pool.size
        assert all(r.prompt and r.description for r in pool.roles)


def test_unknown_domain_and_role() -> None:
    with pytest.raises(UnknownDomainError, match="choose one of"):
        get_pool("chemistry")
    with pytest.raises(InvalidTopologyError):
        get_pool("math").index("Poet")
    assert get_pool("math").index("inspector") == 3


@pytest.mark.data
@pytest.mark.parametrize("domain", DOMAINS)
def test_records_fit_pool_shapes(domain: str) -> None:
    mask, edges = _arrays(domain)
    n = get_pool(domain).size
    assert mask.shape[1] == n and edges.shape[1:] == (n, n)
    assert set(np.unique(mask)) <= {0.0, 1.0}
    assert (np.diagonal(edges, axis1=1, axis2=2) == 0).all()


@pytest.mark.data
@pytest.mark.parametrize("domain", DOMAINS)
def test_mask_one_means_pruned(domain: str) -> None:
    # AGP's collector writes 1 for masked (pruned) agents; the released runs kept most agents
    mask, _ = _arrays(domain)
    assert mask.mean() < 0.25
    assert (mask.sum(1) < mask.shape[1]).mean() > 0.95  # nearly every record keeps someone


@pytest.mark.data
def test_crucial_general_roles_are_almost_never_pruned() -> None:
    # AGP never prunes "Knowlegable Expert" and "Critic" by score: positions 0 and 1 of the general pool
    mask, _ = _arrays("general")
    per_agent = mask.mean(0)
    assert per_agent[0] < 0.02 and per_agent[1] < 0.02
    assert per_agent[2:].max() > 0.2  # while other roles are pruned often


@pytest.mark.data
@pytest.mark.parametrize("domain", DOMAINS)
def test_edge_rows_are_sources(domain: str) -> None:
    # candidate edges are visited row-major with a cycle check on realised edges: when row i is visited no node
    # j > i has out-edges yet, so every upper-triangle entry is non-zero iff row = source
    _, edges = _arrays(domain)
    n = edges.shape[1]
    upper = np.triu(np.ones((n, n), dtype=bool), 1)
    assert (edges[:, upper] != 0).all()
    assert not (edges[:, upper.T] != 0).all(1).all()  # the lower triangle is cut by the cycle check


@pytest.mark.data
@pytest.mark.parametrize("domain", DOMAINS)
def test_edges_are_probabilities_and_not_restricted_to_kept_agents(domain: str) -> None:
    mask, edges = _arrays(domain)
    nonzero = edges[edges != 0]
    assert nonzero.min() > 0.26 and nonzero.max() < 0.74  # sigmoid of a [-1, 1] min-max-normed logit
    # symmetric values (Z Z^T) wherever both directions are present
    both = (edges != 0) & (np.transpose(edges, (0, 2, 1)) != 0)
    close = np.isclose(edges, np.transpose(edges, (0, 2, 1)))[both]
    assert close.mean() > 0.99
    pruned_pair = (mask[:, :, None] == 1) | (mask[:, None, :] == 1)
    assert (edges[pruned_pair] != 0).any()  # weights are written before pruning: the loss must mask them
