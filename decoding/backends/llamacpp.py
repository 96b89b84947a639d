"""`LlamaCppModel`: the embedded model's fast path, llama.cpp with continuous batching.

Why llama.cpp: on a 2-core CPU, transformers' eager PyTorch runs SmolLM2-135M at ~16 tokens/s;
llama.cpp's quantized kernels run the same weights at ~100 tokens/s. We drive llama.cpp through
the low-level API of `llama-cpp-python` rather than its `Llama` class, because we need two things
that class does not give: several requests decoded in one batch, and the full next-token logits at
every step for transformers-style logits processors (Deco-G guidance, hard masks).

Design: one model, one context with `slots` sequences, and one scheduler thread. Each step the
scheduler admits waiting requests (prefilling their prompts), then decodes the next token of every
active sequence in a single `llama_decode` call, runs each sequence's logits processors and sampler,
and hands the text to the request's queue. Requests come from any thread; their results stream back
through those queues. Each sequence has a KV cache of its own (`slot_context` cells) rather than one
cache shared by all: in a shared cache every token attends over the cells of every sequence (masked),
so with 8 long prompts in flight prefill ran at half speed and decoding at two thirds (measured here:
900-token prefill beside 7 others 220 vs 449 tokens/s; 8-sequence step 99 vs 65 ms). Memory cost:
the weights (Q8_0, ~145 MB) + `slots * slot_context` KV cells (~23 KB per cell for SmolLM2 in f16,
so ~566 MB for 8 x 3072, which keeps the service under 1.5 GB) + ~100 MB of compute buffers,
whatever the number of concurrent requests. A request's prompt + answer must fit its sequence's cache
(3072 tokens by default, `slot_context`; the model was trained to 8192). A sequence's cache keeps its last
request's tokens: the next request that starts the same way (a chat's next turn, an agent's next call on the
same task, the chat template's header) is given that sequence and prefills only the rest (`_claim`).

Weights (`quant`): the package ships Q4_1 (layers) with a Q8_0 embedding matrix, which is also the output head.
  - `q4_1`: the shipped file as it is. The default where llama.cpp's Intel AMX kernels run
    (`decoding.backends.llamacpp_amx`): there its 4-bit kernels are the fastest, single stream and batched (2-core Xeon
    VM: ~80 tokens/s single stream, ~200 at batch 8, 500-token prompt in ~0.65 s, against ~68 / ~185 / ~0.6 s
    for Q8_0 and ~61 / ~125 / ~1.2 s for Q8_0 without AMX).
  - `q8_0`: re-encoded once into the cache (`prepare_fast_weights`). The default elsewhere: on a 2-core AMD EPYC
    its kernels beat Q4_1's (single stream ~110 vs ~98 tokens/s, batch 8 ~195 vs ~146). Both keep the shipped
    weights' quality (perplexity on 3,068 tokens of SQuAD train paragraphs: f16 17.64, Q4_1 17.72, Q8_0 17.76),
    while re-encoding to the 4-bit kinds that llama.cpp repacks for its AVX kernels does not (Q4_0 22.5,
    Q4_K 19.0). llama.cpp's quantized kernels also quantize the activations to 8 bits, so greedy output drifts
    from the transformers path (fp32 activations over the de-quantized weights) wherever two tokens are nearly
    tied; `prunekit bench decode` measures the agreement.
  - `f16` (fidelity): the de-quantized Q4_1 values in f16 with f32 activations: the same greedy
    output as the transformers path, at ~75 tokens/s single stream and ~200 at batch 8 on the EPYC (~45
    single stream on the Xeon VM).
"""

from __future__ import annotations

import codecs
import ctypes
import logging
import os
import queue
import threading
from collections import deque
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import llama_cpp as llama
import numpy as np
import torch
from jinja2.sandbox import ImmutableSandboxedEnvironment

