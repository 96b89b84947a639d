"""Tiny models and fixture data for the context pruner tests (no test here: helpers only)."""

from __future__ import annotations

import json
from pathlib import Path

from prunekit.context_pruner.model import PrunerConfig, PrunerModel, load_tokenizer

TINY_ENCODER = {
    "model_type": "bert",
    "vocab_size": 30522,
    "hidden_size": 32,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "intermediate_size": 64,
    "max_position_embeddings": 512,
    "type_vocab_size": 2,
}


def tiny_model(max_length: int = 64, stride: int = 16):
    """A randomly initialised 2-layer BERT with the MiniLM tokenizer, and that tokenizer."""
    cfg = PrunerConfig(encoder_config=dict(TINY_ENCODER), num_layers=None, max_length=max_length, stride=stride)
    return PrunerModel.from_base(cfg).eval(), load_tokenizer(cfg)


HOTPOT_HF = {
    "id": "q1",
    "question": "Which city is the Eiffel Tower in?",
    "answer": "Paris",
    "type": "bridge",
    "level": "easy",
    "supporting_facts": {"title": ["Eiffel Tower"], "sent_id": [1]},
    "context": {
        "title": ["Eiffel Tower", "Cats"],
        "sentences": [
            ["The Eiffel Tower is a lattice tower.", " It is located in Paris, France."],
            ["Cats are small mammals.", " They purr."],
        ],
    },
}


def write_hotpot_hf(path: Path, as_literal_strings: bool = False) -> Path:
    row = dict(HOTPOT_HF)
    if as_literal_strings:  # some HF exports keep the nested dicts as Python literals in strings
        row = {**row, "context": repr(row["context"]), "supporting_facts": repr(row["supporting_facts"])}
    path.write_text(json.dumps(row) + "\n" + json.dumps({**row, "id": "q2"}) + "\n")
    return path


def write_hotpot_original(path: Path) -> Path:
    ctx = HOTPOT_HF["context"]
    row = {
        "_id": "q1",
        "question": HOTPOT_HF["question"],
        "answer": "Paris",
        "supporting_facts": [["Eiffel Tower", 1]],
        "context": [[t, s] for t, s in zip(ctx["title"], ctx["sentences"], strict=True)],
    }
    path.write_text(json.dumps([row]))
    return path


def write_squad(path: Path) -> Path:
    context = "Paris is the capital of France. It has many museums. The Louvre is the largest."
    doc = {
        "data": [
            {
                "title": "Paris_City",
                "paragraphs": [
                    {
                        "context": context,
                        "qas": [
                            {"id": "s1", "question": "What is the largest museum?",
                             "answers": [{"answer_start": context.index("The Louvre"), "text": "The Louvre"}]},
                        ],
                    }
                ],
            },
            {
                "title": "Cats",
                "paragraphs": [
                    {
                        "context": "Cats purr. They sleep a lot.",
                        "qas": [{"id": "s2", "question": "What do cats do?",
                                 "answers": [{"answer_start": 5, "text": "purr"}]}],
                    }
                ],
            },
        ]
    }  # fmt: skip
    path.write_text(json.dumps(doc))
    return path


def write_squad_articles(path: Path, articles: int = 40, paragraphs: int = 3) -> Path:
    """Articles whose paragraphs each name their own fruit; a question asks for one paragraph's fruit."""
    data = []
    for a in range(articles):
        paras = []
        for p in range(paragraphs):
            context = f"Article {a} part {p}. The fruit of part {p} is fruit{a}x{p}."
            answer = f"fruit{a}x{p}"
            qa = {"id": f"{a}-{p}", "question": f"What is the fruit of part {p} in article {a}?",
                  "answers": [{"answer_start": context.index(answer), "text": answer}]}  # fmt: skip
            paras.append({"context": context, "qas": [qa]})
        data.append({"title": f"Article_{a}", "paragraphs": paras})
    path.write_text(json.dumps({"data": data}))
    return path
