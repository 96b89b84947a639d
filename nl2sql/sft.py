"""LearNAT's supervised stage (training time): LoRA on the embedded model, taught the agent's answer shapes.

LearNAT (arXiv 2504.02327) fine-tunes the model on decomposed examples before its margin-aware DPO stage. Here
the examples come from `nl2sql.sft_data` (the agent's own prompts on Spider train, answered with the gold) and
the model is the embedded SmolLM2-135M with LoRA adapters on every linear layer (peft).

Practical on two CPU cores:
- bf16 autocast where the CPU has bf16 instructions (AVX512-BF16 or AMX; measured 2x the fp32 rate on the
  AVX512 EPYC), fp32 elsewhere;
- batches of similar lengths (less padding), the loss on answer tokens only, the output head evaluated only
  where an answer token is predicted;
- a checkpoint (adapter, optimizer, data order, step) every `checkpoint_every` steps: stop at any time and
  run the same command again to continue; a progress bar with its ETA; `stats.json` keeps the wall time of
  every run segment.
"""

from __future__ import annotations

import json
import logging
import math
import random
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch

from prunekit.decoding.errors import InvalidRequestError
from prunekit.nl2sql.sft_data import FORMATS, SFTExample

__all__ = ["SFTConfig", "SFTStats", "encode_example", "lm_loss", "native_bf16", "train_sft", "use_bf16"]

log = logging.getLogger(__name__)

ALL_LINEAR = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


@dataclass(frozen=True)
class SFTConfig:
    """The supervised stage's knobs (a recipe file in `nl2sql/recipes/` sets them)."""

    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.05
    target_modules: tuple[str, ...] = ALL_LINEAR
    lr: float = 2e-4
    warmup_steps: int = 20
    min_lr_ratio: float = 0.1  # cosine decay down to lr * this at the last step
    batch_size: int = 8
    steps: int = 400
    formats: tuple[str, ...] = FORMATS
    format_weights: tuple[float, ...] = (1.0, 0.5)  # share of each format's examples drawn (decompose costs 2x)
    max_prompt_tokens: int = 2048  # longer prompts keep their end: the schema, the question and the request
    max_completion_tokens: int = 384
    grad_clip: float = 1.0
    micro_batch_tokens: int = 4096  # padded tokens a forward pass may hold (memory); a batch takes several
    checkpoint_every: int = 20
    # steps whose adapter is kept beside the last one (`<out>/adapter-step<N>`), to choose on held-out databases
    keep_adapters: tuple[int, ...] = ()
    seed: int = 0
    precision: Literal["auto", "bf16", "fp32"] = "auto"
    torch_threads: int | None = None

    def __post_init__(self) -> None:
        if self.batch_size < 1 or self.steps < 1 or self.lora_r < 1:
            raise InvalidRequestError("batch_size, steps and lora_r must be >= 1")
        if len(self.formats) != len(self.format_weights) or not set(self.formats) <= set(FORMATS):
            raise InvalidRequestError(f"formats must be among {FORMATS}, one weight each")
        if self.precision not in ("auto", "bf16", "fp32"):
            raise InvalidRequestError(f"precision must be auto, bf16 or fp32, got {self.precision!r}")

    @classmethod
    def from_file(cls, path: str | Path) -> SFTConfig:
        data = json.loads(Path(path).read_text())
        data = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items() if not k.startswith("_")}
        return cls(**data)


@dataclass
class SFTStats:
    steps: int = 0
    examples_seen: int = 0
    tokens_seen: int = 0
    losses: list[float] = field(default_factory=list)
    segments: list[dict[str, Any]] = field(default_factory=list)  # one per run: first step, last step, seconds
    adapter_dir: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def native_bf16() -> bool:
    """Whether this CPU computes in bf16 natively (AMX or AVX512-BF16)."""
    checks = ("_is_amx_tile_supported", "_is_avx512_bf16_supported")  # torch's private probes; absent means no
    return any(getattr(torch.cpu, name, lambda: False)() for name in checks)


