"""Distil an HMM from the LLM (training code: never imported at serve time).
`python -m prunekit.decoding.decog.distill`.

Ctrl-G (Zhang et al. 2024, joshuacnf/Ctrl-G, `distillation/`) and Deco-G (Deng, Kung, Peng 2025, arXiv 2510.03595):

1. Instruction-aware sampling (Deco-G): continuations of the LLM at temperature 1.0, top-p 1.0, under the task-only
   prompts the app sends (`prompts.py`: math word problems, extraction and judging over SQuAD paragraphs, chat;
   training splits only). Each sequence is the generated response only: `seq_len` tokens, or fewer ending in EOS.
   Requests run on a bounded thread pool so llama.cpp batches them.
2. Latent-variable distillation (Ctrl-G): k-means of the LLM's last-layer hidden state at every generated position
   into H - 1 clusters, one more state reserved for EOS; the hard assignments give count-based initial parameters.
3. EM (Baum-Welch) on 90 % of the sequences until the log-likelihood of the held-out 10 % stops improving.

The hidden states come for free during sampling. Measured on the 2-core dev machine: a transformers forward pass
over the sampled tokens runs at ~70 tokens/s on one busy core, as slow as sampling itself, so a separate pass would
double the budget. SmolLM2 ties its output and input embeddings (logits = E h, E (V, 576)), so the last-layer hidden
state h is recovered exactly from the logits of any 576+ tokens: h = pinv(E_S) logits_S over a fixed set S of
`feature_tokens` rows. An identity logits processor (`GenerationRecorder`) records h (and the token ids) at each
step. Against transformers' `hidden_states[-1]`: cosine 0.99999 on the same model, 0.999 from llama.cpp's Q8_0
logits. The state at step t is the one x_t is sampled from, i.e. the hidden state that emits x_t.

Smoothing: one pseudocount cannot serve a transition row (H entries, ~1000 counts) and an emission row (V = 49,152
entries, most never seen), so each parameter gets its own per-entry pseudocount; the emission one is chosen on the
held-out sequences from a small grid (so is the unigram baseline's, for a fair comparison).

Resumable: samples are written in shards and EM checkpoints after every step under `work_dir`; a rerun continues.
A larger run is one parameter change (`n_sequences`): the existing shards are kept and EM restarts on all of them.

The shipped HMM came from `distill_hmm("decoding/decog/weights/hmm-smollm2-h128", hidden_size=128, n_sequences=4000)`
(hours on a CPU: no example runs it here; `prunekit train hmm` is the command line, `tests/decoding/decog/
test_distill.py` a run in seconds on a fake model).
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import re
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from prunekit.decoding.backends.embedded import EMBEDDED_MODEL_NAME, default_cache_dir, embedded_hf_dir
from prunekit.decoding.decog.hmm import HMM, PAD, assignment_counts
from prunekit.decoding.decog.prompts import DEFAULT_MIX, distillation_prompts
from prunekit.decoding.errors import InvalidRequestError
from prunekit.decoding.protocol import as_local, model_name
from prunekit.decoding.types import GenerationParams, Message

__all__ = [
    "DistillConfig",
    "GenerationRecorder",
    "HiddenStateProjector",
    "Samples",
    "distill_hmm",
    "fit_hmm",
    "kmeans",
    "sample_sequences",
    "split_indices",
    "unigram_loglik",
]

log = logging.getLogger(__name__)

ALPHA_GRID = (1e-4, 1e-3, 1e-2, 3e-2, 1e-1)  # per-entry emission pseudocounts tried on the held-out sequences


@dataclass(frozen=True)
class DistillConfig:
    """Everything that shapes a distillation run (saved in the work dir and the HMM's config.json)."""

    hidden_size: int = 128
    n_sequences: int = 4000
    seq_len: int = 48
    heldout_share: float = 0.1
    seed: int = 0
    temperature: float = 1.0
    top_p: float = 1.0
    concurrency: int = 8
    shard_size: int = 200
    mix: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_MIX))
    feature_tokens: int = 2048  # logits used to recover the hidden state (>= the model's hidden size)
    kmeans_points: int = 100_000  # positions used to fit the centroids (all positions are then assigned)
    kmeans_iters: int = 25
    max_em_steps: int = 40
    min_gain: float = 1e-3  # nats per held-out token: a smaller EM gain counts as no improvement
    patience: int = 2
    alpha_initial: float = 1e-2  # per-entry pseudocounts (see the module docstring)
    alpha_transition: float = 1e-2
    alpha_grid: tuple[float, ...] = ALPHA_GRID
    em_batch_size: int = 512

    def __post_init__(self) -> None:
        if self.hidden_size < 2:
            raise InvalidRequestError(
                f"hidden_size must be >= 2 (one state is reserved for EOS), got {self.hidden_size}"
            )
        if self.n_sequences < 10:
            raise InvalidRequestError(f"n_sequences must be >= 10 (10 % are held out), got {self.n_sequences}")
        if self.seq_len < 2:
            raise InvalidRequestError(f"seq_len must be >= 2, got {self.seq_len}")
        if not 0.0 < self.heldout_share < 0.5:
            raise InvalidRequestError(f"heldout_share must be in (0, 0.5), got {self.heldout_share}")

    def sampling_key(self) -> dict[str, Any]:
        """What the stored samples depend on: a rerun with other values needs a fresh work dir."""
        return {
            "seq_len": self.seq_len,
            "seed": self.seed,
            "temperature": self.temperature,
            "top_p": self.top_p,
            "shard_size": self.shard_size,
            "mix": self.mix,
            "feature_tokens": self.feature_tokens,
        }


