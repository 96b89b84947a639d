"""Training entry points on a generated Spider-shaped folder: synthesis resumes, DPO reads its pairs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from prunekit.nl2sql.dpo import DPOConfig
from prunekit.nl2sql.retrieval import RetrievalError
from prunekit.nl2sql.schema import introspect_sqlite
from prunekit.nl2sql.synthesis import SearchConfig, load_pairs, read_done
from prunekit.nl2sql.train import synthesize, train_dpo
from tests.nl2sql.fakes import ScriptedModel
from tests.nl2sql.toydb import make_toy_db

GOLD = "SELECT count(*) FROM singer WHERE country = 'France'"


def _tables_entry(db: Path, db_id: str) -> dict:
    """A tables.json entry for the toy database, in Spider's format."""
    schema = introspect_sqlite(db)
    columns: list[list] = [[-1, "*"]]
    types, pks = ["text"], []
    for t_idx, table in enumerate(schema.tables):
        for col in table.columns:
            if col.primary_key:
                pks.append(len(columns))
            columns.append([t_idx, col.name])
            types.append("number" if "INT" in col.type or "REAL" in col.type else "text")
    return {
        "db_id": db_id,
        "table_names_original": [t.name for t in schema.tables],
        "column_names_original": columns,
        "column_types": types,
        "primary_keys": pks,
        "foreign_keys": [],
    }


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    (tmp_path / "database" / "toy").mkdir(parents=True)
    db = make_toy_db(tmp_path / "database" / "toy" / "toy.sqlite")
    rows = [
        {"db_id": "toy", "question": "How many singers are from France?", "query": GOLD},
        {"db_id": "toy", "question": "How many singers are there?", "query": "SELECT count(*) FROM singer"},
        {"db_id": "gone", "question": "Anything?", "query": "SELECT 1"},
    ]
    (tmp_path / "train_spider_slim.json").write_text(json.dumps(rows))
    (tmp_path / "tables.json").write_text(json.dumps([_tables_entry(db, "toy")]))
    return tmp_path


def scripted(messages, params) -> str:
    user = messages[-1]["content"]
    assert "CREATE TABLE singer" in user and "-- e.g." in user  # the schema with example values
    if params.temperature > 0:
        return "Sub-question: Which concerts?\nSQL: SELECT * FROM concert"  # a sampled step that gets pruned
    if "Steps so far: none" in user:
        return "Sub-question: Which singers are there?\nSQL: SELECT * FROM singer"
    target = user.split("Target SQL: ")[1].splitlines()[0]
    return f"Sub-question: What is the answer?\nSQL: {target}"


