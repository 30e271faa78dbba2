"""Token batches cut to the batch's length: which positions may go."""
import torch

from vlsm.text.batching import needed_lengths, trim_to_lengths


def test_needed_lengths_is_last_shown_token_plus_one():
    mask = torch.tensor([[1, 1, 1, 0, 0, 0], [1, 1, 1, 1, 1, 0], [1, 0, 1, 0, 0, 0]])
    assert needed_lengths(mask).tolist() == [3, 5, 3]  # a hole inside a row is kept


def test_keep_raises_a_rows_length():
    mask = torch.tensor([[1, 1, 0, 0, 0], [1, 1, 1, 0, 0]])
    assert needed_lengths(mask, keep=torch.tensor([3, 0])).tolist() == [4, 3]


def test_a_row_that_shows_nothing_forbids_cutting():
    mask = torch.tensor([[1, 1, 0, 0], [0, 0, 0, 0]])
    assert needed_lengths(mask) is None
    # with a position to keep (causal encoders) the row's length is that position
    assert needed_lengths(mask, keep=torch.tensor([1, 2])).tolist() == [2, 3]


def test_trim_to_longest_row():
    ids = torch.arange(12).reshape(2, 6)
    mask = torch.tensor([[1, 1, 0, 0, 0, 0], [1, 1, 1, 1, 0, 0]])
    cut_ids, cut_mask = trim_to_lengths(ids, mask, needed_lengths(mask))
    assert cut_ids.tolist() == [[0, 1, 2, 3], [6, 7, 8, 9]]
    assert cut_mask.tolist() == [[1, 1, 0, 0], [1, 1, 1, 1]]


def test_trim_leaves_full_or_undecided_batches_alone():
    ids = torch.arange(6).reshape(2, 3)
    mask = torch.ones_like(ids)
    assert trim_to_lengths(ids, mask, needed_lengths(mask))[0] is ids
    assert trim_to_lengths(ids, None, None)[0] is ids
    assert trim_to_lengths(ids, mask, torch.tensor([0, 0]))[0].shape == (2, 1)  # never empty
