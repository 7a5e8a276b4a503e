import pytest
import torch

import kme


def test_right_padding_keeps_positions():
    ids, mask = kme.pad_sequences([[5, 6, 7], [8]], 0)
    assert ids.tolist() == [[5, 6, 7], [8, 0, 0]]
    assert mask.tolist() == [[1, 1, 1], [1, 0, 0]]
    assert ids.dtype == torch.long and mask.dtype == torch.long


def test_left_padding_ends_every_row_at_the_last_column():
    ids, mask = kme.pad_sequences([[5, 6, 7], [8]], 9, side="left")
    assert ids.tolist() == [[5, 6, 7], [9, 9, 8]]
    assert mask.tolist() == [[1, 1, 1], [0, 0, 1]]


def test_bad_inputs_say_what_is_wrong():
    with pytest.raises(ValueError, match="at least one"):
        kme.pad_sequences([], 0)
    with pytest.raises(ValueError, match="pad token"):
        kme.pad_sequences([[1]], None)
    with pytest.raises(ValueError, match="side"):
        kme.pad_sequences([[1]], 0, side="middle")
