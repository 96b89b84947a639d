"""Margin-aware DPO (training time): preference pairs of decomposition steps, weighted by their AST margin.

LearNAT (arXiv 2504.02327) trains the policy on pairs (chosen step w, rejected step l) from the
decomposition search with

    loss = -log sigmoid(beta * h - alpha * log(r_w - r_l)),
    h    = [log pi(w|x) - log ref(w|x)] - [log pi(l|x) - log ref(l|x)],

where r_w > r_l are the steps' AST rewards: a pair whose steps differ little (small margin, log < 0)
gets a positive offset, so its loss is already small and it pushes the policy less than a pair with a
clear winner. (alpha = 0 is plain DPO.)

Here the policy is the base model plus LoRA adapters (peft) and the reference is the same base with
the adapters switched off (`disable_adapter()`), so no second copy of the weights is held. Sequence
log-probabilities are summed over the completion tokens only (the prompt is masked). Checkpoints
(`<out>/checkpoint/`: the adapter as safetensors, the optimizer state, the step) make a run resumable;
the final adapter goes to `<out>/adapter/`.

Training runs one pair at a time with the gradients adding up (memory holds two sequences whatever the batch),
under bf16 autocast where the CPU computes bf16 natively. LearNAT's own run (Qwen2.5-Coder-7B, RMSprop, lr
5e-7, batch 4, 150 warm-up steps) belongs on a GPU; the shipped stage 2 (`train.train_preference`, on pairs
from `pair_mining`) trains a LoRA on the embedded model on two CPU cores.
"""

from __future__ import annotations

import json
import logging
import random
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from prunekit.decoding.errors import InvalidRequestError
from prunekit.nl2sql.sft import use_bf16
from prunekit.nl2sql.synthesis import PreferencePair

__all__ = [
    "DPOConfig",
    "DPOStats",
    "EncodedPair",
    "add_lora",
    "completion_logps",
    "encode_pair",
    "margin_dpo_loss",
    "train_margin_dpo",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DPOConfig:
    beta: float = 0.1
    alpha: float = 1.0  # weight of log(r_w - r_l); 0 gives plain DPO
    lr: float = 5e-5  # LoRA learns at a higher rate than LearNAT's full fine-tuning (5e-7)
    optimizer: str = "adamw"  # or "rmsprop" (LearNAT's)
    lora_r: int = 8
    lora_alpha: int = 16
    lora_dropout: float = 0.0
    target_modules: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "o_proj")
    batch_size: int = 4
    steps: int = 100
    warmup_steps: int = 10
    max_prompt_tokens: int = 768  # longer prompts keep their end (the steps so far and the request)
    max_completion_tokens: int = 128
    grad_clip: float = 1.0
    min_margin: float = 1e-4  # margins are clamped here so log() stays finite
    checkpoint_every: int = 50
    seed: int = 0
    # torch threads while training (None: leave torch's setting). On a CPU other jobs keep busy, one
    # thread is many times faster than two that wait for each other (measured here: 1.5 s vs 21 s a step).
    torch_threads: int | None = None
    precision: str = "auto"  # bf16 autocast where the CPU has bf16 instructions (`sft.use_bf16`), else fp32

    def __post_init__(self) -> None:
        if self.precision not in ("auto", "bf16", "fp32"):
            raise InvalidRequestError(f"precision must be auto, bf16 or fp32, got {self.precision!r}")
        if self.beta <= 0 or self.alpha < 0:
            raise InvalidRequestError(f"beta must be > 0 and alpha >= 0, got {self.beta}, {self.alpha}")
        if self.optimizer not in ("adamw", "rmsprop"):
            raise InvalidRequestError(f"optimizer must be 'adamw' or 'rmsprop', got {self.optimizer!r}")
        if self.batch_size < 1 or self.steps < 1 or self.lora_r < 1:
            raise InvalidRequestError("batch_size, steps and lora_r must be >= 1")


