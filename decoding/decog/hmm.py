"""A hidden Markov model over the LLM's vocabulary: the tractable model behind Deco-G guidance.

Deco-G (Deng, Kung, Peng 2025, arXiv 2510.03595) and Ctrl-G (Zhang et al. 2024, joshuacnf/Ctrl-G) distil the
LLM into an HMM so that "can the output still satisfy the format?" becomes an exact sum over hidden paths.

Generative story, with H hidden states and the tokenizer's V tokens:

    z_1 ~ initial                      # (H,)
    x_t ~ emission[z_t]                # (H, V): row z is a distribution over tokens
    z_{t+1} ~ transition[z_t]          # (H, H): row-stochastic

Parameters are held as probabilities (float32 by default, float64 for exact tests) with their logs beside
them; on disk they are log-probabilities in fp16 (tiny probabilities survive as logs, not as fp16 values).
The forward algorithm is scaled (each step renormalised, the log of the scale summed), so long sequences never
underflow. EM (Baum-Welch) runs on batches of padded token sequences (pad = -1, right-padded), one time step
at a time over the whole batch: emissions are looked up by gathering rows of `emission.T` (V, H), never by
materialising (N, T, H, V).

One M-step serves everything that turns counts into parameters (`HMM.m_step`: counts plus a pseudocount per
entry): Baum-Welch's expected counts (`em_step`, and the distillation's EM loop) and the hard counts of
hidden-state cluster assignments (`assignment_counts`, `from_counts`: the count-based initialisation of Ctrl-G's
latent-variable distillation; the sampling and clustering themselves live in `distill.py`).
"""

from __future__ import annotations

import json
import logging
import math
import uuid
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from prunekit.decoding.decog.errors import HMMFileError, VocabularyMismatchError

__all__ = ["HMM", "PAD", "HMMConfig", "assignment_counts", "check_hmm_dir"]

log = logging.getLogger(__name__)

_WEIGHTS_FILE = "hmm.safetensors"
_CONFIG_FILE = "config.json"
_FILE_FORMAT = "prunekit-hmm"
_FILE_VERSION = 1
PAD = -1  # token id marking the end of a shorter sequence in a padded batch


@dataclass(frozen=True)
class HMMConfig:
    """Sizes of an HMM; saved beside its tensors as JSON."""

    hidden_size: int
    vocab_size: int
    eos_token_id: int | None = None


