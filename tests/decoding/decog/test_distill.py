"""HMM distillation: hidden states from logits, k-means, counts, the unigram baseline, and a resumable end-to-end run
on a fake LLM whose output is a known Markov source (so the distilled HMM must beat the unigram baseline)."""

from __future__ import annotations

import json
import math
import threading

import pytest
import torch
from safetensors.torch import load_file, save_file

from prunekit.decoding.decog.distill import (
    DistillConfig,
    GenerationRecorder,
    HiddenStateProjector,
    assign_clusters,
    distill_hmm,
    kmeans,
    unigram_loglik,
)
from prunekit.decoding.decog.hmm import HMM
from prunekit.decoding.decog.prompts import build_judge_items, distillation_prompts, load_squad
from prunekit.decoding.errors import InvalidRequestError, LeakageError
from prunekit.decoding.types import ChatResult, GenerationParams, Usage
from tests.conftest import require_llamacpp, require_module

V, EOS = 10, 0
# The fake LLM's hidden "topics": topic k emits token 2k+1 or 2k+2 (evenly), then moves to topic k+1 (mod 4).
TOPIC_TOKENS = [(1, 2), (3, 4), (5, 6), (7, 8)]
P_EOS = 0.03


class MarkovLLM:
    """A fake chat model: logits = E h with E = I (so the hidden state is the logit vector itself); it follows a
    4-topic cycle, ends with EOS at rate P_EOS, applies logits processors and samples with the request's seed."""

    name = "markov-fake"

    def __init__(self) -> None:
        self.calls = 0
        self._lock = threading.Lock()

    def hidden(self, topic: int) -> torch.Tensor:
        p = torch.full((V,), 1e-6)
        p[EOS] = P_EOS
        for t in TOPIC_TOKENS[topic]:
            p[t] = (1 - P_EOS) / 2
        return (p / p.sum()).log()

    def chat(self, messages, params: GenerationParams) -> ChatResult:
        with self._lock:
            self.calls += 1
        g = torch.Generator().manual_seed(params.seed or 0)
        topic = int(torch.randint(4, (1,), generator=g))
        prompt = [3, 3, 3]
        out: list[int] = []
        for _ in range(params.max_tokens):
            scores = self.hidden(topic)[None].clone()
            for proc in params.logits_processors:
                scores = proc(torch.tensor([prompt + out]), scores)
            token = int(torch.multinomial(torch.softmax(scores[0], 0), 1, generator=g))
            if token == EOS:
                return ChatResult(" ".join(map(str, out)), "stop", Usage(3, len(out)))
            out.append(token)
            topic = (topic + 1) % 4
        return ChatResult(" ".join(map(str, out)), "length", Usage(3, len(out)))


def write_training_data(root) -> None:
    (root / "agp").mkdir(parents=True)
    (root / "qa/squad_v1.1").mkdir(parents=True)
    (root / "agp/multiarith_train.json").write_text(
        json.dumps([{"question": "Tom has 3 apples and buys 2 more. How many?", "final_ans": "5"}])
    )
    (root / "agp/svamp_train.json").write_text(
        json.dumps([{"Body": "A box holds 4 pens.", "Question": "How many pens in 2 boxes?", "Answer": 8.0}])
    )
    squad = {"data": [{"paragraphs": [{"context": "Paris is the capital of France. Rome is in Italy.", "qas": [
        {"id": "q1", "question": "What is the capital of France?", "answers": [{"text": "Paris"}]},
        {"id": "q2", "question": "Where is Rome?", "answers": [{"text": "Italy"}]},
    ]}]}], "version": "1.1"}  # fmt: skip
    (root / "qa/squad_v1.1/train_subset-v1.1.json").write_text(json.dumps(squad))


