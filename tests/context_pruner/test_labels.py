from collections.abc import Mapping, Sequence
from typing import Any

from prunekit.context_pruner.encoding import IGNORE
from prunekit.context_pruner.labels import encode_passage, parse_citations, silver_labels, silver_prompt
from prunekit.context_pruner.model import PrunerConfig, load_tokenizer
from prunekit.decoding.types import ChatResult, GenerationParams, Usage


class ScriptedModel:
    """A ChatModel that answers from a script and records the prompts it saw."""

    name = "scripted"

    def __init__(self, answers: list[str]) -> None:
        self.answers = list(answers)
        self.prompts: list[str] = []

    def chat(self, messages: Sequence[Mapping[str, Any]], params: GenerationParams | None = None) -> ChatResult:
        self.prompts.append(messages[-1]["content"])
        return ChatResult(text=self.answers.pop(0), finish_reason="stop", usage=Usage())

    def stream(self, messages, params=None):
        raise NotImplementedError


SENTS = ["Paris is in France.", "Cats purr.", "The Seine flows through Paris."]


def test_parse_citations_variants():
    assert parse_citations("It is Paris [1] on the Seine [1, 3].", 3) == [1, 0, 1]
    assert parse_citations("[2,3]", 3) == [0, 1, 1]
    assert parse_citations("Paris [7].", 3) is None  # out of range only: nothing usable, no "no answer"
    assert parse_citations("No answer", 3) == [0, 0, 0]
    assert parse_citations("It is Paris.", 3) is None


def test_silver_labels_with_a_scripted_model():
    model = ScriptedModel(["Paris [1], on the Seine [3].", "No answer.", "I think it is Paris."])
    assert silver_labels("Where is Paris?", SENTS, model) == [1, 0, 1]
    assert silver_labels("Who wrote Hamlet?", SENTS, model) == [0, 0, 0]
    assert silver_labels("Where is Paris?", SENTS, model) is None  # no citation: dropped
    assert "[1] Paris is in France." in model.prompts[0] and "[3] The Seine" in model.prompts[0]


def test_silver_prompt_numbers_from_one():
    prompt = silver_prompt("q?", ["a.", " b."])
    assert "[1] a.\n[2] b." in prompt


def test_encode_passage_labels_tokens_and_ignores_question():
    cfg = PrunerConfig()
    tokenizer = load_tokenizer(cfg)
    enc = encode_passage(tokenizer, cfg, "Where is Paris?", "Paris", SENTS, [1, 0, 1])
    tokens = tokenizer.convert_ids_to_tokens(enc.ids.tolist())
    labels = enc.labels.tolist()
    sep = tokens.index("[SEP]")
    assert tokens[0] == "[CLS]" and tokens[-1] == "[SEP]"
    assert set(labels[: sep + 1]) == {IGNORE} and labels[-1] == IGNORE
    assert labels[sep + 1] == 1  # the title of a relevant passage is kept
    words = dict(zip(tokens[sep + 2 : -1], labels[sep + 2 : -1], strict=True))
    assert words["france"] == 1 and words["cats"] == 0 and words["seine"] == 1
    assert enc.token_types[: sep + 1].sum() == 0 and enc.token_types[sep + 1 :].min() == 1


def test_encode_passage_long_context_keeps_the_relevant_window():
    cfg = PrunerConfig(max_length=32, stride=4)
    tokenizer = load_tokenizer(cfg)
    sents = [f"Filler sentence number {i}." for i in range(20)] + ["The answer is here."]
    enc = encode_passage(tokenizer, cfg, "q?", None, sents, [0] * 20 + [1])
    assert len(enc.ids) <= 32 and (enc.labels == 1).any()
