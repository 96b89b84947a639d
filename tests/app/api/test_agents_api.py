"""The AGP face: POST /v1/agents and `prunekit agents` run the pruner's team on the embedded model; `prunekit train
agp` fails in one line on bad input and trains stage II from a records file. Code a request carries (the issue's
doctest payload) never runs with code execution off (the default), and only inside bubblewrap with it on."""

from __future__ import annotations

import os
import subprocess
import sys

import httpx
import pytest

from prunekit.app.api.service import create_app
from prunekit.app.settings import Settings
from prunekit.graph_pruning.execute import CODE_NOT_EXECUTED_NOTE
from prunekit.graph_pruning.model import GraphPruner
from prunekit.graph_pruning.records import StageRecord, save_records
from tests.conftest import REPO, SERVICE_KEY, LiveServer
from tests.graph_pruning.fakes import RecordingModel
from tests.graph_pruning.test_sandbox import need_sandbox

PARAGRAPH = "The Eiffel Tower was completed in 1889 for the World's Fair in Paris."


def post(live_service, body):
    headers = {"Authorization": f"Bearer {SERVICE_KEY}"}
    return httpx.post(f"{live_service.url}/v1/agents", json=body, headers=headers, timeout=600)


def test_a_span_task_runs_the_chosen_team(live_service):
    response = post(
        live_service, {"task": "When was the Eiffel Tower completed?", "domain": "general", "context": PARAGRAPH}
    )
    assert response.status_code == 200, response.text
    run = response.json()
    assert run["agents_total"] == 9 and 1 <= run["agents_kept"] <= 9
    ran = {turn["agent"] for turn in run["turns"] if turn["agent"] >= 0}
    assert ran <= set(run["topology"]["agents"])  # pruned agents never ran
    assert run["agent_calls_avoided"] == (9 - run["agents_kept"]) * run["topology"]["rounds"]
    assert run["llm_calls"] == len(run["turns"]) and run["tokens"] > 0


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({"task": "", "domain": "math"}, "task"),
        ({"task": "x", "domain": "poetry"}, "domain"),
        ({"task": "Who?", "domain": "general"}, "give context"),
        ({"task": "x", "extra": 1}, "extra"),
    ],
)
def test_bad_agent_requests(live_service, body, fragment):
    response = post(live_service, body)
    assert response.status_code == 400 and fragment in response.json()["error"]["message"]


def _train_cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    command = [sys.executable, "-c", "from prunekit.app.cli import main; main()", "train", "agp", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=REPO, env=env)


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (("--stage", "1", "--domain", "math", "--benchmark", "squad"), "--benchmark"),
        (("--stage", "1", "--domain", "code"), "no stage-1 training set"),
        (("--stage", "2", "--domain", "general", "--records", "/nonexistent.json", "--no-agp-records"), "missing"),
        (("--stage", "2", "--domain", "poetry"), "poetry"),
    ],
)
def test_train_agp_bad_input_is_one_line(args, fragment):
    done = _train_cli(*args)
    lines = done.stderr.strip().splitlines()
    assert done.returncode != 0 and len(lines) == 1 and fragment in lines[0], done.stderr
    assert lines[0].startswith("prunekit: error:")


def test_eval_agents_refuses_a_folder_without_a_pruner(tmp_path):
    (tmp_path / "config.json").write_text("{}")  # a config alone is not a pruner: its weights are missing
    command = [sys.executable, "-c", "from prunekit.app.cli import main; main()", "eval", "agents"]
    done = subprocess.run([*command, "--pruner", str(tmp_path)], capture_output=True, text=True, timeout=600, cwd=REPO)
    lines = done.stderr.strip().splitlines()
    assert done.returncode != 0 and len(lines) == 1 and lines[0].startswith("prunekit: error:"), done.stderr
    assert "--pruner" in lines[0] and "holds no trained pruner (config.json + pruner.safetensors)" in lines[0]