def use_bf16(precision: str) -> bool:
    """bf16 autocast for a recipe's `precision`: always for bf16, never for fp32, where native for auto."""
    return precision == "bf16" or (precision == "auto" and native_bf16())


def encode_example(tokenizer: Any, example: SFTExample, config: SFTConfig) -> tuple[list[int], list[int]]:
    """(prompt ids in the chat template, left-truncated; answer ids plus end-of-turn)."""
    enc = tokenizer.apply_chat_template(example.messages, add_generation_prompt=True, tokenize=True, return_dict=True)
    prompt = list(enc["input_ids"])[-config.max_prompt_tokens :]
    eos = tokenizer.eos_token_id
    tail = [eos] if isinstance(eos, int) else []
    answer = tokenizer.encode(example.target, add_special_tokens=False)[: config.max_completion_tokens - len(tail)]
    return prompt, answer + tail


def lm_loss(model: Any, batch: Sequence[tuple[list[int], list[int]]], pad_id: int) -> tuple[torch.Tensor, int]:
    """Summed negative log-likelihood of the answer tokens of a right-padded batch, and how many there were.

    The output head (49k words) runs only on the positions that predict an answer token: on a whole
    2,000-token batch its logits alone would take gigabytes."""
    seqs = [p + a for p, a in batch]
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)  # (B, T)
    attention = torch.zeros((len(seqs), width), dtype=torch.long)  # (B, T)
    predicts = torch.zeros((len(seqs), width), dtype=torch.bool)  # (B, T): positions whose next token is learned
    for i, (p, a) in enumerate(batch):
        ids[i, : len(p) + len(a)] = torch.tensor(p + a)
        attention[i, : len(p) + len(a)] = 1
        predicts[i, len(p) - 1 : len(p) + len(a) - 1] = True
    causal_lm = model.get_base_model() if hasattr(model, "get_base_model") else model  # LoRA layers sit inside it
    hidden = causal_lm.model(input_ids=ids, attention_mask=attention).last_hidden_state  # (B, T, H)
    targets = torch.roll(ids, -1, dims=1)[predicts]  # (N,)
    logits = causal_lm.lm_head(hidden[predicts]).float()  # (N, V)
    return torch.nn.functional.cross_entropy(logits, targets, reduction="sum"), len(targets)


def micro_batches(
    batch: Sequence[tuple[list[int], list[int]]], max_tokens: int
) -> list[list[tuple[list[int], list[int]]]]:
    """`batch` split into groups of similar length whose padded size stays within `max_tokens` (a long example
    alone may exceed it): memory stays bounded whatever the lengths, the gradient is the same."""
    ordered = sorted(batch, key=lambda e: len(e[0]) + len(e[1]))
    groups: list[list[tuple[list[int], list[int]]]] = []
    for example in ordered:
        length = len(example[0]) + len(example[1])
        if groups and (len(groups[-1]) + 1) * length <= max_tokens:  # sorted: this one is the group's longest
            groups[-1].append(example)
        else:
            groups.append([example])
    return groups


def _lr_at(step: int, config: SFTConfig) -> float:
    if step < config.warmup_steps:
        return config.lr * (step + 1) / config.warmup_steps
    progress = (step - config.warmup_steps) / max(1, config.steps - config.warmup_steps)
    floor = config.min_lr_ratio
    return config.lr * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))


def _draw_order(examples: Sequence[SFTExample], config: SFTConfig, rng: random.Random) -> list[int]:
    """One pass over the data: every format's examples, thinned by its weight, shuffled."""
    weights = dict(zip(config.formats, config.format_weights, strict=True))
    return [i for i, e in enumerate(examples) if rng.random() < weights.get(e.format, 0.0)]