# --------------------------------------------------------------------------- recording during generation
class HiddenStateProjector:
    """Recovers the last-layer hidden state from next-token logits of a model with output embeddings E (V, D).

    logits = E h, so h = pinv(E_S) logits_S for any set S of rows with rank D (a fixed random set of `n_tokens`).
    """

    def __init__(self, output_embeddings: torch.Tensor, n_tokens: int = 2048, seed: int = 0) -> None:
        v, d = output_embeddings.shape
        if n_tokens < d:
            raise InvalidRequestError(f"feature_tokens ({n_tokens}) must be >= the hidden size ({d})")
        g = torch.Generator().manual_seed(seed)
        self.ids = torch.randperm(v, generator=g)[: min(n_tokens, v)].sort().values  # (S,)
        e_s = output_embeddings[self.ids].double()  # (S, D)
        self.matrix = torch.linalg.pinv(e_s).float().contiguous()  # (D, S)
        self.vocab_size, self.dim = v, d
        self.condition = float(torch.linalg.cond(e_s))

    @classmethod
    def embedded(cls, n_tokens: int = 2048, seed: int = 0) -> HiddenStateProjector:
        """For the embedded SmolLM2 (tied embeddings), read from its transformers copy without loading the model."""
        return cls.from_model_files(embedded_hf_dir(), n_tokens, seed)

    @classmethod
    def from_model_files(cls, path: str | Path, n_tokens: int = 2048, seed: int = 0) -> HiddenStateProjector:
        """From a model's output embeddings, read from its files without loading the model: a GGUF file or a
        transformers folder (safetensors, one file or sharded)."""
        path = Path(path)
        is_gguf = path.suffix.lower() == ".gguf" and path.is_file()
        weight = _gguf_output_embeddings(path) if is_gguf else _safetensors_output_embeddings(path)
        return cls(weight, n_tokens, seed)

    def __call__(self, scores: torch.Tensor) -> torch.Tensor:
        """(V,) logits -> (D,) hidden state."""
        return self.matrix @ scores.index_select(0, self.ids).float()


def _gguf_output_embeddings(path: Path) -> torch.Tensor:
    """The output head (V, D) of a GGUF model, dequantised; the token embeddings when the two are tied."""
    import gguf

    tensors = {t.name: t for t in gguf.GGUFReader(str(path)).tensors}
    tensor = tensors.get("output.weight", tensors.get("token_embd.weight"))  # no output.weight: tied
    if tensor is None:
        raise InvalidRequestError(f"{path}: no output.weight or token_embd.weight tensor")
    weight = gguf.quants.dequantize(tensor.data, tensor.tensor_type)  # (V, D) float32
    return torch.from_numpy(weight.reshape(-1, weight.shape[-1]).copy())


def _safetensors_output_embeddings(folder: Path) -> torch.Tensor:
    """The output head (V, D) of a transformers model folder, one tensor read from its safetensors."""
    config_path = folder / "config.json"
    if not config_path.is_file():
        raise InvalidRequestError(f"{folder} is neither a GGUF file nor a transformers model folder")
    config = json.loads(config_path.read_text())
    index_path = folder / "model.safetensors.index.json"
    if index_path.is_file():  # sharded: the index says which file holds each tensor
        files = json.loads(index_path.read_text())["weight_map"]
    elif (folder / "model.safetensors").is_file():
        with safe_open(str(folder / "model.safetensors"), "pt") as f:
            files = dict.fromkeys(f.keys(), "model.safetensors")
    else:
        raise InvalidRequestError(f"{folder}: no model.safetensors (other weight formats are not read)")
    key = "lm_head.weight" if "lm_head.weight" in files else "model.embed_tokens.weight"
    if key not in files or (key != "lm_head.weight" and not config.get("tie_word_embeddings", False)):
        raise InvalidRequestError(f"{folder}: no lm_head.weight and no tied embeddings to read the output head from")
    with safe_open(str(folder / files[key]), "pt") as f:
        return f.get_tensor(key).float()


