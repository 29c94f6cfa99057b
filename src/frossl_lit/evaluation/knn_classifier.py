"""Weighted kNN classifier on features (Wu et al. 2018; the protocol of DINO and solo-learn)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


@torch.no_grad()
def knn_predict(
    queries: torch.Tensor,
    bank: torch.Tensor,
    bank_labels: torch.Tensor,
    num_classes: int,
    k: int = 20,
    temperature: float = 0.07,
    chunk_size: int = 1024,
) -> torch.Tensor:
    """Class scores (Q, C): cosine similarity to the bank, top-k neighbours voting with weight exp(sim / T)."""
    if k < 1 or temperature <= 0:
        raise ValueError(f"knn: need k >= 1 and temperature > 0 (got k={k}, temperature={temperature})")
    queries, bank = F.normalize(queries.float(), dim=1), F.normalize(bank.float(), dim=1)
    k = min(k, bank.shape[0])
    scores = []
    for chunk in queries.split(chunk_size):
        similarity, index = (chunk @ bank.T).topk(k, dim=1)
        votes = torch.zeros(chunk.shape[0], num_classes, device=chunk.device)
        votes.scatter_add_(1, bank_labels[index], torch.exp(similarity / temperature))
        scores.append(votes)
    return torch.cat(scores) if scores else torch.zeros(0, num_classes, device=queries.device)
