"""The hypernetwork: architecture logits as a function of the complexity vector s.

alpha(s) = sum_r w_r(s) A_r,   w_r(s) = softmax_r(-||s - s_ref,r||^2 / h)

(The reference code has +||.||^2, which weights the *farthest* point most; docs/concepts.md)
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from search_core.config import CELL_TYPES, SearchConfig
from search_core.placements import PLACEMENTS, place


class HyperNet(nn.Module):
    """Holds reference points (M, k) and logit tables A (M, cell types, edges, k)."""

    def __init__(
        self,
        ref_points: np.ndarray,
        num_edges: int,
        bandwidth: float,
        init_scale: float = 1e-3,
        trainable_points: bool = False,
    ) -> None:
        super().__init__()
        points = torch.as_tensor(ref_points, dtype=torch.float32)
        num_refs, num_ops = points.shape
        self.bandwidth = bandwidth
        self.trainable_points = trainable_points
        # A_r: (M, 2, E, k), small so that no architecture is favoured at the start.
        self.logits = nn.Parameter(
            init_scale * torch.randn(num_refs, len(CELL_TYPES), num_edges, num_ops)
        )
        if trainable_points:
            self.ref_points = nn.Parameter(points)
        else:
            self.register_buffer("ref_points", points)

    @property
    def num_ops(self) -> int:
        return int(self.logits.shape[-1])

    def mixing_weights(self, s: torch.Tensor) -> torch.Tensor:
        """w(s): (M,) for s of shape (k,), or (B, M) for s of shape (B, k)."""
        sq_dist = ((s.unsqueeze(-2) - self.ref_points) ** 2).sum(-1)
        return torch.softmax(-sq_dist / self.bandwidth, dim=-1)

    def forward(self, s: torch.Tensor) -> torch.Tensor:
        """alpha(s): (2, E, k) for s of shape (k,); (B, 2, E, k) for (B, k)."""
        w = self.mixing_weights(s)
        return torch.tensordot(w, self.logits, dims=([-1], [0]))

    @torch.no_grad()
    def project_points_(self) -> None:
        """Put trainable reference points back onto the simplex."""
        if self.trainable_points:
            self.ref_points.copy_(project_to_simplex(self.ref_points))


def project_to_simplex(v: torch.Tensor) -> torch.Tensor:
    """Euclidean projection of each row of v onto the simplex (Duchi et al., 2008)."""
    u, _ = torch.sort(v, dim=-1, descending=True)
    css = torch.cumsum(u, dim=-1) - 1.0
    idx = torch.arange(1, v.shape[-1] + 1, dtype=v.dtype, device=v.device)
    rho = (u - css / idx > 0).sum(dim=-1, keepdim=True)
    theta = css.gather(-1, rho - 1) / rho.to(v.dtype)
    return torch.clamp(v - theta, min=0.0)


def build_hypernet(config: SearchConfig) -> HyperNet:
    """The hypernetwork of ``config``: placement seeded by ``config.seed``."""
    space, hyper = config.space, config.hypernet
    return HyperNet(
        place(hyper.placement, space.num_ops, hyper.num_refs, config.seed),
        space.num_edges,
        hyper.bandwidth,
        hyper.init_scale,
        trainable_points=PLACEMENTS.get(hyper.placement).trainable,
    )