from prunekit.decoding.backends.embedded import EMBEDDED_MODEL_NAME, default_cache_dir, embedded_gguf_path
from prunekit.decoding.backends.llamacpp_amx import amx_kernels_work, cpu_has_amx
from prunekit.decoding.backends.lora_merge import adapter_fingerprint
from prunekit.decoding.backends.penalties import TokenPenalties
from prunekit.decoding.backends.sampling import make_generator, pick_next_token, sample_with_logprobs
from prunekit.decoding.backends.stops import StopMatcher
from prunekit.decoding.backends.token_logprobs import LogprobAligner, token_logprob
from prunekit.decoding.cancel import CancelToken, RequestCancelledError, current_token
from prunekit.decoding.decog.guided import FormatGuide
from prunekit.decoding.errors import BackendError, InvalidRequestError
from prunekit.decoding.types import ChatChunk, ChatResult, GenerationParams, Usage, collect, normalize_messages

if TYPE_CHECKING:
    from prunekit.decoding.decog.vocab import TokenVocabulary

__all__ = ["QUANTS", "LlamaCppModel", "default_quant", "prepare_fast_weights"]

log = logging.getLogger(__name__)
logging.getLogger("llama-cpp-python").setLevel(logging.ERROR)  # llama.cpp's load chatter

_QUANT_TYPES = {"q8_0": llama.LLAMA_FTYPE_MOSTLY_Q8_0, "f16": llama.LLAMA_FTYPE_MOSTLY_F16}  # re-encoded kinds
QUANTS = ("q4_1", *_QUANT_TYPES)
_BACKEND_READY = False
_BACKEND_LOCK = threading.Lock()


def _init_backend() -> None:
    global _BACKEND_READY
    with _BACKEND_LOCK:
        if not _BACKEND_READY:
            llama.llama_backend_init()
            _BACKEND_READY = True


def _extra_buffers_work(gguf_path: Path) -> bool:
    """Whether to let llama.cpp move the weights into its repacked / AMX kernels ("extra buffer types").

    Everywhere but on AMX CPUs this is llama.cpp's default. On those, a build whose AMX kernels crash kills
    the process with SIGILL, so they are probed once in a child process first (`decoding.backends.llamacpp_amx`).
    """
    return not cpu_has_amx() or amx_kernels_work(gguf_path)


def default_quant() -> str:
    """`q4_1` (the shipped weights) where llama.cpp's AMX kernels run, `q8_0` elsewhere (module doc)."""
    return "q4_1" if cpu_has_amx() and amx_kernels_work(embedded_gguf_path()) else "q8_0"


def prepare_fast_weights(cache_dir: Path | None = None, quant: str | None = None, adapter: Path | None = None) -> Path:
    """The embedded model's GGUF for `quant` (default: `default_quant()`): the shipped file for `q4_1`, else a
    copy in the cache, re-encoded from the shipped Q4_1 once (~2 s).

    `adapter`: a LoRA adapter folder (peft) merged into the weights first (`lora_merge`), so the model runs at the
    base model's speed; the merged file is cached under the adapter's fingerprint (~10 s the first time).
    """
    quant = quant or default_quant()
    if quant not in QUANTS:
        raise InvalidRequestError(f"quant must be one of {list(QUANTS)}, got {quant!r}")
    if adapter is None and quant == "q4_1":
        return embedded_gguf_path()
    cache = cache_dir or default_cache_dir()
    tag = f"+{adapter_fingerprint(adapter)}" if adapter is not None else ""
    target = cache / f"SmolLM2-135M-Instruct{tag}.{quant.upper()}.gguf"
    if target.is_file():
        return target
    _init_backend()
    target.parent.mkdir(parents=True, exist_ok=True)
    source = embedded_gguf_path()
    merged: Path | None = None
    if adapter is not None:
        from prunekit.decoding.backends.lora_merge import merge_lora_into_gguf

        merged = merge_lora_into_gguf(source, adapter, target.with_suffix(f".merged{os.getpid()}"))
        source = merged
    try:
        _quantize(source, target, quant)
    finally:
        if merged is not None:
            merged.unlink(missing_ok=True)  # the F32 intermediate is ~450 MB
    return target