class GenerationRecorder:
    """An identity logits processor that records the generated token ids (and, with a projector, hidden states).

    The last call sees every token but the one it is about to pick (EOS, or the last one when the budget runs out);
    `features[t]` belongs to the step that picked generated token t. One recorder per request (processors are
    stateful).
    """

    def __init__(self, projector: HiddenStateProjector | None = None) -> None:
        self.projector = projector
        self.prompt_len: int | None = None
        self._input_ids: torch.Tensor | None = None
        self.features: list[torch.Tensor] = []

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        if self.prompt_len is None:
            self.prompt_len = int(input_ids.shape[1])
        self._input_ids = input_ids
        if self.projector is not None:
            self.features.append(self.projector(scores[0]))
        return scores

    @property
    def generated(self) -> list[int]:
        """Tokens generated before the last step (see the class docstring)."""
        if self._input_ids is None or self.prompt_len is None:
            return []
        return [int(t) for t in self._input_ids[0, self.prompt_len :].tolist()]


# --------------------------------------------------------------------------- sampling
@dataclass
class Samples:
    """Sampled responses: tokens (N, T) int64 right-padded with -1, hidden states (N, T, D) fp16, prompt kinds."""

    tokens: torch.Tensor
    features: torch.Tensor
    kinds: list[str]
    tokens_per_s: float = float("nan")

    def __len__(self) -> int:
        return int(self.tokens.shape[0])


def _one_sequence(
    model: Any,
    messages: list[Message],
    seq_len: int,
    eos_id: int,
    projector: HiddenStateProjector,
    config: DistillConfig,
    seed: int,
) -> tuple[list[int], torch.Tensor]:
    rec = GenerationRecorder(projector)
    # One token beyond seq_len: the recorder sees a token only at the step after it was picked.
    params = GenerationParams(
        max_tokens=seq_len + 1,
        temperature=config.temperature,
        top_p=config.top_p,
        seed=seed,
        logits_processors=(rec,),
    )
    result = model.chat(messages, params)
    tokens = rec.generated
    if result.finish_reason == "stop":
        tokens = [*tokens, eos_id]  # whichever end-of-generation token the backend saw: the EOS of the formats
    tokens = tokens[:seq_len]
    if not tokens or len(rec.features) < len(tokens):
        raise RuntimeError(f"the recorder saw {len(rec.features)} steps for {len(tokens)} tokens")
    return tokens, torch.stack(rec.features[: len(tokens)]).half()


def sample_sequences(
    model: Any,
    prompts: Sequence[tuple[str, list[Message]]],
    *,
    config: DistillConfig,
    eos_id: int,
    projector: HiddenStateProjector,
    first_index: int = 0,
    progress: Callable[[int], None] | None = None,
) -> Samples:
    """Sample one response per prompt concurrently (`config.concurrency` requests in flight)."""
    n, t_len = len(prompts), config.seq_len
    tokens = torch.full((n, t_len), PAD, dtype=torch.long)
    feats = torch.zeros(n, t_len, projector.dim, dtype=torch.float16)
    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=max(1, config.concurrency)) as pool:
        futures = {
            pool.submit(
                _one_sequence,
                model,
                messages,
                t_len,
                eos_id,
                projector,
                config,
                config.seed * 1_000_003 + first_index + i,
            ): i
            for i, (_, messages) in enumerate(prompts)
        }
        for fut in as_completed(futures):
            i = futures[fut]
            seq, f = fut.result()
            tokens[i, : len(seq)] = torch.tensor(seq)
            feats[i, : len(seq)] = f
            if progress is not None:
                progress(1)
    seconds = time.perf_counter() - started
    total = int((tokens >= 0).sum())
    return Samples(tokens, feats, [k for k, _ in prompts], total / max(seconds, 1e-9))


