"""Training entry points of LearNAT (arXiv 2504.02327): decomposition synthesis, then margin-aware DPO.

    synthesize(data_dir, out)        # tree search over train_spider_slim.json -> trajectories JSONL
    train_dpo([out], adapter_dir)    # LoRA adapters trained on the search's preference pairs

Both resume: `synthesize` skips the questions already in its JSONL file; `train_dpo` continues from its
last checkpoint. Both show a progress bar. The CLI (`prunekit train nl2sql --synthesize/--dpo`) calls
these. Never imported at serve time.

Scale: on this project's CPU with the embedded SmolLM2-135M, synthesis takes tens of seconds a question
and DPO a few seconds a step, enough to check that everything runs end to end. Real runs belong on a
GPU with a bigger model served by an OpenAI-compatible server for synthesis (`decoding.backends.openai_http`) and
loaded by path for DPO (`model_path`), e.g. Qwen2.5-Coder-7B as in the paper.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from prunekit.decoding.protocol import ChatModel
from prunekit.nl2sql.dpo import DPOConfig, DPOStats, train_margin_dpo
from prunekit.nl2sql.retrieval import TRAIN_FILES, RetrievalError, load_train_examples
from prunekit.nl2sql.schema import Schema, load_spider_tables, render_schema, with_examples
from prunekit.nl2sql.synthesis import SearchConfig, load_pairs, synthesize_file

__all__ = ["synthesize", "train_dpo"]

log = logging.getLogger(__name__)


def synthesize(
    data_dir: str | Path,
    out_path: str | Path,
    *,
    model: ChatModel | None = None,
    train_file: str = "train_spider_slim.json",
    start: int = 0,
    limit: int | None = None,
    config: SearchConfig | None = None,
    concurrency: int = 2,
    resume: bool = True,
    progress: bool = True,
) -> dict[str, Any]:
    """Search decompositions of training questions `[start, start + limit)` into `out_path` (JSONL).

    `model` defaults to the embedded model. Questions whose database has no schema in tables.json are
    skipped. Returns the counts of `synthesis.synthesize_file` plus `skipped_no_schema`.
    """
    if train_file not in TRAIN_FILES:
        raise RetrievalError(f"train_file must be one of {TRAIN_FILES}, got {train_file!r}")
    data_dir = Path(data_dir)
    examples = load_train_examples(data_dir / train_file)
    end = len(examples) if limit is None else start + limit
    chosen = examples[start:end]
    schemas = load_spider_tables(data_dir / "tables.json")
    runnable = [(e.index, e.db_id, e.question, e.query) for e in chosen if e.db_id in schemas]
    if model is None:
        from prunekit.decoding.backends.loader import load_embedded

        model = load_embedded()

    @functools.lru_cache(maxsize=64)
    def schema_text(db_id: str) -> str:
        schema: Schema = schemas[db_id]
        db = data_dir / "database" / db_id / f"{db_id}.sqlite"
        if db.is_file():
            schema = with_examples(schema, db, n_examples=2)
        return render_schema(schema)

    stats = synthesize_file(
        model, runnable, schema_text, out_path, config=config, concurrency=concurrency, resume=resume, progress=progress
    )
    stats["skipped_no_schema"] = len(chosen) - len(runnable)
    return stats


def train_dpo(
    trajectories: Sequence[str | Path],
    out_dir: str | Path,
    *,
    model_path: str | Path | None = None,
    config: DPOConfig | None = None,
    resume: bool = True,
    progress: bool = True,
) -> DPOStats:
    """Margin-aware DPO with LoRA on the pairs of the trajectories files; adapters in `<out_dir>/adapter`.

    `model_path` is a transformers model folder; None takes the embedded SmolLM2-135M.
    """
    from prunekit.decoding.backends.local import LocalModel

    pairs = load_pairs(trajectories)
    log.info("%d preference pairs from %d files", len(pairs), len(trajectories))
    local = LocalModel(model_path) if model_path is not None else LocalModel.embedded()
    _, stats = train_margin_dpo(
        local.model, local.tokenizer, pairs, out_dir, config=config, resume=resume, progress=progress
    )
    return stats