@pytest.mark.slow
def test_train_agp_stage2_on_our_records_from_the_cli(tmp_path):
    """Stage II on a records file alone (no AGP records), k-fold by task, saved where --out says, with the note."""
    records = [
        StageRecord(
            task=f"Question {i} about {'rivers' if i % 2 else 'kings'}?\n\nA paragraph {i}.",
            edge_weight=[[0.0] * 9 for _ in range(9)],
            mask=[0.0 if a == (i % 2) else 1.0 for a in range(9)],
        )
        for i in range(10)
    ]
    path = save_records(tmp_path / "general_test.json", records)
    env = os.environ | {"XDG_CACHE_HOME": str(tmp_path / "cache")}  # the embedding cache and checkpoints
    args = ("--stage", "2", "--domain", "general", "--records", str(path), "--no-agp-records", "--folds", "2")
    done = _train_cli(*args, "--epochs", "2", "--out", str(tmp_path / "w"), "--note", "a test", env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    extra = GraphPruner.load(tmp_path / "w").config.extra
    assert extra["trained_on"] == ["general_test.json"] and extra["note"] == "a test"
    assert extra["heldout_protocol"].startswith("2-fold by task") and extra["records"]["heldout"] == 10
    assert {"keep_acc", "keep_all.keep_acc", "majority.keep_acc", "edge_acc"} <= set(extra["heldout_metrics"])


# ---------------------------------------------------------------------------------------------- code execution
PAYLOAD = (  # the request: a doctest that shells out, an import line prepended to every candidate
    "import os\n"
    "def add(a: int, b: int) -> int:\n"
    '    """Add two numbers.\n'
    "    >>> add(1, 2)\n"
    "    3\n"
    "    >>> __import__('os').system('id > out.txt')\n"
    "    0\n"
    '    """\n'
)
GOOD_ADD = "```python\ndef add(a, b):\n    return a + b\n```"


def _scripted_service(tmp_path, **settings) -> LiveServer:
    """The service on a scripted model (what the model says is not under test here), in `tmp_path`."""
    model = RecordingModel(GOOD_ADD)
    return LiveServer(create_app(Settings(data_dir=tmp_path / "data", **settings), model=model))


def test_code_is_not_executed_by_default(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with _scripted_service(tmp_path) as server:
        response = httpx.post(f"{server.url}/v1/agents", json={"task": PAYLOAD, "domain": "code"}, timeout=300)
        assert response.status_code == 200, response.text
        run = response.json()
        assert "return a + b" in run["answer"]
        assert run["code_executed"] is False and run["code_execution"] == "off"
        assert CODE_NOT_EXECUTED_NOTE in run["notes"]
        body = {"model": "prunekit-agents", "domain": "code", "messages": [{"role": "user", "content": PAYLOAD}]}
        chat = httpx.post(f"{server.url}/v1/chat/completions", json=body, timeout=300)
        assert chat.status_code == 200, chat.text
        assert chat.json()["prunekit"]["code_executed"] is False
    assert not (tmp_path / "out.txt").exists()  # nothing the request carried ran


def test_sandboxed_code_execution_contains_the_payload(tmp_path, monkeypatch):
    need_sandbox()
    monkeypatch.chdir(tmp_path)
    with _scripted_service(tmp_path, code_execution="sandbox") as server:
        response = httpx.post(f"{server.url}/v1/agents", json={"task": PAYLOAD, "domain": "code"}, timeout=300)
    assert response.status_code == 200, response.text
    run = response.json()
    assert run["code_executed"] is True and any("2/2 visible tests" in n for n in run["notes"])  # it ran, inside
    assert not (tmp_path / "out.txt").exists()


def test_sandbox_mode_without_bwrap_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # fault injection: no bwrap on PATH
    with _scripted_service(tmp_path, code_execution="sandbox") as server:
        response = httpx.post(f"{server.url}/v1/agents", json={"task": PAYLOAD, "domain": "code"}, timeout=300)
    assert response.status_code == 503, response.text  # the deployment lacks a part; the request is fine
    assert "apt-get install bubblewrap" in response.json()["error"]["message"]


def test_cli_code_execution_option(tmp_path):
    command = [sys.executable, "-c", "from prunekit.app.cli import main; main()", "agents", PAYLOAD, "--domain", "code"]
    env = os.environ | {"PATH": str(tmp_path)}  # no bwrap: the sandbox refuses before a model loads
    done = subprocess.run([*command, "--code-execution", "sandbox"], capture_output=True, text=True, env=env, cwd=REPO)
    lines = done.stderr.strip().splitlines()
    assert done.returncode != 0 and len(lines) == 1 and "apt-get install bubblewrap" in lines[0], done.stderr
    done = subprocess.run([*command, "--code-execution", "host"], capture_output=True, text=True, env=env, cwd=REPO)
    assert done.returncode != 0 and "--code-execution" in done.stderr