def test_projector_recovers_the_hidden_state_from_logits() -> None:
    g = torch.Generator().manual_seed(0)
    emb = torch.randn(300, 16, generator=g)  # (V, D) output embeddings
    proj = HiddenStateProjector(emb, n_tokens=64)
    h = torch.randn(16, generator=g)
    assert torch.allclose(proj(emb @ h), h, atol=1e-4)
    with pytest.raises(InvalidRequestError):
        HiddenStateProjector(emb, n_tokens=8)  # fewer logits than hidden dimensions: not invertible


def _write_folder(folder, tensors: dict[str, torch.Tensor], *, tied: bool, shards: int = 1) -> None:
    """A transformers-style folder holding only what the projector reads (config + safetensors)."""
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"tie_word_embeddings": tied}))
    if shards == 1:
        save_file(tensors, str(folder / "model.safetensors"))
        return
    weight_map = {}
    for k, (name, tensor) in enumerate(tensors.items()):
        file = f"model-{k % shards + 1:05d}-of-{shards:05d}.safetensors"
        part = folder / file
        existing = load_file(str(part)) if part.is_file() else {}
        save_file({**existing, name: tensor}, str(part))
        weight_map[name] = file
    (folder / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))


def test_projector_reads_the_output_head_from_model_folders(tmp_path) -> None:
    g = torch.Generator().manual_seed(0)
    embed, head = torch.randn(40, 8, generator=g), torch.randn(40, 8, generator=g)
    _write_folder(tmp_path / "untied", {"model.embed_tokens.weight": embed, "lm_head.weight": head}, tied=False,
                  shards=2)  # fmt: skip
    _write_folder(tmp_path / "tied", {"model.embed_tokens.weight": embed}, tied=True)
    _write_folder(tmp_path / "broken", {"model.embed_tokens.weight": embed}, tied=False)
    h = torch.randn(8, generator=g)
    untied = HiddenStateProjector.from_model_files(tmp_path / "untied", n_tokens=20)
    assert torch.allclose(untied(head @ h), h, atol=1e-4)  # the head, found through the shard index
    tied = HiddenStateProjector.from_model_files(tmp_path / "tied", n_tokens=20)
    assert torch.allclose(tied(embed @ h), h, atol=1e-4)
    with pytest.raises(InvalidRequestError, match=r"no lm_head\.weight and no tied embeddings"):
        HiddenStateProjector.from_model_files(tmp_path / "broken", n_tokens=20)
    with pytest.raises(InvalidRequestError, match="neither a GGUF file nor a transformers model folder"):
        HiddenStateProjector.from_model_files(tmp_path, n_tokens=20)


def test_projector_from_the_gguf_file_equals_the_one_from_its_transformers_copy() -> None:
    require_module("gguf", "reading GGUF files (the gguf package, a dependency of prunekit)")
    from prunekit.decoding.backends.embedded import embedded_gguf_path, embedded_hf_dir

    from_gguf = HiddenStateProjector.from_model_files(embedded_gguf_path())
    from_folder = HiddenStateProjector.from_model_files(embedded_hf_dir())
    assert (from_gguf.vocab_size, from_gguf.dim) == (from_folder.vocab_size, from_folder.dim) == (49152, 576)
    assert torch.allclose(from_gguf.matrix, from_folder.matrix, atol=1e-4)


def test_recorder_aligns_tokens_and_features() -> None:
    proj = HiddenStateProjector(torch.eye(V), n_tokens=V)
    rec = GenerationRecorder(proj)
    prompt = [5, 5]
    picked = [1, 2, 3]
    for i in range(len(picked) + 1):  # the step that picks token i sees the tokens before it
        scores = torch.full((1, V), float(i))
        assert rec(torch.tensor([prompt + picked[:i]]), scores) is scores  # identity processor
    assert rec.generated == picked
    assert [float(f[0]) for f in rec.features] == [0.0, 1.0, 2.0, 3.0]  # feature t: the logits token t came from


