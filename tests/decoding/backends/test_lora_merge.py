"""A LoRA adapter merged into the embedded GGUF: llama.cpp then computes what transformers + peft compute."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from prunekit.decoding.backends.lora_merge import adapter_deltas, adapter_fingerprint, merge_lora_into_gguf
from prunekit.decoding.errors import InvalidRequestError

ALL_LINEAR = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


@pytest.fixture(scope="module")
def random_adapter(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, np.ndarray, list[int]]:
    """A LoRA adapter with random weights on every linear layer, and the last-position logits of transformers +
    peft on a prompt (the reference the merged GGUF must reproduce)."""
    from peft import LoraConfig, get_peft_model

    from prunekit.decoding.backends.local import LocalModel

    torch.manual_seed(0)
    local = LocalModel.embedded()  # a fresh copy: peft changes it in place
    config = LoraConfig(r=4, lora_alpha=8, target_modules=ALL_LINEAR, init_lora_weights=False)
    peft_model = get_peft_model(local.model, config)
    with torch.no_grad():
        for name, weight in peft_model.named_parameters():
            if "lora_" in name:
                weight.normal_(0, 0.05)
    folder = tmp_path_factory.mktemp("adapter") / "random"
    peft_model.save_pretrained(folder)
    ids = local.tokenizer("SELECT name FROM singer WHERE age > 30 ORDER BY").input_ids
    with torch.no_grad():
        logits = peft_model(torch.tensor([ids])).logits[0, -1].numpy()
    return folder, logits, ids


def test_deltas_cover_every_adapted_matrix(random_adapter) -> None:
    folder, _, _ = random_adapter
    deltas = adapter_deltas(folder)
    assert len(deltas) == 30 * 7
    assert deltas["blk.0.attn_k.weight"].shape == (192, 576)  # (out, in): 3 key heads of 64
    assert deltas["blk.29.ffn_down.weight"].shape == (576, 1536)
    assert len(adapter_fingerprint(folder)) == 12


def test_the_merged_gguf_computes_what_peft_computes(random_adapter, tmp_path: Path) -> None:
    from llama_cpp import Llama

    from prunekit.decoding.backends.embedded import embedded_gguf_path

    folder, reference, ids = random_adapter
    merged = merge_lora_into_gguf(embedded_gguf_path(), folder, tmp_path / "merged.gguf")

    def last_logits(path: Path) -> np.ndarray:
        llm = Llama(str(path), logits_all=True, verbose=False, n_ctx=128, n_threads=2)
        try:
            llm.eval(ids)
            return np.array(llm.scores[len(ids) - 1])
        finally:
            llm.close()

    with_adapter, base = last_logits(merged), last_logits(embedded_gguf_path())
    # the adapter moves the logits far; the merged model follows it (rows of q and k in llama.cpp's rope order)
    assert np.corrcoef(reference, base)[0, 1] < 0.99
    assert np.corrcoef(reference, with_adapter)[0, 1] > 0.999
    assert np.argmax(with_adapter) == np.argmax(reference)


def test_a_folder_that_is_not_a_lora_adapter_is_refused(tmp_path: Path, random_adapter) -> None:
    with pytest.raises(InvalidRequestError, match="not a LoRA adapter folder"):
        adapter_deltas(tmp_path)
    folder, _, _ = random_adapter
    dora = tmp_path / "dora"
    dora.mkdir()
    (dora / "adapter_model.safetensors").write_bytes((folder / "adapter_model.safetensors").read_bytes())
    config = json.loads((folder / "adapter_config.json").read_text())
    (dora / "adapter_config.json").write_text(json.dumps({**config, "use_dora": True}))
    with pytest.raises(InvalidRequestError, match="only plain LoRA"):
        adapter_deltas(dora)
