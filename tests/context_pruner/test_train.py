import json

import torch

from context_pruner.pruner import ContextPruner
from context_pruner.train import TrainConfig, train
from tests.context_pruner.helpers import TINY_ENCODER, write_hotpot_hf, write_squad


def _config(tmp_path, **kw) -> TrainConfig:
    data = (str(write_hotpot_hf(tmp_path / "train.jsonl")), str(write_squad(tmp_path / "train_squad.json")))
    return TrainConfig(
        data=data, out_dir=str(tmp_path / "run"), encoder_config=dict(TINY_ENCODER), num_layers=None,
        max_length=64, batch_size=2, checkpoint_every=1, label_weight=1.0, **kw,
    )  # fmt: skip


def test_train_writes_loadable_weights_and_resumes(tmp_path):
    torch.manual_seed(0)
    first = train(_config(tmp_path, max_steps=1), progress=False)
    ckpt = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)
    assert ckpt["step"] == 1
    final = train(_config(tmp_path), progress=False)  # resumes at step 1 and runs to the end
    ckpt = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)
    assert ckpt["step"] > 1
    assert final == first
    assert json.loads((final / "config.json").read_text())["extra"]["steps"] == ckpt["step"]
    pruner = ContextPruner(final, quantize=False)
    assert len(pruner.prune("Where is the Louvre?", ["The Louvre is in Paris. Cats purr."])) == 1


def test_resuming_with_other_data_is_refused(tmp_path):
    train(_config(tmp_path, max_steps=1), progress=False)
    other = _config(tmp_path)
    other.lr = 1.0
    try:
        train(other, progress=False)
    except ValueError as err:
        assert "different run" in str(err)
    else:
        raise AssertionError("a checkpoint of another run was resumed")


def test_loss_goes_down_on_a_repeated_batch(tmp_path):
    torch.manual_seed(0)
    cfg = _config(tmp_path, epochs=6, lr=3e-3, warmup_ratio=0.0)
    train(cfg, progress=False)
    # the token head must have learnt the gold sentence of the fixture
    pruner = ContextPruner(tmp_path / "run" / "weights", quantize=False)
    r = pruner.prune(
        "Which city is the Eiffel Tower in?", ["The Eiffel Tower is a lattice tower. It is located in Paris, France."]
    )[0]
    assert r.sentence_probs[1] > r.sentence_probs[0]


def test_second_stage_starts_from_trained_weights(tmp_path):
    first = train(_config(tmp_path, max_steps=1), progress=False)
    cfg = _config(tmp_path, max_steps=1, init_weights=str(first))
    cfg.out_dir = str(tmp_path / "stage2")
    second = train(cfg, progress=False)
    assert second != first and (second / "model.safetensors").exists()


def test_a_recipe_file_sets_the_fields_and_refuses_unknown_names(tmp_path):
    import pytest

    recipe = tmp_path / "stage.json"
    recipe.write_text(json.dumps({"_comment": "why", "data": ["a.json"], "lr": 5e-5, "squad_held_out_every": 5}))
    cfg = TrainConfig.from_json(recipe, out_dir="elsewhere")
    assert cfg.data == ("a.json",) and cfg.lr == 5e-5 and cfg.squad_held_out_every == 5 and cfg.out_dir == "elsewhere"
    recipe.write_text(json.dumps({"lr": 1e-4, "learning_rate": 1e-4}))
    with pytest.raises(ValueError, match="unknown TrainConfig fields \\['learning_rate'\\]"):
        TrainConfig.from_json(recipe)
    recipe.write_text(json.dumps({"lr": "fast"}))
    with pytest.raises(ValueError, match="lr: Input should be a valid number"):
        TrainConfig.from_json(recipe)
    recipe.write_text("[1, 2]")
    with pytest.raises(ValueError, match="JSON object"):
        TrainConfig.from_json(recipe)


def test_shipped_recipes_are_valid():
    from pathlib import Path

    recipes = sorted((Path(__file__).parents[2] / "context_pruner" / "recipes").glob("*.json"))
    assert recipes
    for recipe in recipes:
        TrainConfig.from_json(recipe)


def test_a_later_stage_keeps_the_provenance_of_the_one_it_started_from(tmp_path):
    first = train(_config(tmp_path, max_steps=1), progress=False)
    cfg = _config(tmp_path, max_steps=1, init_weights=str(first))
    cfg.out_dir = str(tmp_path / "stage2")
    second = train(cfg, progress=False)
    extra = json.loads((second / "config.json").read_text())["extra"]
    assert extra["init_weights"]["path"] == str(first)
    assert extra["init_weights"]["extra"]["train_files"] == ["train.jsonl", "train_squad.json"]
