import json

import pytest
import torch
from safetensors import safe_open

from prunekit.context_pruner.model import WEIGHTS_DIR, PrunerConfig, check_weights, load_pretrained, save_pretrained
from tests.context_pruner.helpers import tiny_model


def test_forward_shapes():
    model, _ = tiny_model()
    ids = torch.randint(1000, 2000, (3, 11))
    token_logits, rerank = model(ids, torch.ones_like(ids), torch.zeros_like(ids))
    assert token_logits.shape == (3, 11, 2)
    assert rerank.shape == (3,)


def test_save_load_round_trip_fp16(tmp_path):
    model, _ = tiny_model()
    folder = save_pretrained(model, tmp_path / "w")
    with safe_open(str(folder / "model.safetensors"), "pt") as f:
        assert {f.get_tensor(k).dtype for k in f.keys()} == {torch.float16}  # noqa: SIM118 (safe_open is not iterable)
    loaded, tokenizer = load_pretrained(folder)
    ids = torch.randint(1000, 2000, (2, 9))
    with torch.no_grad():
        a = model(ids, torch.ones_like(ids))[0]
        b = loaded(ids, torch.ones_like(ids))[0]
    assert torch.allclose(a, b, atol=2e-2)  # fp16 storage
    assert tokenizer.cls_token_id is not None


def test_load_missing_folder_says_what_is_missing(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"model\.safetensors"):
        load_pretrained(tmp_path)


def test_shipped_weights_are_small_and_leave_out_the_frozen_embeddings():
    cfg = json.loads((WEIGHTS_DIR / "config.json").read_text())
    assert (WEIGHTS_DIR / "model.safetensors").stat().st_size < 50 * 2**20
    with safe_open(str(WEIGHTS_DIR / "model.safetensors"), "pt") as f:
        keys = set(f.keys())
    assert "token_head.weight" in keys and "rerank_head.weight" in keys
    assert cfg["freeze_word_embeddings"] and not any("word_embeddings" in k for k in keys)


def test_shipped_weights_refuse_a_different_base(tmp_path):
    cfg = json.loads((WEIGHTS_DIR / "config.json").read_text())
    cfg["embedding_fingerprint"] = 1.0
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    (tmp_path / "model.safetensors").symlink_to(WEIGHTS_DIR / "model.safetensors")
    with pytest.raises(ValueError, match="word embeddings"):
        load_pretrained(tmp_path)


def test_num_layers_out_of_range():
    from prunekit.context_pruner.model import PrunerModel
    from tests.context_pruner.helpers import TINY_ENCODER

    with pytest.raises(ValueError, match="num_layers"):
        PrunerModel.from_base(PrunerConfig(encoder_config=dict(TINY_ENCODER), num_layers=5))


def test_update_config_changes_fields_and_adds_provenance(tmp_path):
    model, _ = tiny_model()
    folder = save_pretrained(model, tmp_path / "w")
    from prunekit.context_pruner.model import update_config

    update_config(folder, extra={"recipe": "r.json"}, keep_logit_bias=0.5)
    update_config(folder, extra={"note": "second"})
    cfg = json.loads((folder / "config.json").read_text())
    assert cfg["keep_logit_bias"] == 0.5 and cfg["extra"] == {"recipe": "r.json", "note": "second"}
    assert load_pretrained(folder)[0].cfg.keep_logit_bias == 0.5


def test_check_weights_names_the_two_files_and_the_input(tmp_path):
    from prunekit.context_pruner.errors import PrunerWeightsError

    assert check_weights(WEIGHTS_DIR) == WEIGHTS_DIR
    (tmp_path / "config.json").write_text("{}")  # a config alone is not weights
    expected = r"no pruner weights in .* \(config\.json \+ model\.safetensors\)"
    with pytest.raises(PrunerWeightsError, match=expected) as err:
        check_weights(tmp_path, argument="weights")
    assert err.value.argument == "weights"
