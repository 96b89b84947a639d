import json

import torch

from prunekit.context_pruner.pruner import ContextPruner
from prunekit.context_pruner.train import TrainConfig, train
from tests.context_pruner.helpers import TINY_ENCODER, write_hotpot_hf, write_squad


def _config(tmp_path, **kw) -> TrainConfig:
    data = (str(write_hotpot_hf(tmp_path / "train.jsonl")), str(write_squad(tmp_path / "train_squad.json")))
    kw.setdefault("data_root", str(tmp_path))  # the tests own their data: a fresh clone has no benchmark folder
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
    pruner = ContextPruner(final, precision="fp32")
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
    pruner = ContextPruner(tmp_path / "run" / "weights", precision="fp32")
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


def test_a_smaller_student_distils_from_its_teacher(tmp_path):
    from prunekit.context_pruner.model import first_layers, load_pretrained

    torch.manual_seed(0)
    teacher = train(_config(tmp_path, max_steps=2), progress=False)  # TINY_ENCODER: 2 layers
    cfg = _config(tmp_path, max_steps=2, init_weights=str(teacher), teacher_weights=str(teacher))
    cfg.num_layers, cfg.out_dir = 1, str(tmp_path / "student")
    student_dir = train(cfg, progress=False)
    saved = json.loads((student_dir / "config.json").read_text())
    assert saved["num_layers"] == 1 and saved["extra"]["teacher"].startswith(f"distilled from {teacher}")
    student, _ = load_pretrained(student_dir)
    assert len(student.encoder.encoder.layer) == 1
    # where the student starts: the teacher's first layer, embeddings and heads, unchanged
    big, _ = load_pretrained(teacher)
    small = first_layers(big, 1)
    for name, tensor in small.state_dict().items():
        assert torch.equal(tensor, big.state_dict()[name]), name
    assert ContextPruner(student_dir, precision="fp32").prune("Where is the Louvre?", ["It is in Paris."])


def test_soft_token_loss_is_lowest_at_the_teachers_own_logits():
    from prunekit.context_pruner.encoding import IGNORE
    from prunekit.context_pruner.train import _soft_token_loss

    torch.manual_seed(0)
    teacher = torch.randn(2, 5, 2)
    labels = torch.tensor([[IGNORE, 1, 0, 1, IGNORE], [IGNORE, 0, 0, IGNORE, IGNORE]])
    at_teacher = _soft_token_loss(teacher.clone().requires_grad_(), labels, teacher, soft_weight=1.0)
    for _ in range(5):
        other = teacher + torch.randn(2, 5, 2)
        assert _soft_token_loss(other, labels, teacher, soft_weight=1.0) > at_teacher
    # soft_weight 0 is the gold cross-entropy on the labelled tokens
    gold = torch.nn.functional.cross_entropy(teacher.reshape(-1, 2), labels.reshape(-1), ignore_index=IGNORE)
    torch.testing.assert_close(_soft_token_loss(teacher, labels, teacher, soft_weight=0.0), gold)


def test_the_pipeline_refuses_evaluation_splits_before_training(tmp_path):
    """The leakage guard is the core's: the Python API refuses what `prunekit train pruner` refuses."""
    import pytest

    from prunekit.context_pruner.errors import EvaluationSplitError, PrunerWeightsError, TrainingDataError
    from prunekit.context_pruner.train import train_validate_calibrate
    from prunekit.decoding.errors import LeakageError

    config = _config(tmp_path)
    with pytest.raises(EvaluationSplitError, match=r"test\.jsonl is an evaluation split: calibrate") as err:
        train_validate_calibrate(config, "qa/hotpotqa/test.jsonl")
    assert isinstance(err.value, LeakageError) and err.value.argument == "calibration_file"
    leaky = TrainConfig(data=(str(tmp_path / "dev.json"),), data_root=str(tmp_path), out_dir=str(tmp_path / "run"))
    with pytest.raises(EvaluationSplitError, match=r"dev\.json is an evaluation split: train") as err:
        train_validate_calibrate(leaky, tmp_path / "train.jsonl")
    assert err.value.argument == "config.data"
    with pytest.raises(PrunerWeightsError, match="teacher_weights: no pruner weights in") as err:
        train_validate_calibrate(_config(tmp_path, teacher_weights=str(tmp_path)), tmp_path / "train.jsonl")
    assert err.value.argument == "config.teacher_weights"
    with pytest.raises(TrainingDataError, match="does not exist") as err:
        train_validate_calibrate(config, "nowhere/train.jsonl")  # under config.data_root
    assert err.value.argument == "calibration_file"
    assert not (tmp_path / "run").exists()  # nothing was trained


def test_the_pipeline_trains_records_the_recipe_and_calibrates(tmp_path):
    from prunekit.context_pruner.train import train_validate_calibrate

    recipe = tmp_path / "recipe.json"
    recipe.write_text("{}")
    run = train_validate_calibrate(_config(tmp_path, max_steps=1), tmp_path / "train.jsonl", recipe=recipe,
                                   target_compression=0.5, progress=False)  # fmt: skip
    saved = json.loads((run.weights / "config.json").read_text())
    assert run.validation == {}  # nothing held out
    assert saved["keep_logit_bias"] == run.calibration.keep_logit_bias and run.calibration.questions == 2
    assert saved["extra"]["recipe"] == recipe.as_posix() and saved["extra"]["steps"] == 1
