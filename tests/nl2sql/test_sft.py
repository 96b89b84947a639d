"""LearNAT's supervised stage on the embedded model: the loss, bounded micro-batches, a resumable run."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from prunekit.decoding.errors import InvalidRequestError
from prunekit.nl2sql import sft
from prunekit.nl2sql.sft import SFTConfig, encode_example, lm_loss, micro_batches, train_sft
from prunekit.nl2sql.sft_data import SFTExample


def _example(i: int, question: str, sql: str, fmt: str = "direct") -> SFTExample:
    messages = [
        {"role": "system", "content": "You translate questions about a database into one SQLite query."},
        {"role": "user", "content": f"Database:\nCREATE TABLE singer (name TEXT, age INT);\n\nQuestion: {question}"},
    ]
    return SFTExample(i, "toy", fmt, messages, sql)


EXAMPLES = [
    _example(0, "How many singers are there?", "SELECT count(*) FROM singer"),
    _example(1, "What are the names of singers older than 30?", "SELECT name FROM singer WHERE age > 30"),
    _example(2, "What is the average age?", "SELECT avg(age) FROM singer"),
    _example(
        3, "Oldest singer?", "Sub-question 1: ...\nSQL: SELECT name FROM singer ORDER BY age DESC LIMIT 1", "decompose"
    ),
]
TINY = SFTConfig(
    lora_r=2,
    lora_alpha=4,
    lora_dropout=0.0,
    batch_size=2,
    steps=3,
    warmup_steps=1,
    lr=1e-3,
    checkpoint_every=1,
    precision="fp32",
    torch_threads=1,
    micro_batch_tokens=64,
    keep_adapters=(2,),
)


@pytest.fixture(scope="module")
def local():
    from prunekit.decoding.backends.local import LocalModel

    return LocalModel.embedded()


def _fresh_model() -> tuple:
    """A newly loaded embedded model and its tokenizer, from one load: LoRA is injected into the model in place."""
    from prunekit.decoding.backends.local import LocalModel

    loaded = LocalModel.embedded()
    return loaded.model, loaded.tokenizer


def test_micro_batches_keep_every_example_within_the_token_bound() -> None:
    batch = [([1] * n, [2] * 5) for n in (40, 3, 20, 90, 10)]
    groups = micro_batches(batch, 64)
    assert sorted(len(p) for g in groups for p, _ in g) == [3, 10, 20, 40, 90]
    for group in groups:
        longest = max(len(p) + len(a) for p, a in group)
        assert len(group) == 1 or len(group) * longest <= 64


def test_the_loss_is_the_answer_tokens_negative_log_likelihood(local) -> None:
    batch = [encode_example(local.tokenizer, e, TINY) for e in EXAMPLES[:2]]
    assert batch[0][1][-1] == local.tokenizer.eos_token_id
    with torch.no_grad():
        summed, n = lm_loss(local.model, batch, local.tokenizer.eos_token_id)
        expected, count = 0.0, 0
        for prompt, answer in batch:  # transformers' own loss, one unpadded example at a time
            ids = torch.tensor([prompt + answer])
            labels = torch.tensor([[-100] * len(prompt) + answer])
            expected += local.model(input_ids=ids, labels=labels).loss.item() * len(answer)
            count += len(answer)
    assert n == count and summed.item() == pytest.approx(expected, rel=1e-4)


def test_config_is_checked(tmp_path: Path) -> None:
    with pytest.raises(InvalidRequestError):
        SFTConfig(formats=("direct", "poems"), format_weights=(1.0, 1.0))
    with pytest.raises(InvalidRequestError):
        SFTConfig(precision="fp8")  # type: ignore[arg-type]
    recipe = tmp_path / "r.json"
    recipe.write_text('{"_doc": "a note", "steps": 7, "formats": ["direct"], "format_weights": [1.0]}')
    assert SFTConfig.from_file(recipe).steps == 7 and SFTConfig.from_file(recipe).formats == ("direct",)


def test_a_stopped_run_resumes_where_it_stopped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:

    whole = train_sft(
        *_fresh_model(),
        EXAMPLES,
        tmp_path / "a",
        config=TINY,
        progress=False,
    )
    assert whole.steps == 3 and all(math.isfinite(x) for x in whole.losses)
    assert (tmp_path / "a" / "adapter" / "adapter_model.safetensors").is_file()
    assert "recipe" in (tmp_path / "a" / "adapter" / "provenance.json").read_text()
    kept = json.loads((tmp_path / "a" / "adapter-step2" / "provenance.json").read_text())
    assert kept["stats"]["steps"] == 2  # the adapter kept on the way, to choose on held-out databases

    real_lr = sft._lr_at

    def stop_at_third_step(step: int, config: SFTConfig) -> float:
        if step == 2:
            raise KeyboardInterrupt  # the user stops the run after two checkpointed steps
        return real_lr(step, config)

    monkeypatch.setattr(sft, "_lr_at", stop_at_third_step)
    with pytest.raises(KeyboardInterrupt):
        train_sft(
            *_fresh_model(),
            EXAMPLES,
            tmp_path / "b",
            config=TINY,
            progress=False,
        )
    monkeypatch.setattr(sft, "_lr_at", real_lr)
    resumed = train_sft(
        *_fresh_model(),
        EXAMPLES,
        tmp_path / "b",
        config=TINY,
        progress=False,
    )
    assert resumed.steps == 3 and len(resumed.segments) == 2  # one wall-time record per run
    assert resumed.losses == pytest.approx(whole.losses, rel=1e-3)  # same data order, same optimizer state
    with pytest.raises(InvalidRequestError, match="another recipe"):
        train_sft(
            *_fresh_model(),
            EXAMPLES,
            tmp_path / "b",
            config=SFTConfig(**{**TINY.__dict__, "lr": 5e-4}),
            progress=False,
        )
