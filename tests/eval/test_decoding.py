"""The Deco-G evaluation runner: data loading (leakage rules), parsing, the method plumbing on a scripted fake model
over the real SmolLM2 vocabulary, and one tiny run on the embedded model."""

from __future__ import annotations

import json
import math
import threading
from pathlib import Path

import pytest
import torch

from prunekit.decoding import LocalBackend, OpenAIModel
from prunekit.decoding.decog import TokenVocabulary, parse_format
from prunekit.decoding.decog.guided import FormatGuide
from prunekit.decoding.decog.hmm import HMM
from prunekit.decoding.types import ChatChunk, ChatResult, GenerationParams, Usage
from prunekit.eval.decoding import (
    DEFAULT_HMM_DIR,
    DEFAULT_METHODS,
    FORMAT_INSTRUCTIONS,
    FORMATS,
    DecodingItem,
    LeakageError,
    evaluate_decoding,
    guidance_trial,
    load_task_items,
    model_eos_id,
    model_vocabulary,
    parse_answer,
)
from tests.conftest import require_data, require_part
from tests.decoding.decog.conftest_helpers import smollm2_tokenizer


class FakeLocalBackend:
    """Every member of `decoding.LocalBackend`, none of them working: a test's fake overrides what it needs."""

    name = "fake-local"
    context_length = 4096
    eos_token_id: int | None = None
    hmm_dir = None
    reused_prompt_tokens = None

    def chat(self, messages, params=None) -> ChatResult:
        raise NotImplementedError

    def stream(self, messages, params=None):
        result = self.chat(messages, params)
        yield ChatChunk(result.text, result.finish_reason, result.usage)

    def encode_chat(self, messages) -> list[int]:
        raise NotImplementedError

    def tokenize(self, text: str, *, special: bool = True) -> list[int]:
        raise NotImplementedError

    def detokenize(self, ids) -> str:
        raise NotImplementedError

    def vocabulary(self) -> TokenVocabulary:
        raise NotImplementedError

    def format_guide(self) -> FormatGuide:
        return FormatGuide(self.vocabulary(), self.hmm_dir)

    def next_token_logprobs(self, input_ids) -> torch.Tensor:
        raise NotImplementedError

    def sequence_logprobs(self, prompt_ids, completion_ids) -> list[float]:
        raise NotImplementedError

    def close(self) -> None:
        pass


class ScriptedModel(FakeLocalBackend):
    """A fake local backend over a real tokenizer: at each step it prefers the next token of a scripted reply (logit
    +5, every other token -5; EOS once the script is done), applies the logits processors, and decodes greedily."""

    name = "scripted"

    def __init__(self, tokenizer, reply) -> None:
        self.tokenizer = tokenizer
        self.reply = reply  # messages -> scripted text
        self.eos = self.eos_token_id = int(tokenizer.eos_token_id)
        self.v = len(tokenizer)
        self.lock = threading.Lock()
        self.prompts: list[str] = []

    def vocabulary(self) -> TokenVocabulary:
        return TokenVocabulary.from_tokenizer(self.tokenizer)

    def encode_chat(self, messages) -> list[int]:
        return self.tokenize(messages[-1]["content"])[:8] or [1]

    def tokenize(self, text: str, *, special: bool = True) -> list[int]:
        return self.tokenizer.encode(text, add_special_tokens=False)

    def detokenize(self, ids) -> str:
        return self.tokenizer.decode(list(ids), skip_special_tokens=True)

    def _logits(self, script: list[int], i: int) -> torch.Tensor:
        scores = torch.full((self.v,), -5.0)
        scores[script[i] if i < len(script) else self.eos] = 5.0
        return scores

    def chat(self, messages, params: GenerationParams) -> ChatResult:
        with self.lock:
            self.prompts.append(messages[-1]["content"])
        script = self.tokenize(self.reply(messages))
        prompt = self.encode_chat(messages)
        out: list[int] = []
        for i in range(params.max_tokens):
            scores = self._logits(script, i)[None]
            for proc in params.logits_processors:
                scores = proc(torch.tensor([prompt + out]), scores)
            token = int(scores[0].argmax())
            if token == self.eos:
                return ChatResult(self.detokenize(out), "stop", Usage(len(prompt), len(out)))
            out.append(token)
        return ChatResult(self.detokenize(out), "length", Usage(len(prompt), len(out)))

    def sequence_logprobs(self, prompt_ids, completion_ids) -> list[float]:
        # The script does not depend on the prompt here; its log-probs: on script ~ -4.5e-4, off script ~ -10.
        content = self.detokenize(prompt_ids)
        script = self.tokenize(self.reply([{"role": "user", "content": content}]))
        return [float(torch.log_softmax(self._logits(script, i), 0)[t]) for i, t in enumerate(completion_ids)]


