"""Format guidance for the local backends: a format spec in `GenerationParams.format` becomes a
per-request Deco-G (or hard-mask) logits processor over the backend's own vocabulary.

The distilled HMM for the embedded model ships under `decoding/decog/weights/`; it loads on the first
guided request. Another model needs its own HMM (`prunekit train hmm --model`, then the model's `hmm_dir`), or
`format_method="hard_mask"`.

A spec comes from a request, so it compiles through `decoding.decog.bounded`: static size limits first, then the
automaton in a child process killed at a deadline (`CompileBudget`, `PRUNEKIT_FORMAT_COMPILE_TIMEOUT_S`), cached
by (spec, vocabulary); a format bomb is a 400 in milliseconds, never a stuck worker.
"""

from __future__ import annotations

import json
import threading
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from prunekit.decoding.decog.errors import FormatTooLargeError
from prunekit.decoding.errors import InvalidRequestError
from prunekit.decoding.types import GenerationParams

if TYPE_CHECKING:
    from prunekit.decoding.decog.bounded import CompileBudget

__all__ = ["DEFAULT_CANDIDATE_GAP", "DEFAULT_HMM_DIR", "DEFAULT_PRUNE_MASS", "FormatGuide", "stored_guidance_weight"]

DEFAULT_HMM_DIR = Path(__file__).parent / "weights" / "hmm-smollm2-h128"
DEFAULT_PRUNE_MASS = 0.9  # share of the forward mass whose hidden states the lookahead keeps
# Free-text tokens more than this many nats below the LLM's best (relative probability < 5e-5) share one HMM term
# instead of each getting its own (`DecoGProcessor.candidate_gap`); tokens that move the format on (a pivot's
# start, a closing quote) are always scored exactly. The exact term for every token reads K rows of the (H, V)
# emission matrix per step: on the 2-core AMX VM, where SmolLM2 takes ~11 ms a token, that cost 15-21 % per token
# at H=128 pruned, against 6-10 % with the gap (`prunekit bench decoding`). On the benchmark's prompts a median of
# 59 tokens (90th percentile 365) lie within 10 nats of the best. On 100 SQuAD training items (extract), 186 of 200
# outputs were the same with and without the gap, F1 0.175 vs 0.165.
DEFAULT_CANDIDATE_GAP = 10.0


def stored_guidance_weight(hmm_meta: dict[str, Any], task: str | None = None) -> float:
    """The guidance weight in an HMM's metadata (`prunekit train guidance` chooses it on training items): the one
    chosen for `task` when there is one, else the general one (the service's default for any format), else 1.0
    (Deco-G's plain product of the two distributions)."""
    guidance = hmm_meta.get("guidance", {})
    return float(guidance.get("by_task", {}).get(task, guidance.get("weight", 1.0)))


class FormatGuide:
    """Makes fresh guidance processors for one vocabulary (processors hold per-request state)."""

    def __init__(self, vocab: Any, hmm_dir: Path | None = None, budget: CompileBudget | None = None) -> None:
        self.vocab = vocab  # decoding.decog.TokenVocabulary of the backend's tokenizer
        self.hmm_dir = hmm_dir or DEFAULT_HMM_DIR
        self.budget = budget  # time and memory for compiling one format (None: CompileBudget.from_env())
        self._hmm: Any = None
        self._weight = 1.0
        self._lock = threading.Lock()

    def hmm(self) -> Any:
        from prunekit.decoding.decog import HMM

        with self._lock:
            if self._hmm is None:
                if not (self.hmm_dir / "config.json").is_file():
                    raise InvalidRequestError(
                        f"no distilled HMM at {self.hmm_dir}: run `prunekit train hmm`, or use format_method=hard_mask"
                    )
                self._hmm = HMM.load(self.hmm_dir)
                meta = json.loads((self.hmm_dir / "config.json").read_text()).get("metadata", {})
                self._weight = stored_guidance_weight(meta)
            return self._hmm

    def resolve(self, params: GenerationParams) -> tuple[GenerationParams, dict[str, Any]]:
        """Decide how `params`' output constraint is enforced, and check it can be: `params` left with the one
        constraint that will run, and the report a response carries (`method`, and `states` for an automaton).

        A `format` runs as asked (`format_method`). With a `grammar` beside it, the format is Deco-G's version of
        the same constraint: it runs when its automaton compiles within the budget, else the grammar's hard mask
        (llguidance) does. A grammar llguidance cannot enforce raises `FormatSpecError` (a 400). Compiled automata
        are cached, so the generation that follows pays nothing more."""
        from prunekit.decoding.decog import compile_token_dfa_bounded
        from prunekit.decoding.structured.grammar_mask import check_grammar

        if params.format is not None:
            try:
                dfa = compile_token_dfa_bounded(params.format, self.vocab, budget=self.budget)
                method = params.format_method
                return replace(params, grammar=None), {"method": method, "states": int(dfa.num_states)}
            except FormatTooLargeError:
                if params.grammar is None:
                    raise
        if params.grammar is None:
            return params, {}
        check_grammar(params.grammar, self.vocab)
        return replace(params, format=None), {"method": "llguidance"}

    def processor(self, spec: str, method: str, max_new_tokens: int) -> Any:
        from prunekit.decoding.decog import DecoGProcessor, HardMaskProcessor, compile_token_dfa_bounded

        dfa = compile_token_dfa_bounded(spec, self.vocab, budget=self.budget)
        if method == "hard_mask":
            return HardMaskProcessor(dfa, max_new_tokens)
        prune = DEFAULT_PRUNE_MASS if method == "decog_pruned" else None
        hmm = self.hmm()
        return DecoGProcessor(
            hmm, dfa, max_new_tokens, prune_mass=prune, weight=self._weight, candidate_gap=DEFAULT_CANDIDATE_GAP
        )

    def apply(self, params: GenerationParams) -> GenerationParams:
        """`params` with the format's processor appended (unchanged when no format is asked for)."""
        if params.upstream_fields:
            raise InvalidRequestError(
                f"{', '.join(params.upstream_fields)}: forwarded to a remote server only; a local backend enforces "
                "`format` or `grammar` (the service turns those fields into them)"
            )
        if params.format is None and params.grammar is None:
            return params
        if params.format is not None and params.grammar is not None:
            params, _ = self.resolve(params)
        if params.grammar is not None:
            from prunekit.decoding.structured.grammar_mask import GrammarMaskProcessor

            guide: Any = GrammarMaskProcessor(params.grammar, self.vocab, params.max_tokens)
        else:
            guide = self.processor(params.format, params.format_method, params.max_tokens)
        return replace(params, logits_processors=(*params.logits_processors, guide))
