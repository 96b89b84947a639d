"""TokenPenalties: OpenAI's frequency and presence penalties over the answer's own tokens."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from prunekit.decoding.backends.penalties import TokenPenalties


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


# ----------------------------------------------------------------------------- the repetition penalty (loop guard)


@pytest.mark.parametrize("as_tensor", [False, True])
def test_repetition_divides_positive_and_multiplies_negative_logits_of_seen_tokens(as_tensor):
    pen = TokenPenalties(repetition=2.0)
    for token in (0, 1, 1, 1):  # CTRL's penalty is per token seen, not per use: 1 is hit once
        pen.observe(token)
    values = [4.0, -3.0, 5.0, -1.0]
    row = torch.tensor(values) if as_tensor else np.array(values, dtype=np.float32)
    out = pen.apply(row)
    assert out is row  # in place
    assert [float(x) for x in out] == [2.0, -6.0, 5.0, -1.0]


def test_repetition_forgets_tokens_that_left_the_window():
    pen = TokenPenalties(repetition=2.0, window=2)
    for token in (0, 1, 2):  # 0 is three tokens back: out of a 2-token window
        pen.observe(token)
    assert pen.apply(np.full(4, 4.0)).tolist() == [4.0, 2.0, 2.0, 4.0]
    pen.observe(1)
    pen.observe(1)  # the window is now [1, 1]: 2 has left, 1 is still hit once
    assert pen.apply(np.full(4, 4.0)).tolist() == [4.0, 2.0, 4.0, 4.0]


def test_repetition_of_one_tracks_nothing_and_changes_nothing():
    pen = TokenPenalties(repetition=1.0)
    for token in range(100):
        pen.observe(token)
    assert pen.apply(np.ones(100)).tolist() == [1.0] * 100


def test_repetition_applies_before_frequency_and_presence():
    pen = TokenPenalties(frequency=1.0, presence=0.5, repetition=2.0)
    pen.observe(0)
    pen.observe(0)
    assert pen.apply(np.array([8.0, 8.0])).tolist() == [8.0 / 2 - 2 * 1.0 - 0.5, 8.0]


def test_repetition_breaks_a_greedy_loop():
    # the loop token leads its rival by less than the penalty takes off it: the rival wins once the loop is seen
    pen = TokenPenalties(repetition=1.1)
    row = np.array([10.0, 9.5])
    assert int(np.argmax(pen.apply(row.copy()))) == 0
    pen.observe(0)
    assert int(np.argmax(pen.apply(row.copy()))) == 1


def test_penalties_for_params():
    from prunekit.decoding.types import GenerationParams

    pen = TokenPenalties.for_params(GenerationParams(frequency_penalty=0.5, repetition_penalty=1.3))
    assert (pen.frequency, pen.presence, pen.repetition) == (0.5, 0.0, 1.3)
    assert TokenPenalties.for_params(GenerationParams()).repetition == 1.0  # None: no guard at this level


@pytest.mark.parametrize(("repetition", "window"), [(0.0, 64), (-1.0, 64), (float("nan"), 64), (1.1, 0)])
def test_bad_repetition_settings_are_refused(repetition, window):
    with pytest.raises(ValueError, match="repetition"):
        TokenPenalties(repetition=repetition, window=window)


def test_apply_touches_only_the_window_not_the_vocabulary():
    # it runs at every token: the cost must follow the window (<= 64 ids), not the 49k vocabulary
    pen = TokenPenalties(repetition=1.1)
    for token in range(1000):
        pen.observe(token)
    assert len(pen._in_window) == 64
    row = np.ones(49_152, dtype=np.float32)
    out = pen.apply(row)
    assert int((out != 1.0).sum()) == 64
