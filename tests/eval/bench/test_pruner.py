from prunekit.context_pruner.pruner import ContextPruner
from prunekit.eval.bench.pruner import bench_prune, synthetic_passages
from tests.context_pruner.helpers import tiny_model


def test_synthetic_passages_have_the_exact_token_count():
    _, tokenizer = tiny_model()
    question, passages = synthetic_passages(tokenizer, 3, 64)
    q = len(tokenizer(question, add_special_tokens=False)["input_ids"])
    for p in passages:
        assert q + 3 + len(tokenizer(p, add_special_tokens=False)["input_ids"]) == 64


def test_bench_reports_throughput_and_memory():
    model, tokenizer = tiny_model(max_length=64)
    pruner = ContextPruner(model=model, tokenizer=tokenizer, precision="int8")
    report = bench_prune(n_passages=8, tokens=64, batch_size=4, deberta_passages=0, pruner=pruner)
    assert report["passages_per_s"] > 0 and report["rss_mb"] > 0
    assert report["tokens"] == 64 and report["precision"] == "int8"
    assert report["tokens_per_s"] == report["passages_per_s"] * 64
    assert "deberta_v3_large_passages_per_s" not in report
