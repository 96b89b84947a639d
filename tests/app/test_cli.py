"""The `prunekit` command in a subprocess: one-line errors with non-zero exits, real answers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import require_data, require_llamacpp

PRUNEKIT = [sys.executable, "-c", "from prunekit.app.cli import main; main()"]


def run(*args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "COLUMNS": "200"}
    return subprocess.run([*PRUNEKIT, *args], capture_output=True, text=True, timeout=timeout, env=env)


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["bogus"], "No such command"),
        (["chat", "--max-tokens", "0", "hi"], "--max-tokens"),
        (["chat", "--backend", "nope", "hi"], "--backend"),
        (["chat", "--frequency-penalty", "3", "hi"], "--frequency-penalty"),
        (["chat", "--repetition-penalty", "0", "hi"], "--repetition-penalty"),
        (["eval", "chat", "--data", "/does/not/exist.jsonl"], "does not exist"),
        (["eval", "chat", "--repetition-penalty", "2.5"], "--repetition-penalty"),
        (["chat", ""], "empty"),
        (["eval", "nq", "--data", "/does/not/exist.jsonl"], "does not exist"),
        (["eval", "nq", "--limit", "-3"], "--limit"),
        (["serve", "--port", "70000"], "--port"),
        (["bench", "decode", "--max-tokens", "2"], "--max-tokens"),
        (["sql", "--db", "/does/not/exist.sqlite", "How many?"], "--db"),
        (["sql", "--db", __file__, "  "], "empty"),
        (["sql", "--db", __file__, "How many?"], "not a readable SQLite database"),
        (["prune", "--question", "why?", sys.executable], "is not UTF-8 text"),
        (["bench", "prune", "--tokens", "16"], "--tokens"),
        (["eval", "spider", "--data", "/nope"], "dev.json"),
        (["eval", "spider", "--methods", "gold,oracle"], "--methods"),
        (["eval", "spider", "--seed", "-1"], "--seed"),
        (["eval", "decoding", "--task", "poetry"], "--task"),
        (["eval", "rag", "--data", "/does/not/exist.jsonl"], "does not exist"),
        (["train", "nl2sql"], "--synthesize"),
        (["train", "nl2sql", "--dpo", "--trajectories", "/nope.jsonl"], "--synthesize first"),
        (["train", "nl2sql", "--sft", "--dpo"], "exactly one"),
        (["train", "nl2sql", "--sft", "--preference"], "exactly one"),
        (["train", "nl2sql", "--preference", "--recipe", "/nope.json"], "does not exist"),
        (["train", "nl2sql", "--sft", "--data", "/nope"], "train_spider_slim.json"),
        (["eval", "spider", "--split", "train"], "held-out databases"),
        (["eval", "spider", "--split", "test"], "--split"),
        (["eval", "spider", "--adapter", "/nope/adapter"], "holds no LoRA adapter"),
        (["eval", "spider", "--adapter", "none,none"], "distinct adapters"),
        (["sql", "How many?", "--db", __file__, "--adapter", "/nope"], "holds no LoRA adapter"),
        (["bench", "load", "--url", "http://127.0.0.1:9", "--seconds", "1"], "127.0.0.1:9"),
        (["train", "pruner", "--calibrate-only", "/nope"], "no pruner weights"),
        (["train", "pruner", "--calibration-data", "qa/hotpotqa/test.jsonl"], "evaluation split"),
        (["train", "pruner", "--recipe", "/nope.json"], "cannot read the recipe"),
        (["train", "guidance", "--task", "poetry"], "poetry"),
        (["train", "guidance", "--weights", "a,b"], "--weights"),
        (["train", "guidance", "--weights", "0,1"], "positive"),
        (["train", "guidance", "--weights", "nan,1"], "positive"),
        (["train", "guidance", "--hmm", "/nope"], "no HMM"),
        (["train", "guidance", "--model", __file__], "this is the embedded model's"),
        (["train", "hmm", "--model", __file__], "its own folder"),
        (["eval", "decoding", "--model", "/nope.gguf"], "does not exist"),
        (["eval", "decoding", "--model", __file__], "neither a .gguf file nor a transformers model folder"),
        (["eval", "decoding", "--hmm", "/nope"], "no HMM in /nope"),
        (["bench", "decoding", "--model", "/nope.gguf"], "does not exist"),
        (["eval", "decoding", "--candidate-gap", "-1"], "--candidate-gap"),
        (["eval", "qa", "--pruner", "/nope", "--no-answer"], "no pruner weights in /nope"),
        (["bench", "prune", "--pruner", "/nope"], "no pruner weights in /nope"),
    ],
)
def test_bad_arguments_give_one_line_and_a_non_zero_exit(args, fragment):
    done = run(*args)
    assert done.returncode != 0
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("prunekit: error:") and fragment in lines[0]
    assert "Traceback" not in done.stderr


def test_a_bad_setting_names_the_variable():
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PRUNEKIT_PORT": "abc"}
    done = subprocess.run([*PRUNEKIT, "serve"], capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode != 0 and "Traceback" not in done.stderr
    assert "PRUNEKIT_PORT" in done.stderr and done.stderr.strip().startswith("prunekit: error:")


def test_prune_reads_a_null_question_as_missing():
    done = subprocess.run(
        [*PRUNEKIT, "prune"],
        input=json.dumps({"question": None, "contexts": ["Paris is in France."]}),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode != 0 and "give the question" in done.stderr and "Traceback" not in done.stderr


def test_help_lists_the_commands():
    done = run("--help")
    assert done.returncode == 0
    for command in ("serve", "chat", "agents", "prune", "ingest", "sql", "bench", "eval", "train"):
        assert command in done.stdout


def test_chat_one_shot_with_the_embedded_model():
    done = run("chat", "What is 2+2?", "--max-tokens", "24")
    assert done.returncode == 0, done.stderr
    assert "4" in done.stdout


def test_chat_with_a_frequency_penalty_repeats_less():
    # the loop guard off: it alone already cuts this answer to four yeses
    question = ["chat", "Repeat the word yes ten times.", "--max-tokens", "24", "--repetition-penalty", "1"]
    plain, penalised = run(*question), run(*question, "--frequency-penalty", "2")
    assert plain.returncode == penalised.returncode == 0, penalised.stderr
    assert penalised.stdout.lower().count("yes") < plain.stdout.lower().count("yes")


def test_chat_guards_against_loops_by_default():
    from prunekit.eval.chat import repeated_ngram

    question = ["chat", "What is the capital of France?", "--max-tokens", "96"]
    guarded, plain = run(*question), run(*question, "--repetition-penalty", "1")
    assert guarded.returncode == plain.returncode == 0, guarded.stderr + plain.stderr
    assert not repeated_ngram(guarded.stdout), guarded.stdout
    assert repeated_ngram(plain.stdout), plain.stdout  # greedy alone: "la France, la France, ..."


def test_eval_chat_writes_results_for_both_methods(tmp_path: Path):
    out = tmp_path / "chat"
    done = run("eval", "chat", "--limit", "2", "--max-tokens", "16", "--out", str(out), "--json")
    assert done.returncode == 0, done.stderr
    figures = json.loads(done.stdout.strip().splitlines()[-1])
    assert {"guard.correct", "guard.repeated_4gram", "no_guard.correct", "no_guard.answer_tokens"} <= set(figures)
    assert (out / "results.json").is_file() and (out / "report.md").is_file()


def test_interactive_chat_reads_until_an_empty_line():
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    done = subprocess.run(
        [*PRUNEKIT, "chat", "--max-tokens", "8"],
        input="What is 2+2?\n\n",
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip()


def test_bench_decode_prints_json_last():
    done = run("bench", "decode", "--no-hf", "--max-tokens", "16", "--requests", "1", "--json")
    assert done.returncode == 0, done.stderr
    figures = json.loads(done.stdout.strip().splitlines()[-1])
    assert figures["llamacpp.single_tok_s"] > 0 and figures["process.rss_mb"] > 0


def test_eval_nq_writes_results(tmp_path: Path):
    from tests.conftest import require_data

    data = require_data("qa/nq_open/NQ-open.dev.jsonl")
    out = tmp_path / "nq"
    done = run("eval", "nq", "--data", str(data), "--limit", "4", "--out", str(out), "--json")
    assert done.returncode == 0, done.stderr
    metrics = json.loads(done.stdout.strip().splitlines()[-1])
    results = json.loads((out / "results.json").read_text())
    assert set(results) == {"task", "config", "environment", "metrics", "items"}
    assert results["metrics"] == metrics and len(results["items"]) == 4
    assert 0.0 <= metrics["closed_book.f1"] <= 1.0
    assert (out / "report.md").is_file() and (out / "metrics.png").is_file()


def test_eval_spider_seed_draws_another_sample(tmp_path: Path):
    from tests.conftest import require_data

    data = require_data("spider/dev.json").parent
    questions = {}
    for seed in ("0", "1"):
        out = tmp_path / seed
        args = ("eval", "spider", "--data", str(data), "--methods", "gold", "--limit", "6", "--seed", seed)
        done = run(*args, "--out", str(out), "--json")
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout.strip().splitlines()[-1])["gold.ex"] == 1.0
        results = json.loads((out / "results.json").read_text())
        assert results["config"]["seed"] == int(seed) and len(results["items"]) == 6
        questions[seed] = {item["question"] for item in results["items"]}
    assert questions["0"] != questions["1"]


def test_ingest_files_and_folders(tmp_path: Path):
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "a.txt").write_text("The Eiffel Tower is in Paris. It was finished in 1889.")
    (docs / "b.html").write_text("<html><body><p>Qdrant stores vectors.</p></body></html>")
    (docs / "skip.bin").write_bytes(b"\x00")
    env = {**os.environ, "PRUNEKIT_DATA_DIR": str(tmp_path / "data"), "HF_HUB_OFFLINE": "1"}
    done = subprocess.run(
        [*PRUNEKIT, "ingest", str(docs), "--collection", "demo"], capture_output=True, text=True, env=env, timeout=300
    )
    assert done.returncode == 0, done.stderr
    assert "ingested 2 chunks from 2 files into collection 'demo'" in done.stderr
    assert (tmp_path / "data" / "qdrant").is_dir()


def test_sql_answers_on_a_real_database_without_writing_it(tmp_path):
    import hashlib

    from tests.nl2sql.toydb import make_toy_db

    db = make_toy_db(tmp_path / "toy.sqlite")
    before = hashlib.sha256(db.read_bytes()).hexdigest()
    done = run("sql", "--db", str(db), "What is the average age of singers?", "--json")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert "avg(age)" in result["sql"].lower() and result["rows"] and result["llm_calls"] >= 1
    assert hashlib.sha256(db.read_bytes()).hexdigest() == before


def test_train_pruner_from_a_recipe_validates_on_held_out_articles_and_calibrates(tmp_path):
    from prunekit.context_pruner.data import is_held_out_article
    from tests.context_pruner.helpers import TINY_ENCODER, write_hotpot_hf, write_squad_articles

    squad = write_squad_articles(tmp_path / "train_squad.json")
    write_hotpot_hf(tmp_path / "train.jsonl")
    every = next(n for n in range(2, 20) if any(is_held_out_article(f"Article {a}", n) for a in range(40)))
    recipe = tmp_path / "recipe.json"
    recipe.write_text(json.dumps({
        "data": [squad.name, "train.jsonl"], "encoder_config": TINY_ENCODER, "num_layers": None, "max_length": 64,
        "batch_size": 4, "squad_held_out_every": every, "label_weight": 1.0,
    }))  # fmt: skip
    export = tmp_path / "weights"
    done = run("train", "pruner", "--recipe", str(recipe), "--data-dir", str(tmp_path), "--out", str(tmp_path / "run"),
               "--export", str(export), "--max-steps", "2", "--calibration-data", "train.jsonl")  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "rerank recall@1" in done.stderr and "keep_logit_bias" in done.stderr
    extra = json.loads((export / "config.json").read_text())["extra"]
    held = extra["held_out_ranking"]
    assert held["file"] == squad.name and held["every"] == every and held["groups"] > 0
    assert 0.0 <= held["pruner_recall_at_1"] <= 1.0 and held["biencoder_recall_at_1"] > 0.5  # fruit names match
    assert "keep_logit_bias" in extra and extra["recipe"] == recipe.as_posix()


@pytest.mark.parametrize(
    ("recipe", "fragment"),
    [
        ({"data": ["qa/hotpotqa/test.jsonl"]}, "evaluation split"),
        ({"data": ["nowhere/train.json"]}, "does not exist"),
        ({"batch_size": "big"}, "batch_size"),
        ({"learning_rate": 1e-4}, "unknown TrainConfig fields"),
        ({"teacher_weights": "/nope"}, "teacher_weights: no pruner weights in /nope"),
        ({"init_weights": "/nope"}, "init_weights: no pruner weights in /nope"),
    ],
)
def test_a_bad_pruner_recipe_gives_one_line(tmp_path, recipe, fragment):
    path = tmp_path / "recipe.json"
    path.write_text(json.dumps(recipe))
    done = run("train", "pruner", "--recipe", str(path), "--out", str(tmp_path / "run"))
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert done.returncode != 0 and len(lines) == 1, done.stderr
    assert lines[0].startswith("prunekit: error:") and fragment in lines[0]


def test_bench_prune_measures_the_pruner_it_is_given(tmp_path):
    from prunekit.context_pruner.model import PrunerConfig, PrunerModel, save_pretrained
    from tests.context_pruner.helpers import TINY_ENCODER

    weights = save_pretrained(PrunerModel.from_base(PrunerConfig(encoder_config=dict(TINY_ENCODER), num_layers=1)),
                              tmp_path / "tiny")  # fmt: skip
    args = ("bench", "prune", "--pruner", str(weights), "--passages", "8", "--deberta", "0", "--json")
    done = run(*args, "--precision", "fp32")
    assert done.returncode == 0, done.stderr
    figures = json.loads(done.stdout.strip().splitlines()[-1])
    assert figures["num_layers"] == 1 and figures["passages_per_s"] > 0 and figures["precision"] == "fp32"
    compared = run(*args, "--compare-precisions")
    assert compared.returncode == 0, compared.stderr
    by_precision = json.loads(compared.stdout.strip().splitlines()[-1])["by_precision"]
    assert set(by_precision) == {"bf16", "int8", "fp32"} and all(f["tokens_per_s"] > 0 for f in by_precision.values())
    bad = run(*args, "--precision", "fp8")
    assert bad.returncode == 2 and "--precision: must be one of auto, bf16, int8, fp32" in bad.stderr


def test_deco_g_with_a_model_given_by_path(tmp_path: Path):
    """`train hmm --model` then `eval decoding --model --hmm`: the bring-your-own-model path, on the embedded
    weights given as a GGUF file (a tiny distillation: what is checked is the plumbing, not the HMM's quality)."""
    llamacpp = require_llamacpp()
    data = require_data("")
    gguf = str(llamacpp.prepare_fast_weights())
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "COLUMNS": "200", "PRUNEKIT_CACHE_DIR": str(tmp_path / "cache")}
    hmm = tmp_path / "hmm"
    train = [*PRUNEKIT, "train", "hmm", "--model", gguf, "--out", str(hmm), "--hidden", "4", "--sequences", "10",
             "--seq-len", "6", "--shard-size", "10", "--concurrency", "2", "--data-dir", str(data)]  # fmt: skip
    done = subprocess.run(train, capture_output=True, text=True, timeout=600, env=env)
    assert done.returncode == 0, done.stderr
    meta = json.loads((hmm / "config.json").read_text())["metadata"]
    assert meta["model"] == Path(gguf).stem and meta["samples"]["sequences"] == 10

    evaluate = [*PRUNEKIT, "eval", "decoding", "--task", "judge", "--limit", "2", "--methods", "hard_mask,decog",
                "--model", gguf, "--hmm", str(hmm), "--data-dir", str(data), "--out", str(tmp_path / "runs"),
                "--json"]  # fmt: skip
    done = subprocess.run(evaluate, capture_output=True, text=True, timeout=600, env=env)
    assert done.returncode == 0, done.stderr
    metrics = json.loads(done.stdout.strip().splitlines()[-1])
    assert metrics["hard_mask.compliance"] == metrics["decog.compliance"] == 1.0
    config = json.loads((tmp_path / "runs/judge/results.json").read_text())["config"]
    assert config["hmm_dir"] == str(hmm) and config["hmm_hidden_size"] == 4