@dataclass
class DPOStats:
    steps: int = 0
    losses: list[float] = field(default_factory=list)
    reward_accuracy: list[float] = field(default_factory=list)  # share of pairs with h > 0
    adapter_dir: str = ""
    resumed_from: int = 0
    seconds: float = 0.0  # wall time over every run segment

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def margin_dpo_loss(
    policy_chosen: torch.Tensor,
    policy_rejected: torch.Tensor,
    ref_chosen: torch.Tensor,
    ref_rejected: torch.Tensor,
    margins: torch.Tensor,
    *,
    beta: float = 0.1,
    alpha: float = 1.0,
    min_margin: float = 1e-4,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(mean loss, h per pair) of LearNAT's margin-aware DPO; all inputs `(B,)` sequence log-probs/margins."""
    h = (policy_chosen - ref_chosen) - (policy_rejected - ref_rejected)  # (B,)
    logits = beta * h - alpha * torch.log(margins.clamp_min(min_margin))  # (B,)
    return -F.logsigmoid(logits).mean(), h


@dataclass(frozen=True)
class EncodedPair:
    prompt: list[int]
    chosen: list[int]
    rejected: list[int]
    margin: float


def encode_pair(tokenizer: Any, pair: PreferencePair, config: DPOConfig) -> EncodedPair:
    """Token ids: the prompt in the chat template (left-truncated), each completion plus end-of-turn."""
    enc = tokenizer.apply_chat_template(pair.messages, add_generation_prompt=True, tokenize=True, return_dict=True)
    prompt = list(enc["input_ids"])[-config.max_prompt_tokens :]
    eos = tokenizer.eos_token_id
    tail = [eos] if isinstance(eos, int) else []

    def completion(text: str) -> list[int]:
        ids = tokenizer.encode(text, add_special_tokens=False)[: config.max_completion_tokens - len(tail)]
        return ids + tail

    return EncodedPair(prompt, completion(pair.chosen), completion(pair.rejected), pair.margin)


def completion_logps(
    model: Any, prompts: Sequence[list[int]], completions: Sequence[list[int]], pad_id: int
) -> torch.Tensor:
    """Summed log-probabilities `(B,)` of each completion after its prompt (right-padded batch)."""
    seqs = [p + c for p, c in zip(prompts, completions, strict=True)]
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)  # (B, T)
    attention = torch.zeros((len(seqs), width), dtype=torch.long)  # (B, T)
    labels = torch.zeros((len(seqs), width), dtype=torch.bool)  # (B, T): positions scored
    for i, (p, c) in enumerate(zip(prompts, completions, strict=True)):
        n = len(p) + len(c)
        ids[i, :n] = torch.tensor(p + c)
        attention[i, :n] = 1
        labels[i, len(p) : n] = True
    # the lm_head runs only where a completion token is predicted: from the shortest prompt's end on
    first = min(len(p) for p in prompts) - 1
    keep = torch.arange(first, width - 1)  # (K,)
    logits = model(input_ids=ids, attention_mask=attention, logits_to_keep=keep).logits.float()  # (B, K, V)
    targets = ids[:, first + 1 :]  # (B, K): the token each kept position predicts
    logp = torch.log_softmax(logits, dim=-1).gather(-1, targets[..., None])[..., 0]  # (B, K)
    return (logp * labels[:, first + 1 :]).sum(dim=-1)  # (B,)


def add_lora(model: Any, config: DPOConfig) -> Any:
    """The model wrapped with fresh LoRA adapters (only they train)."""
    from peft import LoraConfig, get_peft_model

    lora = LoraConfig(
        r=config.lora_r,
        lora_alpha=config.lora_alpha,
        lora_dropout=config.lora_dropout,
        target_modules=list(config.target_modules),
        task_type="CAUSAL_LM",
    )
    return get_peft_model(model, lora)


def _optimizer(params: Any, config: DPOConfig) -> torch.optim.Optimizer:
    if config.optimizer == "rmsprop":
        return torch.optim.RMSprop(params, lr=config.lr)
    return torch.optim.AdamW(params, lr=config.lr, weight_decay=0.0)


def _lr_at(step: int, config: DPOConfig) -> float:
    return config.lr * min(1.0, (step + 1) / max(1, config.warmup_steps))


def train_margin_dpo(
    model: Any,
    tokenizer: Any,
    pairs: Sequence[PreferencePair],
    out_dir: str | Path,
    *,
    config: DPOConfig | None = None,
    resume: bool = True,
    progress: bool = True,
) -> tuple[Any, DPOStats]:
    """Train LoRA adapters on `model` (a transformers causal LM) with margin-aware DPO.

    Returns (the peft model, stats). With `resume`, a checkpoint in `<out_dir>/checkpoint` is loaded
    and training continues from its step. The adapter is saved to `<out_dir>/adapter` at the end.
    """
    config = config or DPOConfig()
    pairs = [p for p in pairs if p.margin > 0]
    if not pairs:
        raise InvalidRequestError("no preference pair with r_w > r_l: synthesise trajectories first")
    threads = torch.get_num_threads()
    if config.torch_threads:
        torch.set_num_threads(config.torch_threads)
    try:
        return _train(model, tokenizer, pairs, Path(out_dir), config, resume, progress)
    finally:
        torch.set_num_threads(threads)


