"""Pictures of a chosen topology: a PNG via networkx + matplotlib (headless), or plain text (`render_text`).

AGP (arXiv 2506.02951) shows pruned communication graphs as node-link diagrams; kept agents are drawn in layers
(agents of one layer run in parallel), pruned agents greyed out, edges labelled with their probability.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import networkx as nx

from prunekit.graph_pruning.topology import Topology

__all__ = ["draw_topology"]

logger = logging.getLogger(__name__)


def draw_topology(
    topology: Topology, path: str | Path, role_names: Sequence[str] | None = None, title: str = ""
) -> Path:
    """Write a PNG of the topology to `path` and return the path."""
    import matplotlib

    matplotlib.use("Agg", force=False)  # no display needed
    import matplotlib.pyplot as plt

    names = list(role_names) if role_names is not None else [str(i) for i in range(topology.n_agents)]
    g = nx.DiGraph()
    g.add_nodes_from(range(topology.n_agents))
    g.add_edges_from(topology.edges)
    pos: dict[int, tuple[float, float]] = {}
    layers = topology.layers()
    for depth, layer in enumerate(layers):
        for k, agent in enumerate(layer):
            pos[agent] = (float(depth), -(k - (len(layer) - 1) / 2))
    pruned = topology.pruned
    for k, agent in enumerate(pruned):  # pruned agents sit in a column on the right
        pos[agent] = (float(len(layers)), -(k - (len(pruned) - 1) / 2))

    fig, ax = plt.subplots(figsize=(2.0 * (len(layers) + 1) + 1.5, 0.75 * max(4, topology.n_agents)))
    nx.draw_networkx_nodes(g, pos, nodelist=topology.kept, node_color="#4C72B0", node_size=900, ax=ax)
    nx.draw_networkx_nodes(g, pos, nodelist=pruned, node_color="#DDDDDD", node_size=700, ax=ax)
    nx.draw_networkx_edges(
        g,
        pos,
        edgelist=topology.edges,
        arrows=True,
        arrowsize=16,
        node_size=900,
        connectionstyle="arc3,rad=0.12",
        ax=ax,
    )
    weights = {e: f"{topology.graph.edges[e].get('weight', 1.0):.2f}" for e in topology.edges}
    if any(w != "1.00" for w in weights.values()):
        nx.draw_networkx_edge_labels(g, pos, edge_labels=weights, font_size=7, ax=ax)
    labels = {i: "\n".join(names[i].split(" ", 1)) for i in range(topology.n_agents)}
    nx.draw_networkx_labels(g, pos, labels=labels, font_size=7, ax=ax)
    ax.set_title(title or f"{len(topology.kept)} of {topology.n_agents} agents, {topology.rounds} round(s)", fontsize=9)
    if pruned:
        top = max(y for _, y in (pos[a] for a in pruned))
        ax.text(float(len(layers)), top + 0.7, "pruned", ha="center", fontsize=8, color="#777777")
    ax.margins(x=0.2, y=0.15)
    ax.axis("off")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path