def test_synthesize_runs_resumes_and_skips_unknown_databases(data_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "out" / "traj.jsonl"
    model = ScriptedModel(scripted)
    cfg = SearchConfig(n_children=2, simulations=3)
    stats = synthesize(data_dir, out, model=model, limit=1, config=cfg, progress=False)
    assert stats["searched"] == 1 and stats["complete"] == 1 and stats["skipped_no_schema"] == 0
    stats = synthesize(data_dir, out, model=model, config=cfg, progress=False)
    assert stats["searched"] == 1 and stats["skipped"] == 1 and stats["skipped_no_schema"] == 1
    assert read_done(out) == {0, 1}
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert all(r["complete"] and r["trajectory"][-1][1] == r["gold"] for r in records)
    with pytest.raises(RetrievalError):
        synthesize(data_dir, out, model=model, train_file="dev.json")


def test_train_dpo_reads_pairs_from_trajectories(data_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "traj.jsonl"
    synthesize(data_dir, out, model=ScriptedModel(scripted), config=SearchConfig(n_children=2, simulations=2))
    pairs = load_pairs([out])
    assert pairs and all(p.margin > 0 and "FROM concert" in p.rejected for p in pairs)
    before = torch.get_num_threads()
    cfg = DPOConfig(lora_r=4, lora_alpha=8, batch_size=1, steps=1, max_prompt_tokens=24, torch_threads=1)
    stats = train_dpo([out], tmp_path / "dpo", config=cfg, progress=False)
    assert torch.get_num_threads() == before  # the thread setting is restored
    assert stats.steps == 1 and (tmp_path / "dpo" / "adapter" / "adapter_config.json").is_file()
    assert json.loads((tmp_path / "dpo" / "stats.json").read_text())["steps"] == 1


def _stage_one(folder: Path) -> Path:
    """A finished stage 1 for the toy data: its example file, and an adapter on the embedded model (peft's own
    initialisation, so stage 1 is the base model; what matters here is that every part runs for real)."""
    from peft import LoraConfig, get_peft_model

    from prunekit.decoding.backends.local import LocalModel
    from prunekit.nl2sql.prompts import direct_messages
    from prunekit.nl2sql.sft_data import SFTExample

    schema = "CREATE TABLE singer (\n  singer_id INT PRIMARY KEY,\n  name TEXT,\n  country TEXT,\n  age INT\n);"
    questions = [
        (0, "How many singers are from France?", GOLD),
        (1, "How many singers are there?", "SELECT count(*) FROM singer"),
    ]
    examples = [SFTExample(i, "toy", "direct", direct_messages(schema, q), sql) for i, q, sql in questions]
    folder.mkdir(parents=True)
    (folder / "sft_examples.jsonl").write_text("".join(json.dumps(e.to_dict()) + "\n" for e in examples))
    lora = LoraConfig(r=2, lora_alpha=4, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM")
    get_peft_model(LocalModel.embedded().model, lora).save_pretrained(folder / "adapter", safe_serialization=True)
    return folder


def test_the_preference_stage_mines_trains_and_stacks(data_dir: Path, tmp_path: Path) -> None:
    from prunekit.nl2sql.train import train_preference

    sft_dir = _stage_one(tmp_path / "sft")
    recipe = tmp_path / "dpo.json"
    recipe.write_text(
        json.dumps(
            {
                "_doc": "keys starting with _ are comments",
                "sft_dir": str(sft_dir),
                "prompts": 2,
                "formats": ["direct"],
                "format_weights": [1.0],
                "mining": {"samples": 2, "temperature": 1.5, "max_tokens_direct": 24},  # hot: wrong answers
                "dpo": {"lora_r": 2, "lora_alpha": 4, "target_modules": ["q_proj"], "batch_size": 2, "steps": 1},
            }
        )
    )
    out = tmp_path / "pref"
    summary = train_preference(data_dir, out, recipe=recipe, progress=False)
    assert summary["mining"]["mined"] == 2 and summary["pairs"] >= 1 and summary["dpo_steps"] == 1
    records = [json.loads(line) for line in (out / "pairs.jsonl").read_text().splitlines()]
    assert {r["gold"] for r in records} == {GOLD, "SELECT count(*) FROM singer"}
    stacked = Path(summary["adapter"])
    config = json.loads((stacked / "adapter_config.json").read_text())
    assert config["r"] == 4 and set(config["target_modules"]) == {"q_proj", "v_proj"}
    provenance = json.loads((stacked / "provenance.json").read_text())
    assert provenance["stage"] == "sft+dpo" and provenance["stage2"]["mining"]["pairs"] == summary["pairs"]
    # run again: nothing is mined twice, and the finished DPO run is not trained again
    again = train_preference(data_dir, out, recipe=recipe, progress=False)
    assert again["mining"]["mined"] == 0 and again["mining"]["skipped"] == 2 and again["dpo_steps"] == 1


def test_the_preference_stage_needs_a_finished_stage_one(data_dir: Path, tmp_path: Path) -> None:
    from prunekit.nl2sql.train import PreferenceRecipe, train_preference

    recipe = tmp_path / "dpo.json"
    recipe.write_text(json.dumps({"sft_dir": str(tmp_path / "nothing")}))
    with pytest.raises(RetrievalError, match="no finished stage 1"):
        train_preference(data_dir, tmp_path / "pref", recipe=recipe, progress=False)
    shipped = PreferenceRecipe.from_file(Path(__file__).parents[2] / "nl2sql" / "recipes" / "dpo.json")
    assert shipped.dpo.steps > 0 and shipped.mining.samples > 1
