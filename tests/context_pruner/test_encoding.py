import itertools

import numpy as np
import pytest

from prunekit.context_pruner.encoding import IGNORE, block_windows, build_block, collate


@pytest.mark.parametrize(("n", "budget", "stride"), [(0, 5, 2), (5, 5, 2), (6, 5, 2), (100, 16, 4), (33, 8, 100)])
def test_windows_cover_every_token_within_budget(n, budget, stride):
    windows = block_windows(n, budget, stride)
    covered = set()
    for a, b in windows:
        assert 0 <= a < b <= n or (n == 0 and (a, b) == (0, 0))
        assert b - a <= budget
        covered.update(range(a, b))
    assert covered == set(range(n))
    assert all(w2[0] < w1[1] for w1, w2 in itertools.pairwise(windows))  # neighbours overlap


def test_windows_without_room_raise():
    with pytest.raises(ValueError, match="no room"):
        block_windows(10, 0, 2)


def test_build_block_layout():
    block = build_block(3, [7, 8], [9], [10, 11, 12, 13], 1, 3, cls_id=101, sep_id=102)
    assert block.ids.tolist() == [101, 7, 8, 102, 9, 11, 12, 102]
    assert block.token_types.tolist() == [0, 0, 0, 0, 1, 1, 1, 1]
    assert (block.title_offset, block.n_title, block.ctx_offset) == (4, 1, 5)
    assert block.item == 3 and IGNORE == -100


def test_collate_pads_to_longest():
    ids, mask, types = collate([np.array([1, 2, 3]), np.array([4])], [np.array([0, 1, 1]), np.array([0])], pad_id=0)
    assert ids.tolist() == [[1, 2, 3], [4, 0, 0]]
    assert mask.tolist() == [[1, 1, 1], [1, 0, 0]]
    assert types.tolist() == [[0, 1, 1], [0, 0, 0]]
