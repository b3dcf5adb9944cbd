"""Seeds per (run seed, step, purpose, stream, sample): split-independent, distinct, reproducible."""

import numpy as np
import pytest
import torch

from sidbench.train.seeds import DRAWS, DataOrder, sample_generators, sample_seeds, scalar_seed


def test_a_sample_seed_depends_on_its_index_not_on_its_neighbours():
    whole = sample_seeds(0, 5, DRAWS, 1, np.arange(64))
    parts = np.concatenate([sample_seeds(0, 5, DRAWS, 1, np.arange(a, a + 16)) for a in range(0, 64, 16)])
    assert np.array_equal(whole, parts)
    assert np.array_equal(sample_seeds(0, 5, DRAWS, 1, [40, 3]), whole[[40, 3]])
    assert len(set(whole.tolist())) == 64 and int(whole.max()) < 2**63


@pytest.mark.parametrize("change", [(1, 5, DRAWS, 1), (0, 6, DRAWS, 1), (0, 5, DRAWS + 1, 1),
                                    (0, 5, DRAWS, 2)])
def test_every_part_of_the_key_changes_the_seeds(change):
    base = sample_seeds(0, 5, DRAWS, 1, np.arange(32))
    other = sample_seeds(*change, np.arange(32))
    assert not np.intersect1d(base, other).size


def test_generators_draw_the_same_numbers_for_the_same_sample():
    a = sample_generators(3, 2, DRAWS, 0, [7, 8])
    b = sample_generators(3, 2, DRAWS, 0, [8])
    assert torch.equal(torch.randn(5, generator=a[1]), torch.randn(5, generator=b[0]))
    assert scalar_seed(3, 1, 2) == scalar_seed(3, 1, 2) != scalar_seed(3, 2, 1)


def test_the_data_order_is_a_fresh_permutation_per_epoch():
    order = DataOrder(seed=0, num_items=10)
    epoch0, epoch1 = order.indices(np.arange(10)), order.indices(np.arange(10, 20))
    assert sorted(epoch0) == sorted(epoch1) == list(range(10)) and not np.array_equal(epoch0, epoch1)
    assert np.array_equal(order.indices(np.array([13, 2])), [epoch1[3], epoch0[2]])
    assert np.array_equal(DataOrder(0, 10).indices(np.arange(25)), order.indices(np.arange(25)))
    assert not np.array_equal(DataOrder(1, 10).indices(np.arange(10)), epoch0)