def _sample_all(
    model: Any,
    model_name: str,
    config: DistillConfig,
    work_dir: Path,
    data_paths: Mapping[str, Any],
    eos_id: int,
    projector: Callable[[], HiddenStateProjector],
) -> tuple[Samples, dict[str, Any]]:
    """All `config.n_sequences` samples: the shards already in `work_dir`, then the missing ones (resumable)."""
    shard_dir = work_dir / "samples"
    shard_dir.mkdir(parents=True, exist_ok=True)
    key_file = shard_dir / "sampling.json"
    key = {**config.sampling_key(), "model": model_name, "data": {k: str(v) for k, v in data_paths.items()}}
    if key_file.is_file():
        stored = json.loads(key_file.read_text())
        stored.setdefault("model", EMBEDDED_MODEL_NAME)  # work dirs written before the key named the model
        if stored != json.loads(json.dumps(key)):
            raise InvalidRequestError(
                f"{shard_dir} holds samples made with other settings ({stored}); use another work_dir"
            )
    else:
        key_file.write_text(json.dumps(key, indent=2))
    prompts = distillation_prompts(
        config.n_sequences,
        math_paths=data_paths.get("math", ()),
        squad_path=data_paths.get("squad"),
        mix=config.mix,
        seed=config.seed,
    )
    n_shards = math.ceil(config.n_sequences / config.shard_size)
    paths = [shard_dir / f"shard_{k:05d}.pt" for k in range(n_shards)]
    missing = [k for k, p in enumerate(paths) if not p.is_file()]
    stats = {"sampled_now": 0, "tokens_per_s": []}
    if missing:
        proj = projector()
        if model is None:
            from prunekit.decoding.backends.loader import load_embedded

            model = load_embedded()
        log.info(
            "sampling %d shards of <= %d sequences (projector condition %.1f)",
            len(missing),
            config.shard_size,
            proj.condition,
        )
        done = config.n_sequences - sum(
            min(config.shard_size, config.n_sequences - k * config.shard_size) for k in missing
        )
        with _progress() as bar:
            task = bar.add_task("sampling", total=config.n_sequences, completed=done)
            for k in missing:
                lo, hi = k * config.shard_size, min((k + 1) * config.shard_size, config.n_sequences)
                s = sample_sequences(
                    model,
                    prompts[lo:hi],
                    config=config,
                    eos_id=eos_id,
                    projector=proj,
                    first_index=lo,
                    progress=lambda n: bar.advance(task, n),
                )
                tmp = paths[k].with_suffix(".tmp")
                torch.save({"tokens": s.tokens, "features": s.features, "kinds": s.kinds}, tmp)
                tmp.rename(paths[k])  # a shard is either complete or absent
                log.info("shard %d: %d sequences, %.1f tokens/s", k, len(s), s.tokens_per_s)
                stats["sampled_now"] += len(s)
                stats["tokens_per_s"].append(s.tokens_per_s)
    parts = [torch.load(p) for p in paths]
    samples = Samples(
        torch.cat([p["tokens"] for p in parts]),
        torch.cat([p["features"] for p in parts]),
        [k for p in parts for k in p["kinds"]],
    )
    return samples, stats


# --------------------------------------------------------------------------- clustering and counts
def kmeans(
    x: torch.Tensor, k: int, *, iters: int = 25, seed: int = 0, progress: Callable[[], None] | None = None
) -> torch.Tensor:
    """Lloyd's k-means with k-means++ seeding on `x` (N, D) float32; returns centroids (k, D)."""
    n = x.shape[0]
    if n < k:
        raise InvalidRequestError(f"k-means needs at least {k} points, got {n}: sample more sequences")
    g = torch.Generator().manual_seed(seed)
    sq = (x * x).sum(1)  # (N,)
    centroids = torch.empty(k, x.shape[1], dtype=x.dtype)
    centroids[0] = x[torch.randint(n, (1,), generator=g)]
    closest = (sq - 2 * x @ centroids[0] + centroids[0] @ centroids[0]).clamp_min(0)  # (N,)
    for j in range(1, k):  # k-means++: the next seed with probability ~ squared distance
        probs = closest / closest.sum() if closest.sum() > 0 else torch.full_like(closest, 1.0 / n)
        centroids[j] = x[torch.multinomial(probs, 1, generator=g)]
        closest = torch.minimum(closest, (sq - 2 * x @ centroids[j] + centroids[j] @ centroids[j]).clamp_min(0))
    for _ in range(iters):
        assign = assign_clusters(x, centroids)
        sums = torch.zeros_like(centroids).index_add_(0, assign, x)
        counts = torch.bincount(assign, minlength=k).to(x.dtype)
        empty = counts == 0
        new = sums / counts.clamp_min(1)[:, None]
        if empty.any():  # re-seed empty clusters with the points farthest from their centroid
            dist = ((x - new[assign]) ** 2).sum(1)
            far = torch.topk(dist, int(empty.sum())).indices
            new[empty] = x[far]
        shift = float((new - centroids).abs().max())
        centroids = new
        if progress is not None:
            progress()
        if shift < 1e-5:
            break
    return centroids