def math_items() -> list[DecodingItem]:
    msgs = [{"role": "user", "content": f"problem {i}"} for i in range(4)]
    return [DecodingItem(f"m{i}", [m], gold) for i, (m, gold) in enumerate(zip(msgs, [42, 7, 3, 10], strict=True))]


MATH_REPLIES = {
    "problem 0": "6 times 7 is 42. The answer is 42",  # compliant, right
    "problem 1": "The result is 7.",  # not compliant, right by lenient parse
    "problem 2": "It is 4. The answer is 4",  # compliant, wrong
    "problem 3": "I do not know",  # not compliant, no number
}


def math_reply(messages) -> str:
    return MATH_REPLIES.get(messages[-1]["content"].split("\n")[0], "I do not know")


@pytest.fixture(scope="module")
def tokenizer():
    return smollm2_tokenizer()


@pytest.fixture(scope="module")
def small_hmm(tokenizer) -> HMM:
    return HMM.random(8, len(tokenizer), seed=0, concentration=0.1, eos_token_id=tokenizer.eos_token_id)


# --------------------------------------------------------------------------- parsing
@pytest.mark.parametrize(
    ("task", "text", "expected"),
    [
        ("math", "3 + 4 = 7. The answer is 7", 7),
        ("math", "It costs 1,250 dollars.", 1250),
        ("math", "no idea", None),
        ("extract", '{"answer": "Paris"}', "Paris"),
        ("extract", 'Sure! {"answer": "Paris", "x": 1', "Paris"),
        ("extract", "Paris\nbecause it says so", "Paris"),
        ("judge", '{"verdict": "incorrect"}', "incorrect"),
        ("judge", "The candidate answer is not correct.", "incorrect"),
        ("judge", "Yes, it is right.", "correct"),
        ("judge", "I cannot tell.", None),
    ],
)
def test_parse_answer(task: str, text: str, expected) -> None:
    assert parse_answer(task, text) == expected


# --------------------------------------------------------------------------- data
def test_math_items_exclude_stage1_and_gsm8k_needs_the_list(tmp_path: Path) -> None:
    rows = [{"question": f"Q{i}: what is {i} + 1?", "answer": f"step\n#### {i + 1}"} for i in range(5)]
    gsm = tmp_path / "gsm8k_test.jsonl"
    gsm.write_text("\n".join(json.dumps(r) for r in rows))
    with pytest.raises(LeakageError):
        load_task_items("math", [gsm])
    (tmp_path / "stage1_math_reasoning.json").write_text(json.dumps([{"task": rows[1]["question"]}]))
    items = load_task_items("math", [gsm])
    assert len(items) == 4
    assert all("Q1:" not in it.messages[0]["content"] for it in items)
    assert {it.gold for it in items} == {1, 3, 4, 5}


def test_gsm8k_test_items_never_include_stage1_tasks() -> None:
    gsm = require_data("agp/gsm8k_test.jsonl")
    stage1 = json.loads(require_data("agp/stage1_math_reasoning.json").read_text())
    items = load_task_items("math", [gsm])
    banned = {" ".join(r["task"].lower().split()) for r in stage1}
    assert len(items) == 1319 - len(banned)
    assert not any(" ".join(it.meta["question"].lower().split()) in banned for it in items)


