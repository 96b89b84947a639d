"""TokenPenalties: OpenAI's frequency and presence penalties over the answer's own tokens."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from decoding.penalties import TokenPenalties


def test_no_tokens_yet_changes_nothing():
    row = np.arange(4, dtype=np.float32)
    assert TokenPenalties(1.0, 1.0).apply(row.copy()).tolist() == row.tolist()


@pytest.mark.parametrize("as_tensor", [False, True])
def test_frequency_counts_every_use_presence_only_the_first(as_tensor):
    pen = TokenPenalties(frequency=0.5, presence=0.25)
    for token in (2, 2, 2, 0):
        pen.observe(token)
    row = torch.zeros(4) if as_tensor else np.zeros(4, dtype=np.float32)
    out = pen.apply(row)
    assert out is row  # in place
    assert [round(float(x), 4) for x in out] == [-0.75, 0.0, -1.75, 0.0]


def test_negative_penalties_favour_used_tokens():
    pen = TokenPenalties(frequency=-1.0)
    pen.observe(1)
    assert pen.apply(np.zeros(3)).tolist() == [0.0, 1.0, 0.0]


def test_penalties_can_change_the_greedy_pick():
    pen = TokenPenalties(presence=1.0)
    pen.observe(0)
    row = np.array([2.0, 1.5, 0.0])
    assert int(np.argmax(pen.apply(row))) == 1