def assign_clusters(x: torch.Tensor, centroids: torch.Tensor, chunk: int = 65536) -> torch.Tensor:
    """Nearest centroid of each row of `x` (N, D) -> (N,) int64, in chunks to bound memory."""
    c_sq = (centroids * centroids).sum(1)  # (k,)
    out = [
        (c_sq[None, :] - 2 * x[i : i + chunk] @ centroids.t()).argmin(1)  # ||x||^2 is the same for every centroid
        for i in range(0, x.shape[0], chunk)
    ]
    return torch.cat(out) if out else torch.zeros(0, dtype=torch.long)


def loglik_per_token(hmm: HMM, tokens: torch.Tensor, batch_size: int = 512) -> float:
    """Mean log-likelihood per token (EOS included) of right-padded sequences."""
    return float(hmm.loglikelihood(tokens, batch_size).sum()) / max(int((tokens >= 0).sum()), 1)


def unigram_loglik(train: torch.Tensor, heldout: torch.Tensor, vocab_size: int, alphas: Sequence[float]) -> dict:
    """Unigram baseline fitted on `train` tokens with add-alpha smoothing (alpha chosen on `heldout`)."""
    counts = torch.bincount(train[train >= 0], minlength=vocab_size).double()
    held = heldout[heldout >= 0]
    best: dict[str, float] = {}
    for a in alphas:
        logp = ((counts + a) / (counts.sum() + a * vocab_size)).log()
        ll = float(logp[held].mean())
        if not best or ll > best["loglik_per_token"]:
            best = {"loglik_per_token": ll, "alpha": a}
    return best


# --------------------------------------------------------------------------- EM
def _save_checkpoint(path: Path, hmm: HMM, state: dict[str, Any]) -> None:
    path.mkdir(parents=True, exist_ok=True)
    tensors = {"log_initial": hmm.log_initial, "log_transition": hmm.log_transition, "log_emission": hmm.log_emission}
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(path / "hmm.tmp"))
    (path / "hmm.tmp").rename(path / "hmm.safetensors")  # fp32: resuming must not round through fp16
    (path / "state.tmp").write_text(json.dumps(state, indent=2))
    (path / "state.tmp").rename(path / "state.json")


def _load_checkpoint(path: Path, eos_token_id: int | None) -> tuple[HMM, dict[str, Any]] | None:
    if not (path / "state.json").is_file() or not (path / "hmm.safetensors").is_file():
        return None
    t = load_file(str(path / "hmm.safetensors"))
    hmm = HMM(t["log_initial"], t["log_transition"], t["log_emission"], eos_token_id=eos_token_id)
    return hmm, json.loads((path / "state.json").read_text())