def _quantize(source: Path, target: Path, quant: str) -> None:
    """llama.cpp's quantizer: `source` re-encoded as `quant` into `target` (written whole, then renamed)."""
    tmp = target.with_suffix(f".tmp{os.getpid()}")
    qparams = llama.llama_model_quantize_default_params()
    qparams.ftype = _QUANT_TYPES[quant]
    qparams.allow_requantize = True
    qparams.nthread = os.cpu_count() or 1
    if llama.llama_model_quantize(str(source).encode(), str(tmp).encode(), qparams) != 0:
        tmp.unlink(missing_ok=True)
        raise BackendError(f"llama.cpp could not encode {source} into {target}")
    tmp.rename(target)


@dataclass(eq=False)
class _Job:
    """One request as the scheduler sees it. `out` carries results to the caller, `cancelled` comes from the
    caller (a stream closed early), `token` from the service request it serves (a client that hung up); the fields
    below them belong to the scheduler thread."""

    prompt_ids: list[int]
    params: GenerationParams
    # "generate" streams an answer; "score" returns the log-probs of `score_ids` after the prompt;
    # "next" returns the next-token log-probs (V,) after the prompt.
    kind: str = "generate"
    score_ids: list[int] = field(default_factory=list)
    out: queue.SimpleQueue = field(default_factory=queue.SimpleQueue)
    cancelled: threading.Event = field(default_factory=threading.Event)
    token: CancelToken | None = field(default_factory=current_token)
    done: bool = False
    seq: int = -1
    pos: int = 0  # tokens of this job in its sequence's KV cache (positions 0..pos-1)
    reused: int = 0  # of which, kept from the sequence's previous request (a shared prefix)
    failed: bool = False  # the KV cache of its sequence is in an unknown state
    generated: list[int] = field(default_factory=list)
    input_ids: torch.Tensor | None = None  # (1, T): what logits processors see
    matcher: StopMatcher | None = None
    decoder: Any = None
    generator: torch.Generator | None = None
    penalties: TokenPenalties | None = None
    logprobs: LogprobAligner | None = None  # set when the request asks for log-probs

    @property
    def abandoned(self) -> bool:
        """Nobody wants the rest: the caller closed its stream, or its request was cancelled."""
        return self.cancelled.is_set() or (self.token is not None and self.token.cancelled)

    @property
    def kv_need(self) -> int:
        extra = {"generate": self.params.max_tokens, "score": len(self.score_ids), "next": 0}[self.kind]
        return len(self.prompt_ids) + extra


