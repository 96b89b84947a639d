"""Margin-aware DPO: the loss against a hand computation, and two real LoRA steps on the embedded model."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from prunekit.decoding.errors import InvalidRequestError
from prunekit.nl2sql.dpo import DPOConfig, completion_logps, encode_pair, margin_dpo_loss, train_margin_dpo
from prunekit.nl2sql.synthesis import PreferencePair


def _hand_loss(pc: float, pr: float, rc: float, rr: float, margin: float, beta: float, alpha: float) -> float:
    h = (pc - rc) - (pr - rr)
    x = beta * h - alpha * math.log(margin)
    return -math.log(1.0 / (1.0 + math.exp(-x)))


def test_loss_matches_a_hand_computation() -> None:
    rows = [(-10.0, -12.0, -11.0, -11.5, 0.6), (-5.0, -4.0, -5.5, -3.0, 0.05), (-20.0, -20.0, -20.0, -20.0, 1.0)]
    pc, pr, rc, rr, m = (torch.tensor(col) for col in zip(*rows, strict=True))
    loss, h = margin_dpo_loss(pc, pr, rc, rr, m, beta=0.5, alpha=1.0)
    expected = [_hand_loss(*row, beta=0.5, alpha=1.0) for row in rows]
    assert loss.item() == pytest.approx(sum(expected) / 3, rel=1e-6)
    assert h.tolist() == pytest.approx([(-10 + 11) - (-12 + 11.5), (-5 + 5.5) - (-4 + 3), 0.0])
    # a margin of 1 adds nothing: plain DPO's log(2) at h = 0
    assert expected[2] == pytest.approx(math.log(2))


def test_alpha_zero_is_plain_dpo_and_small_margins_weigh_less() -> None:
    args = [torch.tensor([-1.0]), torch.tensor([-2.0]), torch.tensor([-1.5]), torch.tensor([-1.5])]
    plain, _ = margin_dpo_loss(*args, torch.tensor([0.1]), beta=0.2, alpha=0.0)
    assert plain.item() == pytest.approx(-math.log(1 / (1 + math.exp(-0.2 * 1.0))))
    small, _ = margin_dpo_loss(*args, torch.tensor([0.1]), beta=0.2, alpha=1.0)
    big, _ = margin_dpo_loss(*args, torch.tensor([0.9]), beta=0.2, alpha=1.0)
    assert small.item() < big.item() < plain.item() + 1e-9


def test_zero_margin_is_clamped_to_finite() -> None:
    loss, _ = margin_dpo_loss(*(torch.zeros(1) for _ in range(4)), torch.zeros(1), min_margin=1e-4)
    assert torch.isfinite(loss)


def test_config_is_checked() -> None:
    with pytest.raises(InvalidRequestError):
        DPOConfig(beta=0)
    with pytest.raises(InvalidRequestError):
        DPOConfig(optimizer="sgd")


@pytest.fixture
def one_thread():
    """One torch thread: on a shared CPU it is many times faster than two (see DPOConfig.torch_threads)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


PAIRS = [
    PreferencePair(
        [{"role": "user", "content": "Question: How many singers?\nWrite the next step."}],
        "Sub-question: How many singers are there?\nSQL: SELECT count(*) FROM singer",
        "Sub-question: Which concerts?\nSQL: SELECT * FROM concert",
        0.9,
        0.2,
    ),
    PreferencePair(
        [{"role": "user", "content": "Question: Names of singers?\nWrite the next step."}],
        "Sub-question: What are the names?\nSQL: SELECT name FROM singer",
        "Sub-question: ?\nSQL: SELECT age FROM stadium",
        0.8,
        0.3,
    ),
]


def test_two_lora_steps_on_the_embedded_model(tmp_path: Path, one_thread: None) -> None:
    from prunekit.decoding.backends.local import LocalModel

    local = LocalModel.embedded()  # a fresh copy: LoRA is injected into the model in place
    tok = local.tokenizer
    cfg = DPOConfig(
        lora_r=4, lora_alpha=8, batch_size=2, steps=2, warmup_steps=1, lr=1e-3, max_prompt_tokens=32, torch_threads=1
    )
    enc = encode_pair(tok, PAIRS[0], cfg)
    assert enc.chosen[-1] == tok.eos_token_id and len(enc.prompt) <= 32
    with torch.no_grad():
        base = completion_logps(local.model, [enc.prompt], [enc.chosen], tok.eos_token_id)
    policy, stats = train_margin_dpo(local.model, tok, PAIRS, tmp_path / "run", config=cfg, progress=False)
    assert stats.steps == 2 and len(stats.losses) == 2
    assert all(math.isfinite(x) for x in stats.losses)
    # first step: adapters start as the identity (B = 0), so h = 0 and the loss is -log sigmoid(-log margin)
    first = sum(-math.log(1 / (1 + math.exp(math.log(p.margin)))) for p in PAIRS) / 2
    assert stats.losses[0] == pytest.approx(first, rel=1e-3)
    lora_b = [p for n, p in policy.named_parameters() if "lora_B" in n]
    assert lora_b and any(p.abs().sum().item() > 0 for p in lora_b)  # the adapters moved
    assert (tmp_path / "run" / "adapter" / "adapter_model.safetensors").is_file()
    # the reference (adapters off) is the untouched base model
    ids = [enc.prompt]
    with torch.no_grad(), policy.disable_adapter():
        ref = completion_logps(policy, ids, [enc.chosen], tok.eos_token_id)
    with torch.no_grad():
        adapted = completion_logps(policy, ids, [enc.chosen], tok.eos_token_id)
    assert ref.item() == pytest.approx(base.item(), abs=1e-4)
    assert adapted.item() != pytest.approx(base.item(), abs=1e-6)


def test_training_resumes_from_its_checkpoint(tmp_path: Path, one_thread: None) -> None:
    from prunekit.decoding.backends.local import LocalModel

    small = {
        "lora_r": 4,
        "lora_alpha": 8,
        "batch_size": 1,
        "warmup_steps": 1,
        "max_prompt_tokens": 24,
        "torch_threads": 1,
    }
    local = LocalModel.embedded()
    _, first = train_margin_dpo(
        local.model, local.tokenizer, PAIRS, tmp_path, config=DPOConfig(steps=1, **small), progress=False
    )
    assert first.steps == 1
    more = DPOConfig(steps=2, **small)
    local = LocalModel.embedded()
    _, second = train_margin_dpo(local.model, local.tokenizer, PAIRS, tmp_path, config=more, progress=False)
    assert second.resumed_from == 1 and second.steps == 2 and len(second.losses) == 2
    assert second.losses[0] == first.losses[0]


def test_no_usable_pair_is_refused(tmp_path: Path) -> None:
    bad = [PreferencePair([{"role": "user", "content": "q"}], "a", "b", 0.2, 0.5)]
    with pytest.raises(InvalidRequestError):
        train_margin_dpo(object(), object(), bad, tmp_path)


def test_completion_logps_match_token_by_token_scoring(one_thread: None) -> None:
    from prunekit.decoding.backends.local import LocalModel

    local = LocalModel.embedded()
    prompts_ = [[1, 2, 3, 4, 5], [7, 8]]
    completions = [[10, 11], [12, 13, 14]]
    with torch.no_grad():
        batched = completion_logps(local.model, prompts_, completions, 0)
    singles = [sum(local.sequence_logprobs(p, c)) for p, c in zip(prompts_, completions, strict=True)]
    assert batched.tolist() == pytest.approx(singles, abs=1e-3)