def _batches(order: list[int], lengths: Sequence[int], batch_size: int, rng: random.Random) -> list[list[int]]:
    """Shuffled batches of similar lengths: chunks of 32 batches sorted by length, then the batches shuffled."""
    rng.shuffle(order)
    chunk = batch_size * 32
    batches: list[list[int]] = []
    for start in range(0, len(order), chunk):
        part = sorted(order[start : start + chunk], key=lambda i: lengths[i])
        batches += [part[j : j + batch_size] for j in range(0, len(part), batch_size)]
    rng.shuffle(batches)
    return batches


def train_sft(
    model: Any,
    tokenizer: Any,
    examples: Sequence[SFTExample],
    out_dir: str | Path,
    *,
    config: SFTConfig | None = None,
    resume: bool = True,
    progress: bool = True,
    provenance: dict[str, Any] | None = None,
) -> SFTStats:
    """Train LoRA adapters on `model` (a transformers causal LM); the adapter goes to `<out_dir>/adapter`.

    With `resume`, `<out_dir>/checkpoint` is loaded and training continues from its step (same data order).
    `provenance` (data, recipe, held-out databases) is written beside the adapter.
    """
    config = config or SFTConfig()
    examples = [e for e in examples if e.format in config.formats]
    if not examples:
        raise InvalidRequestError(f"no supervised example of the formats {config.formats}")
    threads = torch.get_num_threads()
    if config.torch_threads:
        torch.set_num_threads(config.torch_threads)
    try:
        return _train(model, tokenizer, examples, Path(out_dir), config, resume, progress, provenance or {})
    finally:
        torch.set_num_threads(threads)


def _train(
    model: Any,
    tokenizer: Any,
    examples: list[SFTExample],
    out: Path,
    config: SFTConfig,
    resume: bool,
    progress: bool,
    provenance: dict[str, Any],
) -> SFTStats:
    from peft import LoraConfig, PeftModel, get_peft_model

    ckpt = out / "checkpoint"
    torch.manual_seed(config.seed)
    rng = random.Random(config.seed)
    stats = SFTStats()
    start_step = 0
    batches: list[list[int]] = []
    if resume and (ckpt / "trainer_state.json").is_file():
        state = json.loads((ckpt / "trainer_state.json").read_text())
        if state["config"] != _jsonable(config):
            raise InvalidRequestError(f"{ckpt} was trained with another recipe: pass a new --out or the same recipe")
        policy = PeftModel.from_pretrained(model, ckpt / "adapter", is_trainable=True)
        start_step = int(state["step"])
        stats = SFTStats(**state["stats"])
        if stats.segments:
            stats.segments[-1]["open"] = False  # this run's time goes to a segment of its own
        batches = state["batches"]
        rng.setstate((state["rng"][0], tuple(state["rng"][1]), state["rng"][2]))
    else:
        lora = LoraConfig(
            r=config.lora_r,
            lora_alpha=config.lora_alpha,
            lora_dropout=config.lora_dropout,
            target_modules=list(config.target_modules),
            task_type="CAUSAL_LM",
        )
        policy = get_peft_model(model, lora)
    policy.train()
    trainable = [p for p in policy.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=config.lr, weight_decay=0.0)
    if start_step and (ckpt / "optimizer.pt").is_file():
        optimizer.load_state_dict(torch.load(ckpt / "optimizer.pt", weights_only=True))

    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    encoded = [encode_example(tokenizer, e, config) for e in examples]
    lengths = [len(p) + len(a) for p, a in encoded]
    bf16 = use_bf16(config.precision)
    bar: Any = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=config.steps, initial=start_step, desc="supervised LoRA", unit="step")
    segment_start, began = start_step, time.monotonic()
    for step in range(start_step, config.steps):
        if not batches:
            batches = _batches(_draw_order(examples, config, rng), lengths, config.batch_size, rng)
        batch = [encoded[i] for i in batches.pop()]
        for group in optimizer.param_groups:
            group["lr"] = _lr_at(step, config)
        optimizer.zero_grad()
        n_answer = sum(len(a) for _, a in batch)
        total = 0.0
        for group in micro_batches(batch, config.micro_batch_tokens):  # gradients add up over the groups
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                summed, _ = lm_loss(policy, group, pad)
            loss = summed / n_answer
            if not torch.isfinite(loss):
                raise FloatingPointError(f"the loss is {loss.item()} at step {step}")
            loss.backward()
            total += float(loss.item())
        torch.nn.utils.clip_grad_norm_(trainable, config.grad_clip)
        optimizer.step()
        stats.steps = step + 1
        stats.examples_seen += len(batch)
        stats.tokens_seen += sum(len(p) + len(a) for p, a in batch)
        stats.losses.append(round(total, 5))
        if bar is not None:
            bar.update(1)
            bar.set_postfix(loss=f"{sum(stats.losses[-20:]) / len(stats.losses[-20:]):.3f}")
        if step + 1 in config.keep_adapters:
            _save_adapter(policy, out / f"adapter-step{step + 1}", provenance, config, stats)
        if (step + 1) % config.checkpoint_every == 0 and step + 1 < config.steps:
            _segment(stats, segment_start, step + 1, began)
            _save_checkpoint(policy, optimizer, ckpt, step + 1, stats, rng, batches, config)
            segment_start, began = step + 1, time.monotonic()
    if bar is not None:
        bar.close()
    _segment(stats, segment_start, stats.steps, began)
    policy.eval()
    adapter = out / "adapter"
    _save_adapter(policy, adapter, provenance, config, stats)
    _save_checkpoint(policy, optimizer, ckpt, stats.steps, stats, rng, batches, config)
    stats.adapter_dir = str(adapter)
    (out / "stats.json").write_text(json.dumps(stats.to_dict(), indent=1))
    return stats


