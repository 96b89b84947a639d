import torch

from prunekit.decoding.backends.sampling import make_generator, pick_next_token


def test_greedy_takes_the_argmax():
    assert pick_next_token(torch.tensor([0.1, 3.0, 2.0]), 0.0, 1.0, make_generator(0)) == 1


def test_top_p_keeps_only_the_nucleus():
    scores = torch.log(torch.tensor([0.6, 0.3, 0.05, 0.05]))
    picks = {pick_next_token(scores, 1.0, 0.7, make_generator(seed)) for seed in range(200)}
    assert picks <= {0, 1} and picks == {0, 1}


def test_a_seed_makes_sampling_repeatable():
    scores = torch.randn(100)
    first = [pick_next_token(scores, 1.0, 1.0, make_generator(7)) for _ in range(5)]
    assert first == [pick_next_token(scores, 1.0, 1.0, make_generator(7)) for _ in range(5)]


def test_masked_tokens_are_never_sampled():
    scores = torch.zeros(10)
    scores[3:] = float("-inf")
    assert {pick_next_token(scores, 1.5, 0.9, make_generator(s)) for s in range(100)} <= {0, 1, 2}
