import contextlib
import json
import shutil

import pytest

from prunekit.context_pruner.calibrate import fit_keep_logit_bias, write_keep_logit_bias
from prunekit.context_pruner.data import HotpotItem
from prunekit.context_pruner.errors import InvalidOptionError
from prunekit.context_pruner.model import WEIGHTS_DIR
from prunekit.context_pruner.pruner import ContextPruner
from tests.context_pruner.helpers import tiny_model

ITEMS = [
    HotpotItem(
        id=f"q{i}",
        question=q,
        answer="",
        paragraphs=(
            ("Eiffel Tower", ("The Eiffel Tower is a lattice tower.", "It is located in Paris, France.")),
            ("Cats", ("Cats are small mammals.", "They purr when they are content.", "Many people keep cats.")),
            ("Rivers", ("The Seine flows through Paris.", "The Nile is the longest river in Africa.")),
        ),
        supporting=frozenset(),
    )
    for i, q in enumerate(["Which city is the Eiffel Tower in?", "What sound do cats make?", "Where is the Seine?"])
]


@pytest.fixture(scope="module")
def tiny() -> ContextPruner:
    model, tokenizer = tiny_model()
    return ContextPruner(model=model, tokenizer=tokenizer, precision="fp32")


def _compression_at(pruner: ContextPruner, bias: float) -> float:
    pruner.cfg.keep_logit_bias, saved = bias, pruner.cfg.keep_logit_bias
    try:
        results = pruner.prune(
            [it.question for it in ITEMS],
            [[" ".join(s) for _, s in it.paragraphs] for it in ITEMS],
            [[t for t, _ in it.paragraphs] for it in ITEMS],
        )
    finally:
        pruner.cfg.keep_logit_bias = saved
    flat = [r for group in results for r in group]
    return 1 - sum(r.tokens_after for r in flat) / sum(r.tokens_before for r in flat)


@pytest.mark.parametrize("target", [0.3, 0.6])
def test_the_fitted_bias_gives_the_target_compression_when_the_model_runs_with_it(tiny, target):
    found = fit_keep_logit_bias(tiny, ITEMS, target_compression=target)
    # 7 sentences per question: compression moves by whole sentences, so the target is met within one sentence
    assert abs(found.compression - target) < 0.2
    assert _compression_at(tiny, found.keep_logit_bias) == pytest.approx(found.compression, abs=1e-9)
    assert (found.questions, found.contexts) == (3, 9)


def test_a_higher_target_gives_a_lower_bias(tiny):
    low = fit_keep_logit_bias(tiny, ITEMS, target_compression=0.2)
    high = fit_keep_logit_bias(tiny, ITEMS, target_compression=0.8)
    assert high.keep_logit_bias < low.keep_logit_bias and high.compression > low.compression


@pytest.mark.parametrize("kwargs", [{"target_compression": 1.0}, {"target_compression": 0.0}, {"threshold": 1.5}])
def test_bad_options_raise(tiny, kwargs):
    with pytest.raises(InvalidOptionError):
        fit_keep_logit_bias(tiny, ITEMS, **kwargs)


def test_no_items_raise(tiny):
    with pytest.raises(InvalidOptionError, match="no calibration questions"):
        fit_keep_logit_bias(tiny, [])


def test_writing_the_bias_is_what_the_reloaded_pruner_uses(tmp_path):
    folder = shutil.copytree(WEIGHTS_DIR, tmp_path / "weights")
    pruner = ContextPruner(folder)
    found = fit_keep_logit_bias(pruner, ITEMS, target_compression=0.5)
    write_keep_logit_bias(folder, found, "train.jsonl")
    cfg = json.loads((folder / "config.json").read_text())
    assert cfg["keep_logit_bias"] == found.keep_logit_bias
    assert "train.jsonl" in cfg["extra"]["keep_logit_bias"]
    reloaded = ContextPruner(folder)
    assert reloaded.cfg.keep_logit_bias == found.keep_logit_bias
    assert _compression_at(reloaded, found.keep_logit_bias) == pytest.approx(found.compression, abs=1e-9)


def test_calibrate_weights_refuses_evaluation_splits_and_missing_inputs_before_loading(tmp_path):
    from prunekit.context_pruner.calibrate import calibrate_weights
    from prunekit.context_pruner.errors import EvaluationSplitError, PrunerWeightsError, TrainingDataError
    from prunekit.decoding.errors import LeakageError

    with pytest.raises(EvaluationSplitError, match=r"test\.jsonl is an evaluation split") as err:
        calibrate_weights(tmp_path / "nowhere", "qa/hotpotqa/test.jsonl", data_root=tmp_path)
    assert isinstance(err.value, LeakageError) and err.value.argument == "calibration_file"
    with pytest.raises(PrunerWeightsError) as err:  # the guard first, then the weights, then the data
        calibrate_weights(tmp_path / "nowhere", "train.jsonl", data_root=tmp_path)
    assert err.value.argument == "weights"
    with pytest.raises(TrainingDataError, match="is not a folder") as err:
        calibrate_weights(WEIGHTS_DIR, "train.jsonl", data_root=tmp_path / "nope")
    assert err.value.argument == "data_root"
    with pytest.raises(TrainingDataError, match=r"train\.jsonl does not exist") as err:
        calibrate_weights(WEIGHTS_DIR, "train.jsonl", data_root=tmp_path)
    assert err.value.argument == "calibration_file"


def test_calibrate_weights_stores_the_bias_it_fits(tmp_path):
    from prunekit.context_pruner.calibrate import calibrate_weights
    from prunekit.context_pruner.model import save_pretrained
    from tests.context_pruner.helpers import write_hotpot_hf

    model, _ = tiny_model()
    weights = save_pretrained(model, tmp_path / "w")
    write_hotpot_hf(tmp_path / "train.jsonl")
    shown = []
    found = calibrate_weights(weights, "train.jsonl", data_root=tmp_path, target_compression=0.5,
                              status=lambda message: shown.append(message) or contextlib.nullcontext())  # fmt: skip
    saved = json.loads((weights / "config.json").read_text())
    assert saved["keep_logit_bias"] == found.keep_logit_bias and found.questions == 2
    assert "of train.jsonl (a training split)" in saved["extra"]["keep_logit_bias"]
    assert shown == ["calibrating the keep-logit bias on 2 questions of train.jsonl"]
