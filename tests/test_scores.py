"""MaxSim written once (:mod:`beir_peft.scores`): its doctests run, and its three layouts agree."""

from __future__ import annotations

import doctest

import torch

import beir_peft.scores
from beir_peft.scores import maxsim, packed_maxsim, pairwise_maxsim


def test_the_doctests_of_the_scoring_module_pass():
    result = doctest.testmod(beir_peft.scores, optionflags=doctest.ELLIPSIS)
    assert result.attempted >= 8 and result.failed == 0


def test_padded_pairwise_and_packed_maxsim_agree():
    generator = torch.Generator().manual_seed(0)
    q = torch.nn.functional.normalize(torch.randn(3, 5, 8, generator=generator), dim=-1)
    q_mask = torch.rand(3, 5, generator=generator) > 0.3
    q_mask[:, 0] = True
    d = torch.nn.functional.normalize(torch.randn(4, 7, 8, generator=generator), dim=-1)
    lens = torch.tensor([7, 3, 1, 5])
    d_mask = torch.arange(7)[None, :] < lens[:, None]
    padded = maxsim(q, q_mask, d, d_mask)
    packed = packed_maxsim(q, q_mask, d[d_mask], lens)
    torch.testing.assert_close(packed, padded)
    torch.testing.assert_close(pairwise_maxsim(q, q_mask, d[:3], d_mask[:3]), torch.diagonal(padded[:, :3]))