def fit_hmm(
    samples: Samples,
    config: DistillConfig,
    vocab_size: int,
    eos_token_id: int,
    ckpt_dir: Path,
) -> tuple[HMM, dict[str, Any]]:
    """k-means initialisation + EM with held-out early stopping, checkpointed in `ckpt_dir` after every step."""
    n = len(samples)
    train_idx, held_idx = split_indices(n, config)
    train, held = samples.tokens[train_idx], samples.tokens[held_idx]
    h = config.hidden_size
    fingerprint = {"n_sequences": n, "hidden_size": h, "seed": config.seed, "alpha_grid": list(config.alpha_grid)}

    resumed = _load_checkpoint(ckpt_dir / "best", eos_token_id)
    latest = _load_checkpoint(ckpt_dir / "latest", eos_token_id)
    if latest is not None and latest[1].get("fingerprint") == fingerprint:
        hmm, state = latest
        best_hmm = resumed[0] if resumed is not None else hmm
        log.info("resuming EM at step %d from %s", state["step"], ckpt_dir)
    else:
        hmm, state = _initialise(samples, train_idx, held, config, vocab_size, eos_token_id, fingerprint)
        best_hmm = hmm
        _save_checkpoint(ckpt_dir / "latest", hmm, state)
        _save_checkpoint(ckpt_dir / "best", hmm, state)

    alphas = (config.alpha_initial, config.alpha_transition, state["alpha_emission"])
    with _progress() as bar:
        task = bar.add_task("EM", total=config.max_em_steps, completed=state["step"])
        while not state["done"] and state["step"] < config.max_em_steps:
            t0 = time.perf_counter()
            counts, train_ll = hmm.expected_counts(train, config.em_batch_size)
            hmm = HMM.m_step(counts, alphas, eos_token_id=eos_token_id)
            held_ll = loglik_per_token(hmm, held, config.em_batch_size)
            state["step"] += 1
            state["history"].append(
                {
                    "step": state["step"],
                    "train_loglik_per_token_before": train_ll / max(int((train >= 0).sum()), 1),
                    "heldout_loglik_per_token": held_ll,
                    "seconds": time.perf_counter() - t0,
                }
            )
            # A gain below `min_gain` counts against patience, but the best model so far is kept all the same.
            improved = held_ll > state["best_heldout"] + config.min_gain
            if held_ll > state["best_heldout"]:
                state["best_heldout"], state["best_step"] = held_ll, state["step"]
                best_hmm = hmm
                _save_checkpoint(ckpt_dir / "best", hmm, state)
            state["bad_steps"] = 0 if improved else state["bad_steps"] + 1
            state["done"] = state["bad_steps"] >= config.patience
            _save_checkpoint(ckpt_dir / "latest", hmm, state)
            bar.update(task, completed=state["step"], description=f"EM held-out {held_ll:.3f}/token")
    state["done"] = True
    state["n_train"], state["n_heldout"] = len(train_idx), len(held_idx)
    state["train_tokens"], state["heldout_tokens"] = int((train >= 0).sum()), int((held >= 0).sum())
    state["unigram"] = unigram_loglik(train, held, vocab_size, config.alpha_grid)
    _save_checkpoint(ckpt_dir / "latest", hmm, state)
    return best_hmm, state


def _initialise(
    samples: Samples,
    train_idx: torch.Tensor,
    held: torch.Tensor,
    config: DistillConfig,
    vocab_size: int,
    eos_token_id: int,
    fingerprint: dict[str, Any],
) -> tuple[HMM, dict[str, Any]]:
    """Ctrl-G's latent-variable distillation: k-means of hidden states -> hard states -> smoothed counts."""
    h = config.hidden_size
    tokens = samples.tokens[train_idx]  # (N, T)
    valid = tokens >= 0
    text = valid & (tokens != eos_token_id)  # EOS positions go to the reserved state H - 1
    x_all = samples.features[train_idx][text].float()  # (P, D)
    g = torch.Generator().manual_seed(config.seed)
    fit = x_all[torch.randperm(len(x_all), generator=g)[: config.kmeans_points]]
    t0 = time.perf_counter()
    with _progress() as bar:
        task = bar.add_task("k-means", total=config.kmeans_iters)
        centroids = kmeans(fit, h - 1, iters=config.kmeans_iters, seed=config.seed, progress=lambda: bar.advance(task))
    clusters = torch.full(tokens.shape, h - 1, dtype=torch.long)
    clusters[text] = assign_clusters(x_all, centroids)
    counts = assignment_counts(clusters, tokens, h, vocab_size)
    kmeans_s = time.perf_counter() - t0
    # The emission pseudocount decides how much mass unseen tokens get: pick it on the held-out sequences.
    scores = {}
    for a in config.alpha_grid:
        hmm = HMM.m_step(counts, (config.alpha_initial, config.alpha_transition, a), eos_token_id=eos_token_id)
        scores[a] = loglik_per_token(hmm, held, config.em_batch_size)
    alpha = max(scores, key=lambda a: scores[a])
    hmm = HMM.m_step(counts, (config.alpha_initial, config.alpha_transition, alpha), eos_token_id=eos_token_id)
    log.info("LVD init: held-out %.4f nats/token (emission alpha %g), k-means %.1f s", scores[alpha], alpha, kmeans_s)
    state = {
        "fingerprint": fingerprint,
        "step": 0,
        "done": False,
        "alpha_emission": alpha,
        "init_heldout_by_alpha": {str(a): s for a, s in scores.items()},
        "init_heldout_loglik_per_token": scores[alpha],
        "best_heldout": scores[alpha],
        "best_step": 0,
        "bad_steps": 0,
        "kmeans_seconds": kmeans_s,
        "history": [],
    }
    return hmm, state