def _train(
    model: Any, tokenizer: Any, pairs: list[PreferencePair], out: Path, config: DPOConfig, resume: bool, progress: bool
) -> tuple[Any, DPOStats]:
    ckpt = out / "checkpoint"
    torch.manual_seed(config.seed)
    rng = random.Random(config.seed)
    stats = DPOStats()
    start_step = 0
    if resume and (ckpt / "trainer_state.json").is_file():
        from peft import PeftModel

        policy = PeftModel.from_pretrained(model, ckpt / "adapter", is_trainable=True)
        state = json.loads((ckpt / "trainer_state.json").read_text())
        start_step = int(state["step"])
        stats = DPOStats(**{**state["stats"], "resumed_from": start_step})
        rng.setstate(_rng_state(state["rng"]))
    else:
        policy = add_lora(model, config)
    policy.train()
    trainable = [p for p in policy.parameters() if p.requires_grad]
    optimizer = _optimizer(trainable, config)
    if start_step and (ckpt / "optimizer.pt").is_file():
        optimizer.load_state_dict(torch.load(ckpt / "optimizer.pt", weights_only=True))

    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    encoded = [encode_pair(tokenizer, p, config) for p in pairs]
    bf16 = use_bf16(config.precision)
    order: list[int] = []
    bar: Any = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=config.steps, initial=start_step, desc="margin-aware DPO", unit="step")
    earlier_seconds, began = stats.seconds, time.monotonic()
    for step in range(start_step, config.steps):
        if len(order) < config.batch_size:
            fresh = list(range(len(encoded)))
            rng.shuffle(fresh)
            order += fresh
        batch = [encoded[order.pop(0)] for _ in range(min(config.batch_size, len(encoded)))]
        for group in optimizer.param_groups:
            group["lr"] = _lr_at(step, config)
        optimizer.zero_grad()
        losses, hs = [], []
        # one pair at a time, gradients adding up: each pair's loss is its own, so this equals the batch's
        # loss, and memory holds two sequences whatever the batch size
        for pair in batch:
            prompt, both = [pair.prompt] * 2, [pair.chosen, pair.rejected]
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                with torch.no_grad(), policy.disable_adapter():
                    ref_c, ref_r = completion_logps(policy, prompt, both, pad)
                pol_c, pol_r = completion_logps(policy, prompt, both, pad)
            loss, h = margin_dpo_loss(
                pol_c[None],
                pol_r[None],
                ref_c[None],
                ref_r[None],
                torch.tensor([pair.margin]),
                beta=config.beta,
                alpha=config.alpha,
                min_margin=config.min_margin,
            )
            if not torch.isfinite(loss):
                raise FloatingPointError(f"the DPO loss is {loss.item()} at step {step}")
            (loss / len(batch)).backward()
            losses.append(float(loss.item()))
            hs.append(float(h.item()))
        torch.nn.utils.clip_grad_norm_(trainable, config.grad_clip)
        optimizer.step()
        loss_value = sum(losses) / len(losses)
        stats.steps = step + 1
        stats.losses.append(round(loss_value, 6))
        stats.reward_accuracy.append(round(sum(h > 0 for h in hs) / len(hs), 4))
        if bar is not None:
            bar.update(1)
            bar.set_postfix(loss=f"{loss_value:.4f}")
        stats.seconds = round(earlier_seconds + time.monotonic() - began, 1)
        if (step + 1) % config.checkpoint_every == 0 and step + 1 < config.steps:
            _save_checkpoint(policy, optimizer, ckpt, step + 1, stats, rng, config)
    if bar is not None:
        bar.close()
    policy.eval()
    adapter = out / "adapter"
    policy.save_pretrained(adapter, safe_serialization=True)
    _save_checkpoint(policy, optimizer, ckpt, stats.steps, stats, rng, config)
    stats.adapter_dir = str(adapter)
    (out / "stats.json").write_text(json.dumps(stats.to_dict(), indent=1))
    return policy, stats


def _rng_state(data: list[Any]) -> tuple[Any, ...]:
    return (data[0], tuple(data[1]), data[2])


def _save_checkpoint(
    policy: Any,
    optimizer: torch.optim.Optimizer,
    ckpt: Path,
    step: int,
    stats: DPOStats,
    rng: random.Random,
    config: DPOConfig,
) -> None:
    ckpt.mkdir(parents=True, exist_ok=True)
    policy.save_pretrained(ckpt / "adapter", safe_serialization=True)
    torch.save(optimizer.state_dict(), ckpt / "optimizer.pt")
    state = {"step": step, "stats": stats.to_dict(), "rng": list(rng.getstate()), "config": asdict(config)}
    (ckpt / "trainer_state.json").write_text(json.dumps(state))
    log.info("checkpoint at step %d in %s", step, ckpt)