def test_judge_items_balanced_and_seeded() -> None:
    dev = require_data("qa/squad_v1.1/dev-v1.1.half_A.json")
    items = load_task_items("judge", [dev], limit=40, seed=3)
    labels = [it.gold for it in items]
    assert labels.count("correct") == labels.count("incorrect") == 20
    assert [it.id for it in load_task_items("judge", [dev], limit=40, seed=3)] == [it.id for it in items]
    assert [it.id for it in load_task_items("judge", [dev], limit=40, seed=4)] != [it.id for it in items]


# --------------------------------------------------------------------------- the runner on a scripted model
def test_methods_on_scripted_math(tokenizer, small_hmm) -> None:
    model = ScriptedModel(tokenizer, math_reply)
    res = evaluate_decoding(model, "math", [], items=math_items(), hmm=small_hmm, max_new_tokens=24, concurrency=2)
    m = res.metrics
    assert set(m) >= {f"{meth}.{k}" for meth in DEFAULT_METHODS for k in ("compliance", "accuracy", "loglik_per_token",
                                                                  "tokens_per_s")}  # fmt: skip
    # Unconstrained: the scripts as written (2 of 4 comply); lenient parsing finds 42 and 7.
    assert m["prompt.compliance"] == 0.5
    assert m["prompt.accuracy"] == 0.5
    assert m["prompt.strict_accuracy"] == 0.25
    # Every enforced method complies, whatever the script.
    for meth in ("hard_mask", "decog", "decog_pruned"):
        assert m[f"{meth}.compliance"] == 1.0
        outs = [r["output"] for r in res.items if r["method"] == meth]
        assert all(parse_format(FORMATS["math"]).matches(o) for o in outs)
    # Compliant scripts pass through the hard mask untouched: same outputs, same log-likelihood.
    by = {(r["method"], r["id"]): r for r in res.items}
    assert by[("hard_mask", "m0")]["output"] == MATH_REPLIES["problem 0"]
    assert by[("hard_mask", "m0")]["loglik"] == pytest.approx(by[("prompt", "m0")]["loglik"])
    # The scripted text is on-script (log-prob ~0 per token); forcing the format costs log-likelihood.
    assert m["prompt.loglik_per_token"] > m["hard_mask.loglik_per_token"]
    assert 0 < m["decog_pruned.kept_mass"] <= 1.0
    # format_prompt adds the instruction; the others send the task-only prompt.
    assert sum(FORMAT_INSTRUCTIONS["math"] in p for p in model.prompts) == 4


def test_outlines_reference_cannot_finish_what_the_budget_cuts(tokenizer) -> None:
    model = ScriptedModel(tokenizer, math_reply)
    res = evaluate_decoding(model, "math", [], items=math_items(), methods=("hard_mask", "outlines"), max_new_tokens=24)
    by = {(r["method"], r["id"]): r for r in res.items}
    # A compliant script passes through outlines-core's mask untouched.
    assert by[("outlines", "m0")]["output"] == MATH_REPLIES["problem 0"] and by[("outlines", "m0")]["compliant"]
    # "I do not know": outlines-core forbids the EOS but never steers toward the pivot, so the budget cuts the
    # output mid-format; our hard mask brings the pivot in time.
    assert not by[("outlines", "m3")]["compliant"] and by[("outlines", "m3")]["completion_tokens"] == 24
    assert by[("hard_mask", "m3")]["compliant"]
    assert res.metrics["outlines.compliance"] < res.metrics["hard_mask.compliance"] == 1.0
    assert res.config["weight"] is None and res.config["hmm_dir"] is None  # no Deco-G method ran


def test_loglik_counts_eos_when_the_output_ended(tokenizer) -> None:
    model = ScriptedModel(tokenizer, math_reply)
    res = evaluate_decoding(model, "math", [], items=math_items()[:1], methods=("prompt",), max_new_tokens=24)
    rec = res.items[0]
    script = model.tokenize(MATH_REPLIES["problem 0"])
    assert rec["scored_tokens"] == len(script) + 1  # text + EOS
    on_script = float(torch.log_softmax(torch.tensor([5.0] + [-5.0] * (len(tokenizer) - 1)), 0)[0])
    assert rec["loglik"] == pytest.approx(on_script * (len(script) + 1), rel=1e-4)


