"""MaxSim, the late-interaction relevance score, written once for the model, its loss and its search.

``s(q, d) = sum over kept query tokens i of max over kept document tokens j of q_i . d_j``
(Khattab & Zaharia 2020, equation 3; Tam et al. 2022, equation 2). With L2-normalised vectors the
inner product is the cosine. Three layouts of the same score:

* :func:`maxsim`: every query against every document, both padded: ``(n_queries, n_docs)``
  (:meth:`beir_peft.PT2ColBERT.score`, and the in-batch negatives of
  :class:`~beir_peft.losses.ColBERTPairwiseLoss`);
* :func:`pairwise_maxsim`: query ``a`` against document ``a`` only: ``(n,)`` (the diagonal of
  :func:`maxsim`, without computing the rest; the loss' own positive and negatives);
* :func:`packed_maxsim`: queries against documents stored as their token vectors one after another
  without padding, ``lens[j]`` rows for document ``j`` (:class:`~beir_peft.search.maxsim.MaxSimSearch`,
  whose float16 token store has that layout).

A masked-out query token adds 0; a document with no kept token scores ``-inf``.
"""

from __future__ import annotations

import torch

__all__ = ["maxsim", "packed_maxsim", "pairwise_maxsim"]


def maxsim(
    q_vectors: torch.Tensor,
    q_mask: torch.Tensor | None,
    d_vectors: torch.Tensor,
    d_mask: torch.Tensor | None,
) -> torch.Tensor:
    """MaxSim of every query against every document: ``(n_queries, n_docs)``.

    ``score[a, b] = sum over kept query tokens i of max over kept document tokens j of q[a, i] . d[b, j]``
    (Khattab & Zaharia 2020, equation 3; Tam et al. 2022, equation 2). With L2-normalised vectors the
    inner product is the cosine.

    Args:
        q_vectors: ``(n_queries, Lq, dim)``; q_mask: ``(n_queries, Lq)`` bool/0-1, which query
            vectors count (``None``: all).
        d_vectors: ``(n_docs, Ld, dim)``; d_mask: ``(n_docs, Ld)``, which document vectors can be
            the max (``None``: all). A document with no kept token scores ``-inf``.

    >>> q = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]])          # one query, two tokens
    >>> d = torch.tensor([[[1.0, 0.0], [0.5, 0.5]], [[0.0, 2.0], [9.0, 9.0]]])
    >>> maxsim(q, None, d, None).tolist()                     # 1 + 0.5, 9 + 9
    [[1.5, 18.0]]
    >>> maxsim(q, None, d, torch.tensor([[1, 1], [1, 0]])).tolist()  # document 2's last token masked
    [[1.5, 2.0]]
    >>> maxsim(q, torch.tensor([[1, 0]]), d, torch.tensor([[1, 1], [0, 0]])).tolist()
    [[1.0, -inf]]
    """
    sims = torch.einsum("aid,bjd->abij", q_vectors, d_vectors.to(q_vectors.dtype))
    if d_mask is not None:
        sims = sims.masked_fill(~d_mask.bool()[None, :, None, :], float("-inf"))
    best = sims.amax(dim=-1)  # (n_queries, n_docs, Lq)
    if q_mask is not None:
        best = best.masked_fill(~q_mask.bool()[:, None, :], 0.0)
    return best.sum(dim=-1)


def pairwise_maxsim(
    q_vectors: torch.Tensor, q_mask: torch.Tensor, d_vectors: torch.Tensor, d_mask: torch.Tensor
) -> torch.Tensor:
    """MaxSim of query ``a`` against document ``a`` only: ``(n,)``, the diagonal of :func:`maxsim`.

    Args:
        q_vectors: ``(n, Lq, dim)``; q_mask: ``(n, Lq)``, which query vectors count.
        d_vectors: ``(n, Ld, dim)``; d_mask: ``(n, Ld)``, which document vectors can be the max.

    >>> q = torch.tensor([[[1.0, 0.0], [0.0, 1.0]], [[1.0, 1.0], [0.0, 0.0]]])
    >>> d = torch.tensor([[[1.0, 0.0], [0.5, 0.5]], [[0.0, 2.0], [9.0, 9.0]]])
    >>> both = torch.ones(2, 2, dtype=torch.bool)
    >>> pairwise_maxsim(q, both, d, both).tolist()
    [1.5, 18.0]
    >>> torch.equal(pairwise_maxsim(q, both, d, both), torch.diagonal(maxsim(q, both, d, both)))
    True
    """
    sims = torch.einsum("aid,ajd->aij", q_vectors, d_vectors.to(q_vectors.dtype))
    sims = sims.masked_fill(~d_mask.bool()[:, None, :], float("-inf"))
    best = sims.amax(dim=-1).masked_fill(~q_mask.bool(), 0.0)
    return best.sum(dim=-1)


def packed_maxsim(
    q_vectors: torch.Tensor, q_mask: torch.Tensor, tokens: torch.Tensor, lens: torch.Tensor
) -> torch.Tensor:
    """MaxSim of queries ``(B, Lq, dim)`` against documents given as their token vectors one after
    another, ``tokens (sum(lens), dim)``, document ``j`` holding ``lens[j]`` rows: scores ``(B, D)``.

    One matrix product and a segment max per document, with no padding; a document without token
    vectors scores ``-inf``.

    >>> q = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]])
    >>> tokens = torch.tensor([[1.0, 0.0], [0.5, 0.5], [0.0, 2.0]])  # documents of 2, 0 and 1 tokens
    >>> packed_maxsim(q, torch.tensor([[True, True]]), tokens, torch.tensor([2, 0, 1])).tolist()
    [[1.5, -inf, 2.0]]
    >>> padded = torch.tensor([[[1.0, 0.0], [0.5, 0.5]], [[0.0, 2.0], [0.0, 0.0]]])
    >>> maxsim(q, None, padded, torch.tensor([[1, 1], [1, 0]])).tolist()  # the same, padded
    [[1.5, 2.0]]
    """
    n, q_len, dim = q_vectors.shape
    sims = tokens @ q_vectors.reshape(-1, dim).T  # (tokens, B * Lq)
    best = torch.full((len(lens), n * q_len), float("-inf"), device=tokens.device, dtype=sims.dtype)
    nonempty = lens > 0
    if bool(nonempty.any()):
        best[nonempty] = torch.segment_reduce(sims, "max", lengths=lens[nonempty], axis=0)
    per_token = best.view(len(lens), n, q_len).permute(1, 0, 2)  # (B, D, Lq)
    return per_token.masked_fill(~q_mask[:, None, :], 0.0).sum(dim=-1)
