import numpy as np

from prunekit.decoding.backends.embeddings import load_embedder


def test_embeddings_are_normalised_and_meaningful():
    embedder = load_embedder()
    vectors = embedder(["a small cat", "a little kitten", "SQL joins two tables"])
    assert vectors.shape == (3, 384)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-4)
    sims = vectors @ vectors.T
    assert sims[0, 1] > sims[0, 2] + 0.2
    assert embedder([]).shape == (0, 384)
    assert load_embedder() is embedder
