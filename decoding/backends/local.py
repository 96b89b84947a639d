"""`LocalModel`: a transformers causal LM run in-process (the training path and the fallback backend).

Concurrency: one lock per model. A 135M model on a 2-core CPU is compute-bound, so running two
generations side by side only splits the same cores; the lock keeps each request fast and the
memory flat. Throughput under concurrency comes from the llama.cpp backend's batching
(`decoding.backends.llamacpp`), not from here. `generate_batch` offers batched HF `generate` for offline jobs.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from prunekit.decoding.backends.embedded import EMBEDDED_MODEL_NAME, embedded_hf_dir
from prunekit.decoding.backends.penalties import TokenPenalties
from prunekit.decoding.backends.sampling import make_generator, pick_next_token, sample_with_logprobs
from prunekit.decoding.backends.stops import StopMatcher
from prunekit.decoding.backends.token_logprobs import LogprobAligner, token_logprob
from prunekit.decoding.cancel import check_cancelled
from prunekit.decoding.decog.guided import FormatGuide
from prunekit.decoding.errors import InvalidRequestError
from prunekit.decoding.types import ChatChunk, ChatResult, GenerationParams, Usage, collect, normalize_messages

if TYPE_CHECKING:
    from prunekit.decoding.decog.vocab import TokenVocabulary

__all__ = ["LocalModel"]

log = logging.getLogger(__name__)


class LocalModel:
    """A chat model from a transformers model folder (a `decoding.LocalBackend`).

    >>> model = LocalModel.embedded()
    >>> messages = [{"role": "user", "content": "What is the capital of France?"}]
    >>> result = model.chat(messages, GenerationParams(max_tokens=8))
    >>> result.model, result.finish_reason in ("stop", "length"), result.usage.completion_tokens <= 8
    ('SmolLM2-135M-Instruct', True, True)
    >>> isinstance(result.text, str)  # e.g. 'The capital of France is Paris.': it may differ by CPU
    True
    """

    def __init__(self, path: str | Path, *, name: str | None = None, hmm_dir: str | Path | None = None) -> None:
        from transformers import AutoModelForCausalLM, AutoTokenizer
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()  # a 1 s load needs no bar; first-use conversion has its own message

        path = Path(path)
        if not (path / "config.json").is_file():
            raise InvalidRequestError(f"{path} is not a transformers model folder (no config.json)")
        self.path = path
        self.name = name or path.name
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        self.model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
        self.context_length = int(getattr(self.model.config, "max_position_embeddings", 2048))
        self.eos_token_ids = _eos_ids(self.tokenizer, self.model.generation_config)
        eos = self.tokenizer.eos_token_id
        # the id that ends a reply (HMM distillation reserves a state for it)
        self.eos_token_id: int | None = int(eos) if eos is not None else min(self.eos_token_ids, default=None)
        self._lock = threading.Lock()
        self._guide: FormatGuide | None = None
        self.hmm_dir = Path(hmm_dir) if hmm_dir is not None else None  # Deco-G's HMM (None: the shipped one)
        self.reused_prompt_tokens: int | None = None  # no prompt cache: every request prefills its whole prompt

    @classmethod
    def embedded(
        cls, cache_dir: Path | None = None, hmm_dir: str | Path | None = None, adapter: Path | None = None
    ) -> LocalModel:
        """The embedded SmolLM2-135M-Instruct (converted from its GGUF on first use), with the LoRA `adapter`
        (a peft folder) merged into its weights when one is given."""
        name = EMBEDDED_MODEL_NAME + (f"+{Path(adapter).name}" if adapter is not None else "")
        model = cls(embedded_hf_dir(cache_dir), name=name, hmm_dir=hmm_dir)
        if adapter is not None:
            model.merge_adapter(adapter)
        return model

    def merge_adapter(self, adapter: str | Path) -> None:
        """Merge a LoRA adapter (peft folder) into the weights: the model then runs at its usual speed."""
        from peft import PeftModel

        from prunekit.decoding.backends.lora_merge import adapter_fingerprint

        adapter_fingerprint(adapter)  # a clear error for a folder that is not an adapter
        self.model = PeftModel.from_pretrained(self.model, str(adapter)).merge_and_unload().eval()

    # ----------------------------------------------------------------- ChatModel
    def chat(self, messages: Sequence[Mapping[str, Any]], params: GenerationParams | None = None) -> ChatResult:
        return collect(self.stream(messages, params), model=self.name)

    def stream(
        self, messages: Sequence[Mapping[str, Any]], params: GenerationParams | None = None
    ) -> Iterator[ChatChunk]:
        params = self.format_guide().apply(params or GenerationParams())
        prompt_ids = self.encode_chat(messages)
        self._check_budget(len(prompt_ids), params.max_tokens)
        return self._locked_stream(prompt_ids, params)

    def format_guide(self) -> FormatGuide:
        """Format guidance over this tokenizer's vocabulary (built on first use)."""
        if self._guide is None:
            from prunekit.decoding.decog import TokenVocabulary

            vocab = TokenVocabulary.from_tokenizer(self.tokenizer, sorted(self.eos_token_ids))
            self._guide = FormatGuide(vocab, self.hmm_dir)
        return self._guide

    def vocabulary(self) -> TokenVocabulary:
        """The vocabulary formats compile against (this tokenizer's, with every EOS of the model)."""
        return self.format_guide().vocab

    def close(self) -> None:
        """Nothing to free ahead of the garbage collector (no threads, no native memory of its own)."""

    # ----------------------------------------------------------------- tokens and scoring
    def encode_chat(self, messages: Sequence[Mapping[str, Any]]) -> list[int]:
        """Token ids of the conversation in the model's chat template, ready for the answer."""
        msgs = normalize_messages(messages)
        ids = self.tokenizer.apply_chat_template(msgs, add_generation_prompt=True, tokenize=True, return_dict=True)
        return list(ids["input_ids"])

    def tokenize(self, text: str, *, special: bool = True) -> list[int]:
        """Token ids of `text` (no BOS); `special`: text such as `<|im_end|>` becomes its special token."""
        return list(self.tokenizer.encode(text, add_special_tokens=False, split_special_tokens=not special))

    def detokenize(self, ids: Sequence[int]) -> str:
        """The text of `ids`, special tokens left out."""
        return self.tokenizer.decode(list(ids), skip_special_tokens=True)

    def next_token_logprobs(self, input_ids: Sequence[int]) -> torch.Tensor:
        """Log-probabilities `(V,)` of the token that follows `input_ids`."""
        with self._lock, torch.inference_mode():
            logits = self.model(torch.tensor([list(input_ids)])).logits[0, -1]  # (V,)
        return torch.log_softmax(logits.float(), dim=-1)

    def sequence_logprobs(self, prompt_ids: Sequence[int], completion_ids: Sequence[int]) -> list[float]:
        """Log-probability of each completion token given the prompt and the tokens before it."""
        if not completion_ids:
            return []
        ids = torch.tensor([list(prompt_ids) + list(completion_ids)])
        with self._lock, torch.inference_mode():
            logits = self.model(ids).logits[0, len(prompt_ids) - 1 : -1]  # (C, V)
        logp = torch.log_softmax(logits.float(), dim=-1)
        return logp.gather(1, torch.tensor(list(completion_ids))[:, None])[:, 0].tolist()

    def generate_batch(
        self, conversations: Sequence[Sequence[Mapping[str, Any]]], params: GenerationParams | None = None
    ) -> list[ChatResult]:
        """Plain HF `generate` over a left-padded batch (offline jobs and the speed baseline).

        No format guidance here: its processors follow one sequence each (use `chat`/`stream` per request).
        """
        params = params or GenerationParams()
        if params.format is not None:
            raise InvalidRequestError("generate_batch does not apply formats: use chat() per request")
        if params.penalized:
            raise InvalidRequestError("generate_batch does not apply penalties: use chat() per request")
        if params.logprobs:
            raise InvalidRequestError("generate_batch does not report logprobs: use chat() per request")
        if params.logits_processors and len(conversations) > 1:
            raise InvalidRequestError("logits processors run one sequence at a time: use chat() per request")
        prompts = [self.encode_chat(c) for c in conversations]
        if not prompts:
            return []
        for prompt in prompts:
            self._check_budget(len(prompt), params.max_tokens)
        width = max(len(p) for p in prompts)
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else min(self.eos_token_ids)
        input_ids = torch.tensor([[pad] * (width - len(p)) + p for p in prompts])  # (B, T)
        attention = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts])
        sampling = {} if params.greedy else {"temperature": params.temperature, "top_p": params.top_p}
        if params.seed is not None:
            torch.manual_seed(params.seed)
        with self._lock, torch.inference_mode():
            out = self.model.generate(
                input_ids=input_ids,
                attention_mask=attention,
                max_new_tokens=params.max_tokens,
                do_sample=not params.greedy,
                pad_token_id=pad,
                eos_token_id=sorted(self.eos_token_ids),
                logits_processor=list(params.logits_processors) or None,
                **sampling,
            )
        results = []
        for prompt, row in zip(prompts, out[:, width:].tolist(), strict=True):
            ids = _cut_at_eos(row, self.eos_token_ids)
            hit_eos = len(ids) < len(row) and row[len(ids)] in self.eos_token_ids
            text = self.tokenizer.decode(ids, skip_special_tokens=True)
            matcher = StopMatcher(params.stop)
            text = matcher.feed(text) + matcher.flush()
            finish = "stop" if hit_eos or matcher.stopped else "length"
            results.append(ChatResult(text, finish, Usage(len(prompt), len(ids)), model=self.name))
        return results

    def _check_budget(self, prompt_tokens: int, max_tokens: int) -> None:
        if prompt_tokens + max_tokens > self.context_length:
            raise InvalidRequestError(
                f"prompt ({prompt_tokens} tokens) + max_tokens ({max_tokens}) exceeds the model's "
                f"context of {self.context_length} tokens: shorten the prompt or lower max_tokens"
            )

    def _locked_stream(self, prompt_ids: list[int], params: GenerationParams) -> Iterator[ChatChunk]:
        with self._lock:
            yield from self._generate(prompt_ids, params)

    @torch.inference_mode()
    def _generate(self, prompt_ids: list[int], params: GenerationParams) -> Iterator[ChatChunk]:
        """Token loop with a KV cache, so every step can pass through the logits processors."""
        generator = make_generator(params.seed)
        penalties = TokenPenalties.for_params(params) if params.penalized else None
        matcher = StopMatcher(params.stop)
        aligner = LogprobAligner() if params.logprobs else None
        sequence = torch.tensor([prompt_ids])  # (1, T): what the processors see
        generated: list[int] = []
        text = shown = ""  # the answer decoded so far / the part of it fed to the stop matcher
        finish = "length"
        out = self.model(sequence, use_cache=True)
        for _ in range(params.max_tokens):
            check_cancelled()  # a request whose client left stops here, and frees the model's lock
            scores = out.logits[:, -1, :].float()  # (1, V)
            if penalties is not None:
                scores = scores.clone()
                penalties.apply(scores[0])
            for processor in params.logits_processors:
                scores = processor(sequence, scores)
            if aligner is None:
                token = pick_next_token(scores[0], params.temperature, params.top_p, generator)
            else:
                token, logprobs = sample_with_logprobs(scores[0], params.temperature, params.top_p, generator)
            if token in self.eos_token_ids:
                finish = "stop"
                break
            generated.append(token)
            if penalties is not None:
                penalties.observe(token)
            sequence = torch.cat([sequence, torch.tensor([[token]])], dim=1)
            text = self.tokenizer.decode(generated, skip_special_tokens=True)
            added = "" if text.endswith("\ufffd") else text[len(shown) :]  # wait for the rest of a character
            shown += added
            delta = matcher.feed(added)
            if aligner is None:
                if delta:
                    yield ChatChunk(delta)
            else:
                aligner.token(token_logprob(logprobs, token, params.top_logprobs, self._token_name), added)
                released = aligner.release(delta, stopped=matcher.stopped)
                if delta or released:
                    yield ChatChunk(delta, logprobs=released)
            if matcher.stopped:
                finish = "stop"
                break
            out = self.model(torch.tensor([[token]]), cache=out.cache, use_cache=True)
        tail = matcher.feed(text[len(shown) :]) + matcher.flush()  # a character cut short by max_tokens: U+FFFD
        released = None if aligner is None else aligner.release(tail, end=True)
        yield ChatChunk(tail, finish_reason=finish, usage=Usage(len(prompt_ids), len(generated)), logprobs=released)

    def _token_name(self, token: int) -> tuple[str, tuple[int, ...]]:
        """How a log-prob entry names `token`: its text (a special token by its name) and its exact bytes (a token
        may end inside a UTF-8 character, whose text then shows U+FFFD)."""
        raw = self.vocabulary().token_bytes[token]
        if raw is None:  # special tokens have no bytes in the vocabulary: they never appear inside text
            raw = str(self.tokenizer.convert_ids_to_tokens(token)).encode()
        return raw.decode("utf-8", errors="replace"), tuple(raw)


def _eos_ids(tokenizer: Any, generation_config: Any) -> frozenset[int]:
    ids: set[int] = set()
    for value in (tokenizer.eos_token_id, getattr(generation_config, "eos_token_id", None)):
        if isinstance(value, int):
            ids.add(value)
        elif isinstance(value, list | tuple):
            ids.update(int(v) for v in value)
    return frozenset(ids)


def _cut_at_eos(ids: list[int], eos: frozenset[int]) -> list[int]:
    for i, token in enumerate(ids):
        if token in eos:
            return ids[:i]
    return ids
