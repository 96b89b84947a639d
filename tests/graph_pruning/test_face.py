"""The AGP face: a domain's task, its pruner loaded once, and `solve`'s plain result with the pruning savings."""

from __future__ import annotations

import threading

import pytest

from prunekit.decoding.errors import InvalidRequestError
from prunekit.graph_pruning.errors import InvalidTaskError, UnknownDomainError
from prunekit.graph_pruning.face import make_task, pruner_for, solve
from prunekit.graph_pruning.pools import get_pool
from tests.graph_pruning.fakes import RecordingModel


def test_make_task_formats():
    assert make_task("math", "1+1?").answer_format == "number"
    assert make_task("general", "Which?", choices=("A", "B")).answer_format == "choice"
    assert make_task("general", "Who?", context="Ann did.").answer_format == "span"
    assert make_task("code", "def f(): ...").answer_format == "code"
    with pytest.raises(InvalidRequestError):
        make_task("math", "   ")


def test_make_task_says_what_to_change():
    with pytest.raises(InvalidTaskError, match="give choices") as general:
        make_task("general", "Who?")
    with pytest.raises(UnknownDomainError, match="math, general or code") as poetry:
        make_task("poetry", "x")
    # the service answers both with a 400: each is an InvalidRequestError
    assert isinstance(general.value, InvalidRequestError) and isinstance(poetry.value, InvalidRequestError)


def test_the_pruner_of_a_domain_loads_once_even_for_concurrent_first_requests():
    got = []
    threads = [threading.Thread(target=lambda: got.append(pruner_for("math"))) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(got) == 4 and all(p is got[0] for p in got) and pruner_for("math") is got[0]


def test_solve_reports_the_run_and_what_pruning_saved():
    model = RecordingModel("17 * 3 = 51. The answer is 51.")
    run = solve(model, make_task("math", "What is 17 * 3?"), "math")
    pool, topology = get_pool("math"), pruner_for("math").choose("What is 17 * 3?")
    assert run["answer"] == "51" and run["domain"] == "math" and run["code_execution"] == "off"
    assert run["agents_total"] == pool.size and run["agents_kept"] == len(topology.kept)
    assert run["agent_calls_avoided"] == (pool.size - len(topology.kept)) * topology.rounds
    assert run["llm_calls"] == len(run["turns"]) == len(model.calls)
    assert run["tokens"] == run["prompt_tokens"] + run["completion_tokens"] > 0
    assert all(name in run["graph"] for name in (pool.role_names[a] for a in topology.kept))
