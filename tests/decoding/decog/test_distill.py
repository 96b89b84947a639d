"""HMM distillation: hidden states from logits, k-means, counts, the unigram baseline, and a resumable end-to-end run
on a fake LLM whose output is a known Markov source (so the distilled HMM must beat the unigram baseline)."""

from __future__ import annotations

import json
import math
import threading

import pytest
import torch

from decoding.decog.distill import (
    DistillConfig,
    GenerationRecorder,
    HiddenStateProjector,
    assign_clusters,
    distill_hmm,
    kmeans,
    unigram_loglik,
)
from decoding.decog.hmm import HMM
from decoding.decog.prompts import LeakedDataError, build_judge_items, distillation_prompts, load_squad
from decoding.errors import InvalidRequestError
from decoding.types import ChatResult, GenerationParams, Usage

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
    with pytest.raises(LeakedDataError):
        distillation_prompts(5, math_paths=[tmp_path / "agp/multiarith_test.json"])
    with pytest.raises(LeakedDataError):
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
