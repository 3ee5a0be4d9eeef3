"""The sync counter flags exactly the ops that block the host on CUDA (counted on the CPU)."""

import torch

from ecgssl_nb.syncs import count_ops


def test_item_bool_nonzero_and_mask_indexing_count_as_syncs():
    x = torch.arange(6.0)
    with count_ops() as c:
        _ = x.sum().item()  # 1
        if x.max() > 2:  # 1 (bool of a tensor)
            pass
        _ = torch.nonzero(x > 1)  # 1
        _ = x[x > 2]  # 1 (boolean-mask index)
    assert c.n_syncs == 4, c.syncs


def test_arithmetic_indexing_by_integers_and_where_do_not_sync():
    x = torch.randn(4, 5)
    idx = torch.tensor([0, 2])
    with count_ops() as c:
        y = torch.where(x > 0, x, torch.zeros_like(x)).sum(1)
        _ = y[idx] * 2
        _ = torch.repeat_interleave(idx, torch.tensor([1, 1]), output_size=2)
        _ = x.masked_fill(x < 0, 0.0).mean()
    assert c.n_syncs == 0, c.syncs
    assert c.n_calls > 4