def test_truncated_output_keeps_its_last_token(tokenizer) -> None:
    model = ScriptedModel(tokenizer, math_reply)
    res = evaluate_decoding(model, "math", [], items=math_items()[:1], methods=("prompt",), max_new_tokens=5)
    assert res.items[0]["scored_tokens"] == 5  # no EOS; the 5th token (never seen by the recorder) is re-encoded


def test_bad_arguments(tokenizer, small_hmm) -> None:
    model = ScriptedModel(tokenizer, math_reply)
    with pytest.raises(ValueError, match="task"):
        evaluate_decoding(model, "poetry", [], items=math_items())
    with pytest.raises(ValueError, match="methods"):
        evaluate_decoding(model, "math", [], items=math_items(), methods=("beam",))
    with pytest.raises(ValueError, match="no HMM"):
        evaluate_decoding(model, "math", [], items=math_items(), methods=("decog",), hmm_dir="/nonexistent")


def test_formats_compile_against_the_backends_own_vocabulary(tokenizer) -> None:
    """A GGUF model brings its own tokenizer: the eval must use the vocabulary (and EOS) the backend guides with."""
    own = TokenVocabulary.from_tokenizer(tokenizer, [0, 2])  # the backend's EOS set, not the tokenizer's

    class Backend(FakeLocalBackend):
        eos_token_id = 2

        def vocabulary(self):
            return own

    assert model_vocabulary(Backend()) is own
    assert model_eos_id(Backend(), own) == 2
    assert model_vocabulary(Backend(), tokenizer).eos_token_ids == (tokenizer.eos_token_id,)  # a given one wins
    assert model_eos_id(FakeLocalBackend(), own) == 0  # no backend EOS: the vocabulary's first


def test_the_fakes_are_local_backends_and_a_served_model_is_refused(tokenizer) -> None:
    assert isinstance(ScriptedModel(tokenizer, math_reply), LocalBackend)
    served = OpenAIModel("http://127.0.0.1:9", model="remote")
    with pytest.raises(ValueError, match="in-process model"):
        evaluate_decoding(served, "math", [], items=math_items())


# --------------------------------------------------------------------------- the embedded model
def test_tiny_real_run(embedded_model) -> None:
    dev = require_data("qa/squad_v1.1/dev-v1.1.half_A.json")
    shipped = (DEFAULT_HMM_DIR / "config.json").is_file()
    require_part(shipped, f"no shipped HMM in {DEFAULT_HMM_DIR} (the repository ships it; `prunekit train hmm`)")
    res = evaluate_decoding(embedded_model, "judge", [dev], limit=2, hmm_dir=DEFAULT_HMM_DIR, max_new_tokens=16,
                            methods=("prompt", "hard_mask", "decog_pruned", "outlines"))  # fmt: skip
    m = res.metrics
    assert m["hard_mask.compliance"] == m["decog_pruned.compliance"] == 1.0
    # outlines-core's mask: compliant, or cut by the budget it does not know of
    assert all(r["compliant"] or r["completion_tokens"] == 16 for r in res.items if r["method"] == "outlines")
    assert all(math.isfinite(m[f"{k}.loglik_per_token"]) for k in ("prompt", "hard_mask", "decog_pruned"))
    assert all(r["prediction"] in ("correct", "incorrect") for r in res.items if r["method"] == "decog_pruned")


def test_guidance_trials_run_on_training_files_only(tokenizer) -> None:
    with pytest.raises(LeakageError):
        guidance_trial(ScriptedModel(tokenizer, lambda m: ""), "extract", ["dev-v1.1.half_A.json"])


def test_a_guidance_trial_is_the_methods_metrics_on_the_same_training_items(tokenizer, small_hmm, monkeypatch) -> None:
    import prunekit.eval.decoding as module

    monkeypatch.setattr(module, "load_task_items", lambda task, paths, limit, seed: math_items()[:limit])
    trial = guidance_trial(ScriptedModel(tokenizer, math_reply), "math", ["multiarith_train.json"], limit=2,
                           hmm=small_hmm, max_new_tokens=24)  # fmt: skip
    metrics = trial(0.5)
    assert metrics["compliance"] == 1.0 and "accuracy" in metrics and "loglik_per_token" in metrics
    assert not any("." in k for k in metrics)  # no method prefix
