"""One short run with the real embedded model: a pruned two-agent team answers a hand-written SQuAD-style question."""

from __future__ import annotations

import pytest

from prunekit.graph_pruning.execute import RunConfig, run_agents
from prunekit.graph_pruning.pools import get_pool
from prunekit.graph_pruning.task import AgentTask
from prunekit.graph_pruning.topology import chain


@pytest.mark.slow
def test_embedded_model_runs_a_pruned_team(embedded_model) -> None:
    pool = get_pool("general")
    task = AgentTask(
        "What colour is the lighthouse?",
        "span",
        context="The old lighthouse on the northern cape is painted red and was built in 1871.",
    )
    result = run_agents(task, pool, chain(pool.size, [0, 1]), embedded_model, RunConfig(max_tokens=16))
    assert result.usage.calls == 2 and set(result.per_agent) == {0, 1}
    assert all(t.prompt_tokens > 0 and t.completion_tokens > 0 for t in result.turns)
    assert isinstance(result.answer, str) and len(result.answer.split()) <= 8
