"""Two LoRA adapters stacked into one: the stacked adapter computes what the two applied one after the other do."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from prunekit.decoding.backends.lora_merge import adapter_deltas
from prunekit.decoding.backends.lora_stack import stack_adapters
from prunekit.decoding.errors import InvalidRequestError


def tiny_llama() -> torch.nn.Module:
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=64,
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
    )
    return LlamaForCausalLM(config).eval()


def random_adapter(folder: Path, r: int, alpha: int, targets: list[str], seed: int) -> Path:
    """A LoRA adapter with random A and B (peft starts B at zero, which would make the test blind)."""
    from peft import LoraConfig, get_peft_model

    model = get_peft_model(tiny_llama(), LoraConfig(r=r, lora_alpha=alpha, target_modules=targets))
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_" in name:
                param.copy_(torch.randn(param.shape, generator=generator) * 0.3)
    model.save_pretrained(folder, safe_serialization=True)
    return folder


@pytest.fixture(scope="module")
def two_stages(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("stages")
    every = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    first = random_adapter(root / "first", 4, 8, every, seed=1)
    second = random_adapter(root / "second", 2, 8, ["q_proj", "v_proj"], seed=2)  # other rank, scale, modules
    return first, second


def test_the_stacked_adapter_computes_both_stages(two_stages, tmp_path: Path) -> None:
    from peft import PeftModel

    first, second = two_stages
    stacked = stack_adapters(first, second, tmp_path / "stacked", dtype=torch.float32)
    ids = torch.tensor([[1, 5, 9, 3, 7, 2]])
    with torch.no_grad():
        sequential = PeftModel.from_pretrained(tiny_llama(), first).merge_and_unload()
        sequential = PeftModel.from_pretrained(sequential, second).merge_and_unload()
        expected = sequential(input_ids=ids).logits
        one = PeftModel.from_pretrained(tiny_llama(), stacked)(input_ids=ids).logits
        base = tiny_llama()(input_ids=ids).logits
    assert torch.allclose(one, expected, atol=1e-4)
    assert not torch.allclose(base, expected, atol=1e-2)  # the adapters do move the output
    config = json.loads((stacked / "adapter_config.json").read_text())
    assert config["r"] == 6 and config["lora_alpha"] == 6


def test_the_stacked_deltas_are_the_sum_of_both(two_stages, tmp_path: Path) -> None:
    first, second = two_stages
    stacked = adapter_deltas(stack_adapters(first, second, tmp_path / "stacked"))  # fp16 on disk
    one, two = adapter_deltas(first), adapter_deltas(second)
    assert set(stacked) == set(one) | set(two)
    for name, delta in stacked.items():
        total = one.get(name, 0.0) + two.get(name, 0.0)
        np.testing.assert_allclose(delta, total, atol=2e-2, rtol=1e-2)


def test_what_cannot_stack_is_refused(two_stages, tmp_path: Path) -> None:
    first, _ = two_stages
    with pytest.raises(InvalidRequestError, match="not a LoRA adapter folder"):
        stack_adapters(first, tmp_path, tmp_path / "out")
    dora = tmp_path / "dora"
    dora.mkdir()
    (dora / "adapter_model.safetensors").write_bytes((first / "adapter_model.safetensors").read_bytes())
    config = json.loads((first / "adapter_config.json").read_text())
    (dora / "adapter_config.json").write_text(json.dumps({**config, "use_dora": True}))
    with pytest.raises(InvalidRequestError, match="only plain LoRA"):
        stack_adapters(first, dora, tmp_path / "out")