# --------------------------------------------------------------------------- entry point
def default_data_paths(data_dir: str | Path | None = None) -> dict[str, Any]:
    """Training files under ../shared/data (or `$PRUNEKIT_SHARED_DATA`): MultiArith/SVAMP train, SQuAD train subset."""
    root = Path(
        data_dir or os.environ.get("PRUNEKIT_SHARED_DATA") or Path(__file__).resolve().parents[3] / "shared/data"
    )
    math_files = [root / "agp/multiarith_train.json", root / "agp/svamp_train.json"]
    squad = root / "qa/squad_v1.1/train_subset-v1.1.json"
    missing = [str(p) for p in [*math_files, squad] if not p.is_file()]
    if missing:
        raise InvalidRequestError(f"distillation data missing: {missing} (pass data_dir=the shared data folder)")
    return {"math": math_files, "squad": squad}


def _progress() -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )


def distill_hmm(
    out_dir: str | Path,
    *,
    hidden_size: int = 128,
    n_sequences: int = 4000,
    seq_len: int = 48,
    work_dir: str | Path | None = None,
    model: Any = None,
    data_dir: str | Path | None = None,
    config: DistillConfig | None = None,
    projector: HiddenStateProjector | None = None,
    eos_token_id: int | None = None,
) -> Path:
    """Distil an HMM from `model` (default: the embedded SmolLM2 on llama.cpp) and save it in `out_dir` (fp16).

    `work_dir` (default: the prunekit cache, one folder per model) keeps samples and EM checkpoints, so a rerun
    resumes. `config` overrides the keyword sizes. Another model than the embedded one (`decoding.backends.loader.
    load_local_model`) gets its `projector` from its files (`model.path`: its output embeddings) and its
    `eos_token_id` from its tokenizer; a model without files (a test's fake) must pass both. Returns `out_dir`; its
    config.json metadata records how the HMM was made and its held-out log-likelihood per token next to a unigram
    baseline fitted on the same training samples.
    """
    config = config or DistillConfig(hidden_size=hidden_size, n_sequences=n_sequences, seq_len=seq_len)
    name = EMBEDDED_MODEL_NAME if model is None else str(model_name(model))
    work_dir = Path(work_dir) if work_dir is not None else _default_work_dir(name, config)
    work_dir.mkdir(parents=True, exist_ok=True)
    data_paths = default_data_paths(data_dir)
    eos_id = _eos_token_id(model) if eos_token_id is None else eos_token_id
    get_projector = _projector_source(model, name, config, projector)

    t0 = time.perf_counter()
    samples, sample_stats = _sample_all(model, name, config, work_dir, data_paths, eos_id, get_projector)
    vocab_size = get_projector().vocab_size
    sample_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    hmm, state = fit_hmm(samples, config, vocab_size, eos_id, work_dir / f"em-h{config.hidden_size}")
    fit_s = time.perf_counter() - t0

    metadata = _metadata(name, model is None, config, data_paths, samples, state, eos_id)
    metadata["seconds"] = {"sampling": sample_s, "fit": fit_s}
    metadata["sampling_tokens_per_s"] = sample_stats["tokens_per_s"]
    out = Path(out_dir)
    _save(hmm, out, metadata, samples, config)
    return out


def _default_work_dir(name: str, config: DistillConfig) -> Path:
    """The cache folder of one model's runs at one length and seed."""
    # the embedded model's folder keeps its historical name, so its runs resume
    tag = "" if name == EMBEDDED_MODEL_NAME else re.sub(r"[^A-Za-z0-9._-]+", "_", name) + "-"
    return default_cache_dir() / f"hmm-distill-{tag}T{config.seq_len}-s{config.seed}"


def _projector_source(
    model: Any, name: str, config: DistillConfig, projector: HiddenStateProjector | None
) -> Callable[[], HiddenStateProjector]:
    """The projector, built once on first use (sampling; the vocabulary size): the one given, else from the model's
    files (the embedded model's when `model` is None)."""
    cached: list[HiddenStateProjector] = [projector] if projector is not None else []

    def get_projector() -> HiddenStateProjector:
        if not cached:
            files = getattr(model, "path", None)  # a backend loaded from files; a test's fake has none
            if files is not None:
                cached.append(HiddenStateProjector.from_model_files(files, config.feature_tokens, seed=config.seed))
            elif model is None:
                cached.append(HiddenStateProjector.embedded(config.feature_tokens, seed=config.seed))
            else:
                raise InvalidRequestError(f"model {name!r} has no files to read its output embeddings from: "
                                          "pass a projector")  # fmt: skip
        return cached[0]

    return get_projector


