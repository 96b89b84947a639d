from pathlib import Path

from prunekit.context_pruner.data import is_evaluation_split
from prunekit.eval.datasets import DECODING_EVAL_DATA, GUIDANCE_TRAIN_DATA, dataset_files, decoding_exclude_file


def test_dataset_files_are_under_the_data_folder():
    assert dataset_files(DECODING_EVAL_DATA, "extract", "/data") == [Path("/data/qa/squad_v1.1/dev-v1.1.half_A.json")]
    assert set(DECODING_EVAL_DATA) == set(GUIDANCE_TRAIN_DATA)


def test_guidance_is_chosen_on_training_files_and_scored_on_evaluation_files():
    for task in DECODING_EVAL_DATA:
        assert all(is_evaluation_split(name) for name in DECODING_EVAL_DATA[task])
        assert not any(is_evaluation_split(name) for name in GUIDANCE_TRAIN_DATA[task])
        assert not set(DECODING_EVAL_DATA[task]) & set(GUIDANCE_TRAIN_DATA[task])


def test_the_stage1_exclude_file_is_only_for_math_and_only_when_present(tmp_path):
    assert decoding_exclude_file("math", tmp_path) is None
    records = tmp_path / "agp" / "stage1_math_reasoning.json"
    records.parent.mkdir()
    records.write_text("[]")
    assert decoding_exclude_file("math", tmp_path) == records
    assert decoding_exclude_file("judge", tmp_path) is None
