import numpy as np

from prunekit.context_pruner.biencoder import BiEncoder
from prunekit.context_pruner.data import Passage
from prunekit.context_pruner.train import TrainConfig, _teacher_scores


def test_similarity_ranks_the_relevant_text_first():
    enc = BiEncoder()
    sims = enc.similarity("What is the capital of France?", ["Bananas are yellow.", "Paris is the capital of France."])
    assert sims.shape == (2,) and sims.argmax() == 1
    emb = enc.embed(["a", "b c"])
    assert np.allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)


def test_teacher_mixes_label_and_cosine(tmp_path):
    passages = [
        Passage("Capital of France?", "Paris", ("Paris is the capital of France.",), (1,), "q", "t"),
        Passage("Capital of France?", "Bananas", ("Bananas are yellow.",), (0,), "q", "t"),
    ]
    scores = _teacher_scores(TrainConfig(label_weight=0.5), passages, tmp_path / "teacher.npz")
    assert scores[0] > 0.5 > scores[1]
    assert scores[0] > scores[1]
    again = _teacher_scores(TrainConfig(label_weight=0.5), passages, tmp_path / "teacher.npz")  # from the cache
    assert np.allclose(scores, again)