def _metadata(
    name: str,
    embedded: bool,
    config: DistillConfig,
    data_paths: Mapping[str, Any],
    samples: Samples,
    state: dict[str, Any],
    eos_id: int,
) -> dict[str, Any]:
    """How the HMM was made, for its config.json: model, method, settings, data, samples and the EM run."""
    kinds = {k: samples.kinds.count(k) for k in sorted(set(samples.kinds))}
    return {
        "model": f"{name} (embedded)" if embedded else name,
        "method": (
            "Deco-G instruction-aware distillation (task-only prompts, training splits) + Ctrl-G latent-variable "
            "distillation (k-means of last-layer hidden states, recovered from the logits, into H-1 clusters + "
            "one EOS state) + EM with held-out early stopping"
        ),
        "config": {**asdict(config), "alpha_grid": list(config.alpha_grid)},
        "data": {k: [str(p) for p in v] if isinstance(v, list) else str(v) for k, v in data_paths.items()},
        "samples": {
            "sequences": len(samples),
            "tokens": int((samples.tokens >= 0).sum()),
            "ended_with_eos": int((samples.tokens == eos_id).any(1).sum()),
            "by_kind": kinds,
            "train_sequences": state["n_train"],
            "heldout_sequences": state["n_heldout"],
            "train_tokens": state["train_tokens"],
            "heldout_tokens": state["heldout_tokens"],
        },
        "emission_alpha": state["alpha_emission"],
        "em_steps": state["step"],
        "best_step": state["best_step"],
        "history": state["history"],
        "init_heldout_loglik_per_token": state["init_heldout_loglik_per_token"],
        "heldout_loglik_per_token": state["best_heldout"],
        "unigram_heldout_loglik_per_token": state["unigram"]["loglik_per_token"],
        "unigram_alpha": state["unigram"]["alpha"],
    }


def _save(hmm: HMM, out: Path, metadata: dict[str, Any], samples: Samples, config: DistillConfig) -> None:
    """Save `hmm` (fp16) with `metadata`, then record the held-out log-likelihood of what ships: the file, read back."""
    hmm.save(out, metadata=metadata)
    shipped = HMM.load(out)
    held = samples.tokens[split_indices(len(samples), config)[1]]
    metadata["heldout_loglik_per_token_fp16"] = loglik_per_token(shipped, held, config.em_batch_size)
    hmm.save(out, metadata=metadata)
    log.info(
        "HMM H=%d: held-out %.4f nats/token (unigram %.4f) -> %s",
        config.hidden_size,
        metadata["heldout_loglik_per_token_fp16"],
        metadata["unigram_heldout_loglik_per_token"],
        out,
    )


def _eos_token_id(model: Any) -> int:
    """The id that ends a reply of `model` (the HMM reserves a state for it); the embedded model's when None."""
    local = as_local(model)
    if local is not None and local.eos_token_id is not None:
        return int(local.eos_token_id)
    if model is not None:
        raise InvalidRequestError(f"model {model_name(model)!r} does not say its EOS id: pass eos_token_id")
    from transformers import AutoTokenizer

    return int(AutoTokenizer.from_pretrained(embedded_hf_dir()).eos_token_id)


def split_indices(n: int, config: DistillConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """(train, held-out) sequence indices: a seeded `heldout_share` of the sequences is held out."""
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(config.seed))
    n_held = max(1, round(config.heldout_share * n))
    return perm[n_held:].sort().values, perm[:n_held].sort().values


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="folder for hmm.safetensors + config.json")
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--n", type=int, default=4000, help="sequences to sample")
    parser.add_argument("--seq-len", type=int, default=48)
    parser.add_argument("--work-dir", default=None)
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--threads", type=int, default=None, help="llama.cpp threads (1 on a busy machine)")
    parser.add_argument("--concurrency", type=int, default=8, help="requests in flight (llama.cpp batch slots)")
    parser.add_argument("--shard-size", type=int, default=200)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    model = None
    if args.threads or args.concurrency != 8:
        from prunekit.decoding.backends.llamacpp import LlamaCppModel

        model = LlamaCppModel.embedded(threads=args.threads, slots=max(args.concurrency, 1))
    config = DistillConfig(
        hidden_size=args.hidden,
        n_sequences=args.n,
        seq_len=args.seq_len,
        concurrency=args.concurrency,
        shard_size=args.shard_size,
    )
    path = distill_hmm(
        args.out,
        config=config,
        work_dir=args.work_dir,
        model=model,
        data_dir=args.data_dir,
    )
    meta = json.loads((path / "config.json").read_text())["metadata"]
    print(
        json.dumps(
            {k: meta[k] for k in ("heldout_loglik_per_token_fp16", "unigram_heldout_loglik_per_token", "em_steps")}
        )
    )


if __name__ == "__main__":
    main()
