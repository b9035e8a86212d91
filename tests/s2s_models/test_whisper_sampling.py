"""Temperature sampling is reproducible and independent of the batch."""

from __future__ import annotations

import torch

from s2s_models.whisper.decoding import _gumbel_sample


def test_a_row_samples_the_same_whatever_its_batch_mates():
    torch.manual_seed(0)
    row = torch.randn(1, 50)
    mates = torch.randn(3, 50)
    alone = _gumbel_sample(row, [0], step=3, seed=7)
    batched = _gumbel_sample(torch.cat([mates[:2], row, mates[2:]]), [0, 0, 0, 0], 3, 7)
    assert batched[2] == alone[0]


def test_candidates_get_distinct_noise_and_frequencies_follow_softmax():
    logits = torch.tensor([[2.0, 1.0, 0.0, -1.0]])
    counts = torch.zeros(4)
    picks_a, picks_b = [], []
    for step in range(4000):
        two = _gumbel_sample(logits.repeat(2, 1), [0, 1], step, seed=1)
        counts[two[0]] += 1
        picks_a.append(int(two[0]))
        picks_b.append(int(two[1]))
    assert picks_a != picks_b  # best_of candidates are not copies of each other
    expected = torch.softmax(logits[0], dim=-1)
    assert torch.allclose(counts / counts.sum(), expected, atol=0.03)