def _save_adapter(policy: Any, folder: Path, provenance: dict[str, Any], config: SFTConfig, stats: SFTStats) -> None:
    policy.save_pretrained(folder, safe_serialization=True)
    summary = {**provenance, "stage": "sft", "recipe": _jsonable(config), "stats": _summary(stats)}
    (folder / "provenance.json").write_text(json.dumps(summary, indent=1))


def _segment(stats: SFTStats, first: int, last: int, began: float) -> None:
    """Record the wall time of steps [first, last); consecutive records of one run are merged."""
    seconds = time.monotonic() - began
    if stats.segments and stats.segments[-1]["last_step"] == first and stats.segments[-1].get("open"):
        stats.segments[-1]["last_step"] = last
        stats.segments[-1]["seconds"] = round(stats.segments[-1]["seconds"] + seconds, 1)
    else:
        stats.segments.append({"first_step": first, "last_step": last, "seconds": round(seconds, 1), "open": True})


def _summary(stats: SFTStats) -> dict[str, Any]:
    tail = stats.losses[-50:]
    return {
        "steps": stats.steps,
        "examples_seen": stats.examples_seen,
        "tokens_seen": stats.tokens_seen,
        "final_loss_mean_50": round(sum(tail) / max(1, len(tail)), 4),
        "wall_seconds": round(sum(s["seconds"] for s in stats.segments), 1),
    }


def _jsonable(config: SFTConfig) -> dict[str, Any]:
    return json.loads(json.dumps(asdict(config)))


def _save_checkpoint(
    policy: Any,
    optimizer: torch.optim.Optimizer,
    ckpt: Path,
    step: int,
    stats: SFTStats,
    rng: random.Random,
    batches: list[list[int]],
    config: SFTConfig,
) -> None:
    ckpt.mkdir(parents=True, exist_ok=True)
    policy.save_pretrained(ckpt / "adapter", safe_serialization=True)
    torch.save(optimizer.state_dict(), ckpt / "optimizer.pt")
    state = {
        "step": step,
        "stats": stats.to_dict(),
        "rng": list(rng.getstate()),
        "batches": batches,
        "config": _jsonable(config),
    }
    tmp = ckpt / "trainer_state.json.tmp"
    tmp.write_text(json.dumps(state))
    tmp.replace(ckpt / "trainer_state.json")  # a run killed while saving keeps the previous state
    log.info("checkpoint at step %d in %s", step, ckpt)
