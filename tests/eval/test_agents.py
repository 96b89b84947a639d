"""The agents evaluation runner: methods side by side on a scripted model, stage-I exclusion, metrics, the plot;
and one tiny run with the embedded model."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from prunekit.decoding.errors import InvalidRequestError
from prunekit.eval.agents import METHODS, UnknownMethodError, evaluate_agents, plot_accuracy_vs_tokens
from prunekit.eval.harness import write_results
from prunekit.graph_pruning.errors import UnknownBenchmarkError
from prunekit.graph_pruning.model import GraphPruner
from prunekit.graph_pruning.pools import get_pool
from prunekit.graph_pruning.records import StageRecord, save_records
from tests.conftest import REPO, require_data
from tests.graph_pruning.fakes import RecordingModel

PARAGRAPH = "Super Bowl 50 was won by the Denver Broncos, who beat the Carolina Panthers 24-10 in Santa Clara."
QUESTIONS = [  # (id, question, gold): the scripted model always answers "Denver Broncos"
    ("q-win", "Which team won Super Bowl 50?", "Denver Broncos"),  # F1 1
    ("q-lose", "Which team lost Super Bowl 50?", "Carolina Panthers"),  # F1 0
    ("q-stage1", "Who were the champions of Super Bowl 50?", "the Broncos"),  # a stage-I task: excluded
]


def _fake_embed(texts) -> np.ndarray:
    """Deterministic unit vectors from a hash: no encoder needed."""
    out = []
    for t in texts:
        seed = int(hashlib.sha1(t.encode()).hexdigest()[:8], 16)
        v = np.random.default_rng(seed).standard_normal(384).astype(np.float32)
        out.append(v / np.linalg.norm(v))
    return np.stack(out) if out else np.zeros((0, 384), np.float32)


def _pruner(domain: str, keep: list[int], edges: list[tuple[int, int]] = ()) -> GraphPruner:
    """A pruner whose choice is fixed by its priors: exactly `keep` and `edges`, whatever the task."""
    pool = get_pool(domain)
    model = GraphPruner.from_pool(pool, embed=_fake_embed)
    with torch.no_grad():
        for p in (model.keep_head[-1].weight, model.keep_head[-1].bias, model.edge_src.weight, model.edge_src.bias):
            p.zero_()
        model.keep_prior.fill_(-20.0)
        model.keep_prior[keep] = 20.0
        model.edge_prior.fill_(-20.0)
        for u, v in edges:
            model.edge_prior[u, v] = 20.0
    model.eval()
    return model


def _squad_dir(tmp_path: Path) -> tuple[Path, Path]:
    """A data dir with a three-question SQuAD dev file, and a stage-I record file holding the third task."""
    qas = [{"id": i, "question": q, "answers": [{"text": g, "answer_start": 0}]} for i, q, g in QUESTIONS]
    squad = {"data": [{"title": "SB50", "paragraphs": [{"context": PARAGRAPH, "qas": qas}]}]}
    path = tmp_path / "data" / "qa" / "squad_v1.1" / "dev-v1.1.half_A.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(squad))
    record = StageRecord(task=f"{QUESTIONS[2][1]}\n\n{PARAGRAPH}", edge_weight=[[0.0] * 9] * 9, mask=[0.0] + [1.0] * 8)
    stage1 = save_records(tmp_path / "stage1_general_test.json", [record])
    return tmp_path / "data", stage1


def test_methods_side_by_side_with_exact_metrics(tmp_path) -> None:
    data_dir, stage1 = _squad_dir(tmp_path)
    model = RecordingModel("Denver Broncos", prompt_tokens=10)  # 10 prompt + 2 completion tokens per call
    result = evaluate_agents(
        model,
        "squad",
        data_dir=data_dir,
        pruner=_pruner("general", keep=[1, 3], edges=[(1, 3)]),
        stage1_paths=[stage1],
        concurrency=4,
    )
    m = result.metrics
    calls = {"single": 1, "chain": 9, "full": 27, "random": 2, "agp": 2}  # full: 9 agents x 3 rounds
    for method, n in calls.items():
        assert m[f"{method}.llm_calls"] == n
        assert m[f"{method}.tokens"] == 12 * n
        assert m[f"{method}.accuracy"] == pytest.approx(0.5)  # F1 1 on q-win, 0 on q-lose
        assert m[f"{method}.error_rate"] == 0.0 and m[f"{method}.seconds"] >= 0.0
    assert m["agp.agents_kept"] == 2
    assert len(model.calls) == 2 * sum(calls.values())
    rows = {(r["id"], r["method"]): r for r in result.items}
    assert rows[("q-win", "agp")]["agents"] == [1, 3] and rows[("q-win", "agp")]["edges"] == [[1, 3]]
    assert rows[("q-win", "full")]["rounds"] == 3 and rows[("q-win", "chain")]["agents"] == list(range(9))
    assert all(len(rows[(i, "random")]["agents"]) == 2 for i in ("q-win", "q-lose"))
    assert [r["method"] for r in result.items] == [m for m in METHODS for _ in range(2)]


def test_stage1_tasks_are_never_evaluated(tmp_path) -> None:
    data_dir, stage1 = _squad_dir(tmp_path)
    model = RecordingModel("Denver Broncos")
    result = evaluate_agents(
        model, "squad", data_dir=data_dir, methods=("single",), stage1_paths=[stage1], concurrency=1
    )
    assert {r["id"] for r in result.items} == {"q-win", "q-lose"}
    assert result.config["n_excluded_stage1"] == 1 and result.config["n_items"] == 2
    assert not any(QUESTIONS[2][1] in user for _, user, _ in model.calls)
    # without the record file the same question is evaluated: the exclusion above came from it
    again = evaluate_agents(model, "squad", data_dir=data_dir, methods=("single",), stage1_paths=[], concurrency=1)
    assert {r["id"] for r in again.items} == {"q-win", "q-lose", "q-stage1"}


def test_pruned_agents_make_zero_calls(tmp_path) -> None:
    data_dir, stage1 = _squad_dir(tmp_path)
    pool = get_pool("general")
    model = RecordingModel("Denver Broncos")
    result = evaluate_agents(
        model, "squad", data_dir=data_dir, methods=("agp",), pruner=_pruner("general", keep=[4]), stage1_paths=[stage1]
    )
    assert len(model.calls) == 2 and result.metrics["agp.agents_kept"] == 1
    assert all(system.startswith(pool.roles[4].prompt) for system in model.roles_called())


def test_math_accuracy_limit_and_failed_runs(tmp_path) -> None:
    rows = [
        {"question": "Tom has 3 apples and gets 4 more. How many apples does he have?", "final_ans": "7"},
        {"question": "Ann has 5 pens and gets 3 more. How many pens does she have?", "final_ans": "8"},
        {"question": "A box holds 2 cats. How many cats are in 2 boxes?", "final_ans": "4"},
        {"question": "Unused: the limit stops before this item. How many?", "final_ans": "1"},
    ]
    path = tmp_path / "agp" / "multiarith_test.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(rows))

    def reply(system: str, user: str) -> str:
        if "cats" in user:
            raise RuntimeError("backend down")
        return "3 + 4 = 7. The answer is 7"

    result = evaluate_agents(
        RecordingModel(reply),
        "multiarith",
        data_dir=tmp_path,
        limit=3,
        methods=("single", "full", "agp"),
        pruner=_pruner("math", keep=[0]),
        stage1_paths=[],
    )
    m = result.metrics
    assert result.config["n_items"] == 3
    for method in ("single", "full", "agp"):
        assert m[f"{method}.accuracy"] == pytest.approx(1 / 3)  # right on item 1, wrong on 2, failed on 3
        assert m[f"{method}.error_rate"] == pytest.approx(1 / 3)
    assert m["full.llm_calls"] == 12  # 4 agents x 3 rounds, over the two runs that finished
    failed = [r for r in result.items if r.get("error")]
    assert len(failed) == 3 and all("backend down" in r["error"] and r["score"] == 0.0 for r in failed)


def test_bad_arguments_raise_request_errors(tmp_path) -> None:
    data_dir, _ = _squad_dir(tmp_path)
    with pytest.raises(UnknownMethodError):
        evaluate_agents(RecordingModel(), "squad", data_dir=data_dir, methods=("debate",))
    with pytest.raises(UnknownBenchmarkError):
        evaluate_agents(RecordingModel(), "mmlu", data_dir=data_dir)
    with pytest.raises(InvalidRequestError):
        evaluate_agents(RecordingModel(), "squad", data_dir=data_dir, limit=0)
    assert issubclass(UnknownMethodError, InvalidRequestError)


def test_accuracy_vs_tokens_plot(tmp_path) -> None:
    data_dir, stage1 = _squad_dir(tmp_path)
    result = evaluate_agents(
        RecordingModel("Denver Broncos"),
        "squad",
        data_dir=data_dir,
        methods=("single", "agp"),
        pruner=_pruner("general", keep=[0, 1]),
        stage1_paths=[stage1],
    )
    write_results(result, tmp_path / "out", plots=[plot_accuracy_vs_tokens])
    png = tmp_path / "out" / "accuracy_vs_tokens.png"
    assert png.stat().st_size > 1000
    assert "accuracy_vs_tokens.png" in (tmp_path / "out" / "report.md").read_text()


@pytest.mark.slow
@pytest.mark.data
def test_tiny_real_run_with_the_embedded_model(embedded_model) -> None:
    require_data("qa/squad_v1.1/dev-v1.1.half_A.json")
    result = evaluate_agents(embedded_model, "squad", limit=2, methods=("single", "agp"), concurrency=4)
    m = result.metrics
    assert result.config["n_items"] == 2 and len(result.items) == 4
    assert not any(r.get("error") for r in result.items)
    assert m["single.llm_calls"] == 1 and m["single.tokens"] > 100  # a paragraph is in every prompt
    assert 1 <= m["agp.agents_kept"] <= 9 and m["agp.llm_calls"] == m["agp.agents_kept"]
    assert all(0.0 <= m[f"{k}.accuracy"] <= 1.0 for k in ("single", "agp"))


def _cli(*args: str, cwd: Path | None = None, timeout: float = 900) -> subprocess.CompletedProcess:
    """`prunekit eval agents ...` in a fresh interpreter, as a user runs it."""
    command = [sys.executable, "-c", "from prunekit.app.cli import main; main()", "eval", "agents", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, cwd=cwd or REPO)


@pytest.mark.parametrize(
    ("args", "code", "fragment"),
    [
        (("--benchmark", "mmlu"), 2, "--benchmark"),
        (("--methods", "single,debate"), 2, "--methods"),
        (("--limit", "0"), 2, "--limit"),
        (("--pruner", "/nonexistent"), 2, "--pruner"),
        (("--data-dir", "/nonexistent"), 1, "is missing"),
    ],
)
def test_cli_bad_input_is_one_line_and_a_nonzero_exit(tmp_path, args, code, fragment) -> None:
    done = _cli(*args, "--out", str(tmp_path / "out"), timeout=120)
    lines = done.stderr.strip().splitlines()
    assert done.returncode == code, done.stderr
    assert len(lines) == 1 and lines[0].startswith("prunekit: error:") and fragment in lines[0]
    assert "Traceback" not in done.stderr and not (tmp_path / "out").exists()


@pytest.mark.slow
@pytest.mark.data
def test_cli_tiny_run_writes_results_report_and_plot(tmp_path) -> None:
    require_data("qa/squad_v1.1/dev-v1.1.half_A.json")
    out = tmp_path / "agents"
    done = _cli("--benchmark", "squad", "--limit", "1", "--methods", "single,agp", "--out", str(out), "--json")
    assert done.returncode == 0, done.stderr[-2000:]
    metrics = json.loads(done.stdout.strip().splitlines()[-1])  # --json: the metrics on the last line
    results = json.loads((out / "results.json").read_text())
    assert results["task"] == "agents-squad" and results["metrics"] == metrics
    assert results["config"]["n_items"] == 1 and results["config"]["methods"] == ["single", "agp"]
    assert metrics["single.llm_calls"] == 1 and metrics["agp.llm_calls"] == metrics["agp.agents_kept"] >= 1
    assert (out / "report.md").exists() and (out / "accuracy_vs_tokens.png").stat().st_size > 1000
