"""Context pruning for RAG, after Provence (Chirkova et al., ICLR 2025, arXiv 2501.16214).

One encoder pass over `[CLS] question [SEP] context [SEP]` labels every context token keep/drop and scores the
passage; token decisions are rounded to whole sentences. `ContextPruner()` loads the weights shipped in
`context_pruner/weights/` (trained here, see `train.py`) and runs offline on a CPU.

    >>> from prunekit.context_pruner import default_pruner
    >>> pruner = default_pruner()  # one per process; `ContextPruner(...)` for other weights or options
    >>> contexts = ["The Eiffel Tower is in Paris, France.", "Bananas are rich in potassium."]
    >>> on_topic, off_topic = pruner.prune("Where is the Eiffel Tower?", contexts, threshold=0.5)
    >>> on_topic.pruned_text, off_topic.pruned_text
    ('The Eiffel Tower is in Paris, France.', '')
    >>> on_topic.rerank_score > off_topic.rerank_score
    True

Training (`context_pruner.train`: `train_validate_calibrate` trains, validates and calibrates, refusing evaluation
splits), data readers (`context_pruner.data`), the bench (`eval.bench.pruner`) and the
framework adapters (`context_pruner.integrations`) are imported on demand, never at serve time.
"""

from prunekit.context_pruner.errors import (
    BatchTooLargeError,
    EvaluationSplitError,
    InvalidContextError,
    InvalidOptionError,
    InvalidQuestionError,
    PrunerInputError,
    PrunerWeightsError,
    ShapeMismatchError,
    TrainingDataError,
)
from prunekit.context_pruner.model import PrunerConfig, PrunerModel, check_weights, load_pretrained, save_pretrained
from prunekit.context_pruner.pruner import FIRST_SENTENCE, ContextPruner, PrunedContext, default_pruner, load_pruner
from prunekit.context_pruner.sentences import split_sentences

__all__ = [
    "FIRST_SENTENCE",
    "BatchTooLargeError",
    "ContextPruner",
    "EvaluationSplitError",
    "InvalidContextError",
    "InvalidOptionError",
    "InvalidQuestionError",
    "PrunedContext",
    "PrunerConfig",
    "PrunerInputError",
    "PrunerModel",
    "PrunerWeightsError",
    "ShapeMismatchError",
    "TrainingDataError",
    "check_weights",
    "default_pruner",
    "load_pretrained",
    "load_pruner",
    "save_pretrained",
    "split_sentences",
]