def test_kmeans_finds_separated_blobs() -> None:
    g = torch.Generator().manual_seed(0)
    centers = torch.tensor([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
    x = torch.cat([c + 0.3 * torch.randn(200, 2, generator=g) for c in centers])
    found = kmeans(x, 3, seed=1)
    dist = torch.cdist(centers, found)
    assert float(dist.min(1).values.max()) < 0.2  # every true center has a centroid next to it
    labels = assign_clusters(x, found)
    assert all(len(set(labels[i * 200 : (i + 1) * 200].tolist())) == 1 for i in range(3))


def test_unigram_baseline_is_exact() -> None:
    train = torch.tensor([[1, 1, 2, -1]])
    held = torch.tensor([[1, 2]])
    res = unigram_loglik(train, held, vocab_size=3, alphas=(1.0,))
    p1, p2 = (2 + 1) / (3 + 3), (1 + 1) / (3 + 3)
    assert res["loglik_per_token"] == pytest.approx((math.log(p1) + math.log(p2)) / 2)


def test_distillation_prompts_refuse_evaluation_files(tmp_path) -> None:
    write_training_data(tmp_path)
    (tmp_path / "agp/multiarith_test.json").write_text("[]")
    with pytest.raises(LeakageError):
        distillation_prompts(5, math_paths=[tmp_path / "agp/multiarith_test.json"])
    with pytest.raises(LeakageError):
        distillation_prompts(5, squad_path=tmp_path / "qa/squad_v1.1/dev-v1.1.half_A.json")
    prompts = distillation_prompts(
        40,
        math_paths=[tmp_path / "agp/multiarith_train.json", tmp_path / "agp/svamp_train.json"],
        squad_path=tmp_path / "qa/squad_v1.1/train_subset-v1.1.json",
    )
    assert {k for k, _ in prompts} == {"math", "extract", "judge", "chat"}
    assert prompts[:10] == distillation_prompts(
        10,
        math_paths=[tmp_path / "agp/multiarith_train.json", tmp_path / "agp/svamp_train.json"],
        squad_path=tmp_path / "qa/squad_v1.1/train_subset-v1.1.json",
    )  # a prefix is stable: a larger run extends a smaller one
    # No format instruction leaks into the task-only prompts.
    assert not any("answer is" in m[-1]["content"].lower() or "json" in m[-1]["content"].lower()
                   for k, m in prompts if k != "chat")  # fmt: skip


def test_judge_items_are_balanced_and_labelled_by_construction(tmp_path) -> None:
    write_training_data(tmp_path)
    items = build_judge_items(load_squad(tmp_path / "qa/squad_v1.1/train_subset-v1.1.json"), seed=0)
    assert sorted(i["label"] for i in items) == ["correct", "incorrect"]
    for i in items:
        assert (i["candidate"] in i["answers"]) == (i["label"] == "correct")


def test_distill_end_to_end_beats_unigram_and_resumes(tmp_path) -> None:
    write_training_data(tmp_path / "data")
    llm = MarkovLLM()
    proj = HiddenStateProjector(torch.eye(V), n_tokens=V)
    config = DistillConfig(hidden_size=5, n_sequences=60, seq_len=12, shard_size=20, concurrency=4,
                           kmeans_points=5000, max_em_steps=5)  # fmt: skip
    kw = {"work_dir": tmp_path / "work", "model": llm, "data_dir": tmp_path / "data", "projector": proj,
          "eos_token_id": EOS}  # fmt: skip
    out = distill_hmm(tmp_path / "hmm", config=config, **kw)
    assert llm.calls == 60
    meta = json.loads((out / "config.json").read_text())["metadata"]
    hmm = HMM.load(out)
    assert (hmm.hidden_size, hmm.vocab_size) == (5, V)
    assert meta["samples"]["sequences"] == 60
    assert meta["samples"]["heldout_sequences"] == 6
    # The source has 1 bit per token (two tokens per topic); a unigram over 8 tokens has 3 bits.
    assert meta["heldout_loglik_per_token_fp16"] > meta["unigram_heldout_loglik_per_token"] + 0.5
    assert meta["heldout_loglik_per_token"] >= meta["init_heldout_loglik_per_token"]
    # The EOS state emits EOS (the state Ctrl-G reserves for it).
    assert int(hmm.emission[4].argmax()) == EOS

    # Rerun: nothing is sampled again and EM does not restart.
    steps = meta["em_steps"]
    distill_hmm(tmp_path / "hmm2", config=config, **kw)
    assert llm.calls == 60
    assert json.loads((tmp_path / "hmm2/config.json").read_text())["metadata"]["em_steps"] == steps

    # A bigger run is one parameter: only the new shards are sampled, EM runs again on all sequences.
    bigger = DistillConfig(**{**config.__dict__, "n_sequences": 80})
    distill_hmm(tmp_path / "hmm3", config=bigger, **kw)
    assert llm.calls == 80
    assert json.loads((tmp_path / "hmm3/config.json").read_text())["metadata"]["samples"]["sequences"] == 80


def test_work_dir_with_other_sampling_settings_is_refused(tmp_path) -> None:
    write_training_data(tmp_path / "data")
    proj = HiddenStateProjector(torch.eye(V), n_tokens=V)
    kw = {"work_dir": tmp_path / "work", "model": MarkovLLM(), "data_dir": tmp_path / "data", "projector": proj,
          "eos_token_id": EOS}  # fmt: skip
    distill_hmm(tmp_path / "a", config=DistillConfig(hidden_size=5, n_sequences=20, seq_len=8, max_em_steps=1), **kw)
    with pytest.raises(InvalidRequestError, match="other settings"):
        distill_hmm(tmp_path / "b", config=DistillConfig(hidden_size=5, n_sequences=20, seq_len=9), **kw)


def test_a_model_without_files_needs_its_projector_and_eos(tmp_path) -> None:
    write_training_data(tmp_path / "data")
    config = DistillConfig(hidden_size=5, n_sequences=20, seq_len=8, max_em_steps=1)
    kw = {"work_dir": tmp_path / "work", "model": MarkovLLM(), "data_dir": tmp_path / "data"}
    with pytest.raises(InvalidRequestError, match="does not say its EOS id"):
        distill_hmm(tmp_path / "a", config=config, **kw)
    with pytest.raises(InvalidRequestError, match="no files to read its output embeddings from"):
        distill_hmm(tmp_path / "a", config=config, eos_token_id=EOS, **kw)


def test_distil_from_a_model_given_by_path(tmp_path) -> None:
    """The path `prunekit train hmm --model` takes: projector and EOS from the model's own file, its name recorded."""
    llamacpp = require_llamacpp()
    write_training_data(tmp_path / "data")
    model = llamacpp.LlamaCppModel(llamacpp.prepare_fast_weights(), name="smollm2-by-path", slots=2)
    config = DistillConfig(hidden_size=4, n_sequences=10, seq_len=6, shard_size=10, concurrency=2,
                           kmeans_points=1000, max_em_steps=2)  # fmt: skip
    try:
        out = distill_hmm(tmp_path / "hmm", config=config, model=model, work_dir=tmp_path / "work",
                          data_dir=tmp_path / "data")  # fmt: skip
    finally:
        model.close()
    meta = json.loads((out / "config.json").read_text())["metadata"]
    hmm = HMM.load(out)
    assert meta["model"] == "smollm2-by-path"
    assert (hmm.hidden_size, hmm.vocab_size, hmm.eos_token_id) == (4, 49152, 2)
    assert math.isfinite(meta["heldout_loglik_per_token_fp16"])
    # The samples belong to that model: another one is refused on the same work dir.
    with pytest.raises(InvalidRequestError, match="other settings"):
        distill_hmm(tmp_path / "hmm2", config=config, model=MarkovLLM(), work_dir=tmp_path / "work",
                    data_dir=tmp_path / "data", projector=HiddenStateProjector(torch.eye(V), n_tokens=V),
                    eos_token_id=EOS)  # fmt: skip