class LlamaCppModel:
    """A GGUF chat model on llama.cpp with continuous batching (a `decoding.LocalBackend`); thread-safe.

    >>> model = LlamaCppModel.embedded()
    >>> messages = [{"role": "user", "content": "What is the capital of France?"}]
    >>> result = model.chat(messages, GenerationParams(max_tokens=8))  # its text differs by CPU (quantised kernels)
    >>> result.model, result.finish_reason in ("stop", "length"), result.usage.completion_tokens <= 8
    ('SmolLM2-135M-Instruct', True, True)
    >>> model.close()  # frees llama.cpp's memory now, not at exit
    """

    def __init__(
        self,
        gguf_path: str | Path,
        *,
        name: str | None = None,
        slot_context: int = 3072,
        slots: int = 8,
        threads: int | None = None,
        hmm_dir: str | Path | None = None,
    ) -> None:
        path = Path(gguf_path)
        if not path.is_file():
            raise InvalidRequestError(f"{path} is not a GGUF model file")
        _init_backend()
        self.path = path
        self.name = name or path.stem
        self.slots = slots
        mparams = llama.llama_model_default_params()
        mparams.use_extra_bufts = _extra_buffers_work(path)
        self._model = llama.llama_model_load_from_file(str(path).encode(), mparams)
        if not self._model:
            raise BackendError(f"llama.cpp could not load {path}")
        self._vocab = llama.llama_model_get_vocab(self._model)
        self.n_vocab = llama.llama_vocab_n_tokens(self._vocab)
        # the longest prompt + answer one request may have: its sequence's own cache
        self.context_length = min(slot_context, llama.llama_model_n_ctx_train(self._model))

        cparams = llama.llama_context_default_params()
        cparams.n_ctx = self.context_length * slots
        cparams.n_batch = 2048
        cparams.n_ubatch = 512
        cparams.n_seq_max = slots
        cparams.n_threads = cparams.n_threads_batch = threads or os.cpu_count() or 1
        cparams.kv_unified = False  # a cache per sequence: attention scans only its own cells (module doc)
        self._ctx = llama.llama_init_from_model(self._model, cparams)
        if not self._ctx:
            raise BackendError("llama.cpp could not create a context (out of memory?)")
        self._memory = llama.llama_get_memory(self._ctx)
        self._n_batch = cparams.n_batch
        self._batch = llama.llama_batch_init(self._n_batch, 0, 1)
        self._template = _chat_template(self._model)
        self._eog = frozenset(t for t in range(self.n_vocab) if llama.llama_vocab_is_eog(self._vocab, t))
        self.eos_token_id = int(llama.llama_vocab_eos(self._vocab))  # the one that ends a reply (HMM distillation)

        self._cached: list[list[int]] = [[] for _ in range(slots)]  # tokens each sequence's cache holds
        self._token_names: dict[int, tuple[str, tuple[int, ...]]] = {}  # logprobs' token texts (scheduler thread)
        self.reused_prompt_tokens = 0  # prompt tokens not prefilled again thanks to a cached prefix (a counter)

        self._guide: FormatGuide | None = None
        self.hmm_dir = Path(hmm_dir) if hmm_dir is not None else None  # Deco-G's HMM (None: the shipped one)
        self._guide_lock = threading.Lock()
        self._waiting: deque[_Job] = deque()
        self._wakeup = threading.Condition()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="llamacpp-scheduler", daemon=True)
        self._thread.start()

    @classmethod
    def embedded(
        cls, cache_dir: Path | None = None, quant: str | None = None, adapter: Path | None = None, **kwargs: Any
    ) -> LlamaCppModel:
        """The embedded SmolLM2-135M-Instruct in the weights `quant` names (default: the fastest here, module doc),
        with the LoRA `adapter` merged in when one is given (named `SmolLM2-135M-Instruct+<adapter folder>`)."""
        name = EMBEDDED_MODEL_NAME + (f"+{Path(adapter).name}" if adapter is not None else "")
        return cls(prepare_fast_weights(cache_dir, quant, adapter), name=name, **kwargs)

    def close(self) -> None:
        """Stop the scheduler (requests still in flight fail with BackendError) and free llama.cpp's memory."""
        with self._wakeup:
            self._closed = True
            self._wakeup.notify()
        self._thread.join(timeout=10)
        if self._thread.is_alive():  # stuck in a decode: freeing now would pull memory from under it
            log.warning("llama.cpp scheduler did not stop within 10 s; its memory is left allocated")
            return
        with self._guide_lock:  # format_guide() reads the vocabulary, which belongs to the model
            if self._model is not None:
                llama.llama_batch_free(self._batch)
                llama.llama_free(self._ctx)
                llama.llama_model_free(self._model)
                self._model = self._ctx = None

    # ----------------------------------------------------------------- ChatModel
    def chat(self, messages: Sequence[Mapping[str, Any]], params: GenerationParams | None = None) -> ChatResult:
        return collect(self.stream(messages, params), model=self.name)

    def stream(
        self, messages: Sequence[Mapping[str, Any]], params: GenerationParams | None = None
    ) -> Iterator[ChatChunk]:
        return self.stream_ids(self.encode_chat(messages), params)

    def stream_ids(self, prompt_ids: Sequence[int], params: GenerationParams | None = None) -> Iterator[ChatChunk]:
        """Generate after raw prompt token ids (no chat template)."""
        job = _Job(list(prompt_ids), self.format_guide().apply(params or GenerationParams()))
        self._check_budget(job)  # bad requests fail here, at the call; the work starts at the first read
        return self._drain(job)

    def format_guide(self) -> FormatGuide:
        """Format guidance over this model's vocabulary (built on first use)."""
        with self._guide_lock:
            if self._guide is None:
                from prunekit.decoding.decog import TokenVocabulary

                self._check_open()

                # control tokens (<|im_start|>...) have no text: None keeps them out of every format
                pieces = [
                    None if llama.llama_vocab_is_control(self._vocab, t) else self._piece(t)
                    for t in range(self.n_vocab)
                ]
                self._guide = FormatGuide(TokenVocabulary.from_bytes(pieces, sorted(self._eog)), self.hmm_dir)
            return self._guide

    def vocabulary(self) -> TokenVocabulary:
        """The vocabulary formats compile against (the GGUF's own tokenizer, with every end-of-generation token)."""
        return self.format_guide().vocab

    # ----------------------------------------------------------------- tokens and scoring
    def encode_chat(self, messages: Sequence[Mapping[str, Any]]) -> list[int]:
        """Token ids of the conversation in the model's chat template, ready for the answer."""
        text = self._template.render(messages=normalize_messages(messages), add_generation_prompt=True)
        return self.tokenize(text)

    def tokenize(self, text: str, *, special: bool = True) -> list[int]:
        self._check_open()
        data = text.encode()
        buf = (llama.llama_token * (len(data) + 8))()
        n = llama.llama_tokenize(self._vocab, data, len(data), buf, len(buf), False, special)
        if n < 0:
            raise InvalidRequestError("text could not be tokenized")
        return list(buf[:n])

    def detokenize(self, ids: Sequence[int]) -> str:
        return b"".join(self._piece(t) for t in ids).decode("utf-8", errors="replace")

    def sequence_logprobs(self, prompt_ids: Sequence[int], completion_ids: Sequence[int]) -> list[float]:
        """Log-probability of each completion token given the prompt and the tokens before it."""
        if not completion_ids:
            return []
        return self._call(_Job(list(prompt_ids), GenerationParams(), kind="score", score_ids=list(completion_ids)))

    def next_token_logprobs(self, input_ids: Sequence[int]) -> torch.Tensor:
        """Log-probabilities `(V,)` of the token that follows `input_ids`."""
        return self._call(_Job(list(input_ids), GenerationParams(), kind="next"))

    # ----------------------------------------------------------------- client side
    def _check_budget(self, job: _Job) -> None:
        if not job.prompt_ids:
            raise InvalidRequestError("the prompt is empty")
        if job.kv_need > self.context_length:
            raise InvalidRequestError(
                f"prompt ({len(job.prompt_ids)} tokens) + max_tokens ({job.kv_need - len(job.prompt_ids)}) exceeds "
                f"the model's context of {self.context_length} tokens: shorten the prompt or lower max_tokens"
            )

    def _submit(self, job: _Job) -> None:
        with self._wakeup:
            if self._closed:
                raise BackendError("the model is closed")
            self._waiting.append(job)
            self._wakeup.notify()

    def _call(self, job: _Job) -> Any:
        self._check_budget(job)
        self._submit(job)
        result = job.out.get()
        if isinstance(result, BaseException):
            raise result
        return result

    def _drain(self, job: _Job) -> Iterator[ChatChunk]:
        # Submitted here, not by stream_ids: a stream dropped before its first read never takes a sequence
        # (a generator that never started does not run its `finally`, so it could not cancel).
        self._submit(job)
        try:
            while True:
                item = job.out.get()
                if isinstance(item, BaseException):
                    raise item
                yield item
                if item.finish_reason is not None:
                    return
        finally:
            job.cancelled.set()  # a consumer that stops early frees its slot at the next step

    # ----------------------------------------------------------------- scheduler thread
    def _run(self) -> None:
        active: list[_Job] = []
        free_seqs = list(range(self.slots))
        while True:
            with self._wakeup:
                while not self._closed and not self._waiting and not active:
                    self._wakeup.wait()
                if self._closed:
                    break
                self._drop_abandoned()
                admitted: list[_Job] = []
                while self._waiting and free_seqs:  # each fits its own sequence's cache (`_check_budget`)
                    job = self._waiting.popleft()
                    self._claim(job, free_seqs)
                    admitted.append(job)
            for job in admitted:
                try:
                    self._prefill(job)
                except BaseException as exc:  # hand the failure to the caller, keep serving others
                    job.failed = True
                    self._fail(job, exc)
                if job.done:
                    self._release(job, free_seqs)
                else:
                    active.append(job)
            if active:
                try:
                    self._decode_step(active)
                except BaseException as exc:
                    for job in active:
                        job.failed = True
                        self._fail(job, BackendError(f"llama.cpp decoding failed: {exc}"))
                for job in [j for j in active if j.done]:
                    active.remove(job)
                    self._release(job, free_seqs)
        for job in active + list(self._waiting):
            self._fail(job, BackendError("the model was closed"))

    def _drop_abandoned(self) -> None:
        """Waiting jobs whose request went away never take a sequence (called under `_wakeup`)."""
        if any(job.abandoned for job in self._waiting):
            for job in [j for j in self._waiting if j.abandoned]:
                self._waiting.remove(job)
                self._fail(job, _cancelled(job))

    def _claim(self, job: _Job, free_seqs: list[int]) -> None:
        """Give `job` the free sequence whose cache shares the longest prefix with its prompt, and drop the rest.

        A request's tokens stay in its sequence's cache after it ends (prompt caching, as llama.cpp's server does),
        so a follow-up that starts the same way (a chat's next turn, an agent's next call on the same task, the
        chat template's fixed header) skips that part of the prefill. At least the prompt's last token is
        decoded again: its logits are the first thing the request needs.
        """
        prompt = job.prompt_ids
        shared = {s: _common_prefix(self._cached[s], prompt) for s in free_seqs}
        seq = max(shared, key=shared.__getitem__)
        free_seqs.remove(seq)
        keep = min(shared[seq], len(prompt) - 1)
        if keep < len(self._cached[seq]) and not llama.llama_memory_seq_rm(self._memory, seq, keep, -1):
            llama.llama_memory_seq_rm(self._memory, seq, -1, -1)  # partial removal refused: start empty
            keep = 0
        job.seq, job.reused = seq, keep
        self._cached[seq] = self._cached[seq][:keep]
        self.reused_prompt_tokens += keep

    def _release(self, job: _Job, free_seqs: list[int]) -> None:
        if job.failed:
            llama.llama_memory_seq_rm(self._memory, job.seq, -1, -1)
            self._cached[job.seq] = []
        else:
            self._cached[job.seq] = (job.prompt_ids + job.score_ids + job.generated)[: job.pos]
        free_seqs.append(job.seq)

    def _decode(self, tokens: Sequence[tuple[int, int, int, bool]]) -> None:
        """One llama_decode over (token, position, sequence, want_logits) rows."""
        batch = self._batch
        for i, (token, pos, seq, logits) in enumerate(tokens):
            batch.token[i] = token
            batch.pos[i] = pos
            batch.n_seq_id[i] = 1
            batch.seq_id[i][0] = seq
            batch.logits[i] = logits
        batch.n_tokens = len(tokens)
        status = llama.llama_decode(self._ctx, batch)
        if status != 0:
            raise BackendError(f"llama_decode returned {status} (KV cache full or bad batch)")

    def _logits(self, index: int) -> np.ndarray:
        """Next-token logits `(V,)` of batch row `index` of the last decode (valid until the next one)."""
        return np.ctypeslib.as_array(llama.llama_get_logits_ith(self._ctx, index), shape=(self.n_vocab,))

    def _prefill(self, job: _Job) -> None:
        if job.kind == "score":
            job.out.put(self._score(job))
            job.done = True
            return
        last_row = self._decode_prompt(job.prompt_ids, job.seq, job.reused)
        job.pos = len(job.prompt_ids)
        if job.kind == "next":
            job.out.put(torch.log_softmax(torch.from_numpy(self._logits(last_row).copy()), dim=-1))
            job.done = True
            return
        job.matcher = StopMatcher(job.params.stop)
        job.decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        job.generator = make_generator(job.params.seed)
        if job.params.penalized:
            job.penalties = TokenPenalties.for_params(job.params)
        if job.params.logits_processors:
            job.input_ids = torch.tensor([job.prompt_ids])
        if job.params.logprobs:
            job.logprobs = LogprobAligner()
        self._advance(job, self._logits(last_row))

    def _decode_prompt(self, ids: list[int], seq: int, cached: int) -> int:
        """Prefill `ids[cached:]` into sequence `seq` (the first `cached` are in its cache) in chunks; return the
        batch row holding the last logits."""
        for start in range(cached, len(ids), self._n_batch):
            chunk = ids[start : start + self._n_batch]
            self._decode([(t, start + i, seq, start + i == len(ids) - 1) for i, t in enumerate(chunk)])
        return len(chunk) - 1

    def _score(self, job: _Job) -> list[float]:
        ids = job.prompt_ids + job.score_ids
        first_wanted = len(job.prompt_ids) - 1  # the logits at position p predict token p + 1
        out: list[float] = []
        for start in range(job.reused, len(ids) - 1, self._n_batch):
            chunk = ids[start : min(start + self._n_batch, len(ids) - 1)]
            self._decode([(t, start + i, job.seq, start + i >= first_wanted) for i, t in enumerate(chunk)])
            for i in range(len(chunk)):
                p = start + i
                if p >= first_wanted:
                    row = torch.from_numpy(self._logits(i).copy())
                    out.append(float(torch.log_softmax(row, dim=-1)[ids[p + 1]]))
        job.pos = len(ids) - 1
        return out

    def _decode_step(self, active: list[_Job]) -> None:
        # In sequence order: with a cache per sequence, llama.cpp packs only consecutive sequence ids into one
        # micro-batch, so after requests come and go an unsorted step splits into several (8 sequences on the
        # 2-core EPYC: 108 ms per step unsorted vs 63 ms sorted).
        active.sort(key=lambda job: job.seq)
        self._decode([(job.generated[-1], job.pos, job.seq, True) for job in active])
        for i, job in enumerate(active):
            job.pos += 1
            try:
                self._advance(job, self._logits(i))
            except Exception as exc:  # e.g. a logits processor refusing: fail this request only
                self._fail(job, exc)

    def _advance(self, job: _Job, logits: np.ndarray) -> None:
        """Pick the job's next token from `logits` and stream the text it completes."""
        if job.abandoned:
            self._fail(job, _cancelled(job))
            return
        params = job.params
        if job.penalties is not None:
            # in place, on the K <= window ids it touches: llama.cpp rewrites this row at the next decode and nothing
            # reads it before, so a copy of the whole vocabulary per token would buy nothing
            logits = job.penalties.apply(logits)
        row: np.ndarray | torch.Tensor = logits  # (V,): the scores the token is drawn from
        if params.logits_processors:
            scores = torch.from_numpy(logits.copy())[None]  # (1, V)
            for processor in params.logits_processors:
                scores = processor(job.input_ids, scores)
            row = scores[0]
        logprobs = None
        if job.logprobs is not None:
            token, logprobs = sample_with_logprobs(row, params.temperature, params.top_p, job.generator)
        elif params.greedy:  # numpy's argmax: torch's would wake its thread pool, which then spins against ours
            token = int(np.argmax(np.asarray(row)))
        else:
            token = pick_next_token(torch.as_tensor(row), params.temperature, params.top_p, job.generator)

        if token in self._eog:
            self._end(job, "stop")
            return
        job.generated.append(token)
        if job.penalties is not None:
            job.penalties.observe(token)
        if job.input_ids is not None:
            job.input_ids = torch.cat([job.input_ids, torch.tensor([[token]])], dim=1)
        text = job.decoder.decode(self._piece(token))
        delta = job.matcher.feed(text)
        if job.logprobs is None:
            if delta:
                job.out.put(ChatChunk(delta))
        else:
            job.logprobs.token(token_logprob(logprobs, token, params.top_logprobs, self._token_name), text)
            shown = job.logprobs.release(delta, stopped=job.matcher.stopped)
            if delta or shown:
                job.out.put(ChatChunk(delta, logprobs=shown))
        if job.matcher.stopped:
            self._end(job, "stop")
        elif len(job.generated) >= params.max_tokens:
            self._end(job, "length")

    def _end(self, job: _Job, finish: str) -> None:
        tail = job.matcher.feed(job.decoder.decode(b"", final=True)) + job.matcher.flush()
        usage = Usage(len(job.prompt_ids), len(job.generated))
        logprobs = None if job.logprobs is None else job.logprobs.release(tail, end=True)
        job.out.put(ChatChunk(tail, finish_reason=finish, usage=usage, logprobs=logprobs))
        job.done = True

    def _fail(self, job: _Job, error: BaseException) -> None:
        job.out.put(error)
        job.done = True

    def _check_open(self) -> None:
        if self._model is None:
            raise BackendError("the model is closed")

    def _piece(self, token: int, special: bool = False) -> bytes:
        """The bytes of `token`; `special`: control tokens as their names (`<|im_end|>`) rather than nothing."""
        self._check_open()
        buf = ctypes.create_string_buffer(64)
        n = llama.llama_token_to_piece(self._vocab, token, buf, len(buf), 0, special)
        if n < 0:  # rare long token: retry with the size llama.cpp asked for
            buf = ctypes.create_string_buffer(-n)
            n = llama.llama_token_to_piece(self._vocab, token, buf, len(buf), 0, special)
        return buf.raw[:n]

    def _token_name(self, token: int) -> tuple[str, tuple[int, ...]]:
        """How a log-prob entry names `token`: its text (a control token by its name) and its exact bytes (a token
        may end inside a UTF-8 character, whose text then shows U+FFFD); cached, read by the scheduler thread only."""
        named = self._token_names.get(token)
        if named is None:
            raw = self._piece(token, special=True)
            named = self._token_names[token] = (raw.decode("utf-8", errors="replace"), tuple(raw))
        return named


def _cancelled(job: _Job) -> RequestCancelledError:
    reason = job.token.reason if job.token is not None and job.token.cancelled else "the stream was closed"
    return RequestCancelledError(f"request cancelled: {reason}")


def _common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    n = min(len(a), len(b))
    for i in range(n):
        if a[i] != b[i]:
            return i
    return n


def _chat_template(model: Any) -> Any:
    """The chat template stored in the GGUF, rendered the way transformers renders it."""
    buf = ctypes.create_string_buffer(1 << 16)
    n = llama.llama_model_meta_val_str(model, b"tokenizer.chat_template", buf, len(buf))
    if n < 0:
        raise BackendError("the GGUF file has no chat template (tokenizer.chat_template)")
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
    return env.from_string(buf.value.decode())
