"""Pictures of topologies."""

from __future__ import annotations

from prunekit.graph_pruning.draw import draw_topology
from prunekit.graph_pruning.pools import get_pool
from prunekit.graph_pruning.topology import Topology


def test_png_is_written(tmp_path) -> None:
    pool = get_pool("general")
    topology = Topology.build(pool.size, [0, 1, 4], [(0, 1), (0, 4)], weights={(0, 1): 0.8, (0, 4): 0.6})
    path = draw_topology(topology, tmp_path / "g.png", pool.role_names)
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 2000