class HMM:
    """An HMM with `hidden_size` states over `vocab_size` tokens. Immutable: `em_step` returns a new HMM.

    >>> hmm = HMM.random(hidden_size=4, vocab_size=10, seed=0)
    >>> ll = hmm.loglikelihood(torch.tensor([[1, 2, 3], [4, 5, -1]]))  # (2,) log p(x), -1 pads
    >>> ll.shape
    torch.Size([2])
    """

    def __init__(
        self,
        log_initial: torch.Tensor,
        log_transition: torch.Tensor,
        log_emission: torch.Tensor,
        *,
        eos_token_id: int | None = None,
    ) -> None:
        if log_initial.dim() != 1 or log_transition.dim() != 2 or log_emission.dim() != 2:
            raise ValueError("expected log_initial (H,), log_transition (H, H), log_emission (H, V)")
        h = log_initial.shape[0]
        if log_transition.shape != (h, h) or log_emission.shape[0] != h:
            raise ValueError(
                f"shapes disagree: initial {tuple(log_initial.shape)}, transition {tuple(log_transition.shape)}, "
                f"emission {tuple(log_emission.shape)}"
            )
        # Renormalise in log space: parameters read from fp16 or built from counts sum to 1 again exactly.
        self.log_initial = torch.log_softmax(log_initial, dim=0)  # (H,)
        self.log_transition = torch.log_softmax(log_transition, dim=1)  # (H, H)
        self.log_emission = torch.log_softmax(log_emission, dim=1)  # (H, V)
        for name, t in (("initial", self.log_initial), ("transition", self.log_transition)):
            if torch.isnan(t).any():
                raise ValueError(f"HMM {name} has a row with no probability mass")
        if torch.isnan(self.log_emission).any():
            raise ValueError("HMM emission has a row with no probability mass")
        self.initial = self.log_initial.exp()  # (H,)
        self.transition = self.log_transition.exp()  # (H, H)
        self.emission = self.log_emission.exp().contiguous()  # (H, V)
        self._emission_t: torch.Tensor | None = None
        self.eos_token_id = eos_token_id
        # Caches (backward tables) key on this: parameters never change after construction.
        self.fingerprint = uuid.uuid4().hex

    # ------------------------------------------------------------------ sizes and views
    @property
    def hidden_size(self) -> int:
        return int(self.log_initial.shape[0])

    @property
    def vocab_size(self) -> int:
        return int(self.log_emission.shape[1])

    @property
    def config(self) -> HMMConfig:
        return HMMConfig(self.hidden_size, self.vocab_size, self.eos_token_id)

    @property
    def dtype(self) -> torch.dtype:
        return self.initial.dtype

    @property
    def device(self) -> torch.device:
        return self.initial.device

    @property
    def emission_t(self) -> torch.Tensor:
        """`emission.T` as a contiguous (V, H) tensor: a token's column becomes one row to gather."""
        if self._emission_t is None:
            self._emission_t = self.emission.t().contiguous()
        return self._emission_t

    def to(self, dtype: torch.dtype | None = None, device: str | torch.device | None = None) -> HMM:
        """A copy in another dtype or on another device."""
        kw: dict[str, Any] = {"dtype": dtype, "device": device}
        return HMM(
            self.log_initial.to(**kw),
            self.log_transition.to(**kw),
            self.log_emission.to(**kw),
            eos_token_id=self.eos_token_id,
        )

    def __repr__(self) -> str:
        return f"HMM(hidden_size={self.hidden_size}, vocab_size={self.vocab_size}, dtype={self.dtype})"

    # ------------------------------------------------------------------ constructors
    @classmethod
    def random(
        cls,
        hidden_size: int,
        vocab_size: int,
        *,
        seed: int = 0,
        concentration: float = 1.0,
        dtype: torch.dtype = torch.float32,
        eos_token_id: int | None = None,
    ) -> HMM:
        """Parameters drawn from symmetric Dirichlet distributions (small `concentration` = peaky rows)."""
        g = torch.Generator().manual_seed(seed)

        def dirichlet(*shape: int) -> torch.Tensor:
            # Dirichlet = normalised Gamma draws; computed in float64 so tiny concentrations stay positive.
            gam = torch._standard_gamma(torch.full(shape, float(concentration), dtype=torch.float64), generator=g)
            gam = gam.clamp_min(1e-300)
            return (gam / gam.sum(-1, keepdim=True)).log().to(dtype)

        return cls(
            dirichlet(hidden_size),
            dirichlet(hidden_size, hidden_size),
            dirichlet(hidden_size, vocab_size),
            eos_token_id=eos_token_id,
        )

    @classmethod
    def from_counts(
        cls,
        clusters: torch.Tensor,
        tokens: torch.Tensor,
        hidden_size: int,
        vocab_size: int,
        *,
        pseudocount: float = 1e-3,
        eos_token_id: int | None = None,
        dtype: torch.dtype = torch.float32,
    ) -> HMM:
        """Count-based initial parameters from hard hidden-state assignments (Ctrl-G's latent-variable distillation).

        `clusters` (N, T) int: the hidden state of each position (e.g. the k-means cluster of the LLM's last hidden
        state there); `tokens` (N, T) int: the token ids, `-1` after a sequence ends (the same positions are
        ignored in `clusters`). Counts: initial from position 0, transitions between consecutive valid positions,
        emissions (cluster, token). `pseudocount` is spread evenly over each row (`pseudocount / row_size` per
        entry), so no probability is zero. A state reserved for EOS (as Ctrl-G does) is the caller's choice: give
        the EOS positions that cluster id.
        """
        if clusters.shape != tokens.shape or clusters.dim() != 2:
            raise ValueError(f"clusters {tuple(clusters.shape)} and tokens {tuple(tokens.shape)} must both be (N, T)")
        if pseudocount < 0:
            raise ValueError(f"pseudocount must be >= 0, got {pseudocount}")
        clusters, tokens = clusters.long(), tokens.long()
        valid = tokens >= 0  # (N, T)
        if valid.any():
            if int(tokens[valid].max()) >= vocab_size:
                raise VocabularyMismatchError(f"a token id >= vocab_size {vocab_size}")
            cv = clusters[valid]
            if int(cv.min()) < 0 or int(cv.max()) >= hidden_size:
                raise ValueError(f"cluster ids must lie in [0, {hidden_size}) at every valid position")
        h, v = hidden_size, vocab_size
        counts = assignment_counts(clusters, tokens, h, v)
        return cls.m_step(
            counts, (pseudocount / h, pseudocount / h, pseudocount / v), eos_token_id=eos_token_id, dtype=dtype
        )

    @classmethod
    def m_step(
        cls,
        counts: Mapping[str, torch.Tensor],
        pseudocounts: tuple[float, float, float],
        *,
        eos_token_id: int | None = None,
        dtype: torch.dtype = torch.float32,
    ) -> HMM:
        """Parameters from counts (`initial` (H,), `transition` (H, H), `emission` (H, V); expected or hard) plus
        a pseudocount per entry of each table (a symmetric Dirichlet prior). A row with no mass at all (possible
        only with a zero pseudocount: a hidden state EM never visits) becomes uniform: its value cannot change the
        likelihood."""
        tables = [
            _safe_log_normalise(counts[name].double() + pc, dim=-1).to(dtype)
            for name, pc in zip(("initial", "transition", "emission"), pseudocounts, strict=True)
        ]
        return cls(*tables, eos_token_id=eos_token_id)

    # ------------------------------------------------------------------ inference
    def _check_tokens(self, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if tokens.dim() != 2:
            raise ValueError(f"tokens must be (N, T), got {tuple(tokens.shape)}")
        tokens = tokens.to(self.device).long()
        mask = tokens >= 0  # (N, T)
        if tokens.shape[1] == 0 or not bool(mask[:, 0].all()):
            raise ValueError("every sequence needs at least one token (pads, -1, only at the end)")
        if bool((mask[:, 1:] & ~mask[:, :-1]).any()):
            raise ValueError("pads (-1) must only follow the tokens of a sequence (right padding)")
        if int(tokens.max()) >= self.vocab_size:
            raise VocabularyMismatchError(f"a token id >= the HMM's vocab_size {self.vocab_size}")
        return tokens.clamp_min(0), mask

    def _emit(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Emission probabilities of one time step: (N,) ids -> (N, H), 1.0 at pads (they emit nothing)."""
        e = self.emission_t.index_select(0, ids)  # (N, H)
        return torch.where(mask[:, None], e, torch.ones((), dtype=e.dtype, device=e.device))

    def _forward_chunk(self, ids: torch.Tensor, mask: torch.Tensor, keep: bool) -> tuple[torch.Tensor, Any, Any]:
        """Scaled forward pass. Returns log p(x) (N,), the filtered posteriors (T, N, H) if `keep`, scales (T, N)."""
        n, t_len = ids.shape
        tiny = torch.finfo(self.dtype).tiny
        alphas = torch.empty(t_len, n, self.hidden_size, dtype=self.dtype, device=self.device) if keep else None
        scales = torch.ones(t_len, n, dtype=self.dtype, device=self.device)
        a = self.initial.expand(n, -1)  # (N, H): p(z_1)
        for t in range(t_len):
            if t > 0:
                a = a @ self.transition  # (N, H): p(z_t | x_<t)
            a = a * self._emit(ids[:, t], mask[:, t])
            c = torch.where(mask[:, t], a.sum(1).clamp_min(tiny), torch.ones((), dtype=self.dtype))  # (N,)
            a = a / c[:, None]  # (N, H): p(z_t | x_<=t)
            scales[t] = c
            if alphas is not None:
                alphas[t] = a
        return scales.log().sum(0), alphas, scales

    @torch.no_grad()
    def loglikelihood(self, tokens: torch.Tensor, batch_size: int = 1024) -> torch.Tensor:
        """log p(x) of each sequence (N,), by the forward algorithm. `tokens` (N, T), right-padded with -1."""
        ids, mask = self._check_tokens(tokens)
        out = [
            self._forward_chunk(ids[i : i + batch_size], mask[i : i + batch_size], keep=False)[0]
            for i in range(0, ids.shape[0], batch_size)
        ]
        return torch.cat(out)

    @torch.no_grad()
    def expected_counts(self, tokens: torch.Tensor, batch_size: int = 1024) -> tuple[dict[str, torch.Tensor], float]:
        """E-step: expected initial (H,), transition (H, H) and emission (H, V) counts, and the total log p(x).

        Memory per chunk: the filtered posteriors (T, chunk, H) plus the (V, H) emission counts.
        """
        ids, mask = self._check_tokens(tokens)
        h = self.hidden_size
        count_init = torch.zeros(h, dtype=self.dtype, device=self.device)
        count_trans = torch.zeros(h, h, dtype=self.dtype, device=self.device)  # sum of alpha_t^T w_{t+1}
        count_emis_t = torch.zeros(self.vocab_size, h, dtype=self.dtype, device=self.device)  # (V, H)
        total = 0.0
        for i in range(0, ids.shape[0], batch_size):
            x, m = ids[i : i + batch_size], mask[i : i + batch_size]
            ll, alphas, scales = self._forward_chunk(x, m, keep=True)
            total += float(ll.sum())
            b = torch.ones_like(alphas[0])  # (N, H): scaled backward message at the last step
            for t in range(x.shape[1] - 1, -1, -1):
                gamma = alphas[t] * b * m[:, t, None]  # (N, H): p(z_t | x), zero at pads
                count_emis_t.index_add_(0, x[:, t], gamma)
                if t == 0:
                    count_init += gamma.sum(0)
                    break
                w = self._emit(x[:, t], m[:, t]) * b / scales[t][:, None]  # (N, H): E_t(j) b_t(j) / c_t
                # xi_{t-1}(i, j) = alpha_{t-1}(i) T(i, j) w(j); T(i, j) is multiplied in once, in the M-step.
                count_trans += alphas[t - 1].t() @ (w * m[:, t, None])  # (H, N) @ (N, H)
                b_prev = w @ self.transition.t()  # (N, H)
                b = torch.where(m[:, t, None], b_prev, torch.ones((), dtype=self.dtype))  # ended: message is 1
        counts = {"initial": count_init, "transition": count_trans * self.transition, "emission": count_emis_t.t()}
        return counts, total

    def em_step(self, tokens: torch.Tensor, *, pseudocount: float = 1e-3, batch_size: int = 1024) -> tuple[HMM, float]:
        """One Baum-Welch step over all `tokens` (N, T). Returns (the new HMM, total log p(x) under the OLD one).

        `pseudocount` per row as in `from_counts` (a symmetric Dirichlet prior): with it the step never lowers
        log p(x) + `log_prior(pseudocount)`; with 0 it never lowers log p(x).
        """
        counts, total = self.expected_counts(tokens, batch_size)
        h, v = self.hidden_size, self.vocab_size
        pseudocounts = (pseudocount / h, pseudocount / h, pseudocount / v)
        return HMM.m_step(counts, pseudocounts, eos_token_id=self.eos_token_id, dtype=self.dtype), total

    def log_prior(self, pseudocount: float) -> float:
        """log of the (unnormalised) Dirichlet prior that `pseudocount` stands for: sum (pc / row_size) log theta."""
        if pseudocount == 0:
            return 0.0
        h, v = self.hidden_size, self.vocab_size
        terms = (
            (pseudocount / h) * self.log_initial.double().sum(),
            (pseudocount / h) * self.log_transition.double().sum(),
            (pseudocount / v) * self.log_emission.double().sum(),
        )
        return float(sum(terms))

    # ------------------------------------------------------------------ files
    def save(self, path: str | Path, *, metadata: dict[str, Any] | None = None) -> Path:
        """Write `path/hmm.safetensors` (log-parameters, fp16) and `path/config.json`. Returns the folder."""
        folder = Path(path)
        folder.mkdir(parents=True, exist_ok=True)
        tensors = {
            "log_initial": self.log_initial.detach().to("cpu", torch.float16).contiguous(),
            "log_transition": self.log_transition.detach().to("cpu", torch.float16).contiguous(),
            "log_emission": self.log_emission.detach().to("cpu", torch.float16).contiguous(),
        }
        save_file(tensors, str(folder / _WEIGHTS_FILE))
        config = {"format": _FILE_FORMAT, "version": _FILE_VERSION, **asdict(self.config), "metadata": metadata or {}}
        (folder / _CONFIG_FILE).write_text(json.dumps(config, indent=2) + "\n")
        return folder

    @classmethod
    def load(cls, path: str | Path, *, dtype: torch.dtype = torch.float32, device: str = "cpu") -> HMM:
        """Read an HMM written by `save` (a folder with hmm.safetensors and config.json)."""
        folder = Path(path)
        weights, config_path = folder / _WEIGHTS_FILE, folder / _CONFIG_FILE
        if not weights.is_file() or not config_path.is_file():
            raise HMMFileError(f"{folder} must contain {_WEIGHTS_FILE} and {_CONFIG_FILE} (written by HMM.save)")
        config = json.loads(config_path.read_text())
        if config.get("format") != _FILE_FORMAT:
            raise HMMFileError(f"{config_path} is not a prunekit HMM config (format={config.get('format')!r})")
        t = load_file(str(weights))
        h, v = int(config["hidden_size"]), int(config["vocab_size"])
        expected = {"log_initial": (h,), "log_transition": (h, h), "log_emission": (h, v)}
        for name, shape in expected.items():
            if name not in t or tuple(t[name].shape) != shape:
                got = tuple(t[name].shape) if name in t else None
                raise HMMFileError(f"{weights}: {name} should have shape {shape}, found {got}")
        kw: dict[str, Any] = {"dtype": dtype, "device": device}
        return cls(
            t["log_initial"].to(**kw),
            t["log_transition"].to(**kw),
            t["log_emission"].to(**kw),
            eos_token_id=config.get("eos_token_id"),
        )


def check_hmm_dir(path: Path) -> Path:
    """`path` when it holds a saved HMM (what `HMM.save` writes); an `HMMFileError` naming the files otherwise."""
    if all((path / name).is_file() for name in (_CONFIG_FILE, _WEIGHTS_FILE)):
        return path
    raise HMMFileError(f"no HMM in {path} ({_CONFIG_FILE} + {_WEIGHTS_FILE})")


def _safe_log_normalise(counts: torch.Tensor, dim: int) -> torch.Tensor:
    """log(counts / sum): rows with no mass become uniform rather than NaN."""
    total = counts.sum(dim, keepdim=True)
    uniform = torch.full_like(counts, -math.log(counts.shape[dim]))
    return torch.where(total > 0, (counts / total.clamp_min(1e-300)).log(), uniform)


def assignment_counts(
    clusters: torch.Tensor, tokens: torch.Tensor, hidden_size: int, vocab_size: int
) -> dict[str, torch.Tensor]:
    """Initial (H,), transition (H, H) and emission (H, V) counts (float64) of hard hidden-state assignments
    `clusters` (N, T) to `tokens` (N, T); padding positions (negative token ids, PAD) are ignored."""
    clusters, tokens = clusters.long(), tokens.long()
    valid = tokens >= 0
    h, v = hidden_size, vocab_size
    init = torch.bincount(clusters[:, 0][valid[:, 0]], minlength=h).double()
    pair = valid[:, :-1] & valid[:, 1:]  # (N, T-1): both ends of the transition are real tokens
    trans = torch.bincount(clusters[:, :-1][pair] * h + clusters[:, 1:][pair], minlength=h * h).double().view(h, h)
    emis = torch.bincount(clusters[valid] * v + tokens[valid], minlength=h * v).double().view(h, v)
    return {"initial": init, "transition": trans, "emission": emis}
