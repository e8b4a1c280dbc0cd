"""Vision Transformer for small images, as in the `vision-transformers-cifar10` repository.

Patches -> one Linear, a class token and a learned position embedding, pre-norm Transformer blocks,
LayerNorm + Linear on the class token. At the defaults with 10 classes on 3x32x32 images it has
74 parameter tensors and 9,523,722 parameters, the counts of the paper's ViT.

Plain torch only (no custom autograd, no in-place ops), so Hessian-vector products can
double-backward through it under ``sdpa_kernel(SDPBackend.MATH)``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class Attention(nn.Module):
    def __init__(self, dim: int, heads: int, head_dim: int, dropout: float) -> None:
        super().__init__()
        self.heads = heads
        self.dropout = dropout
        self.qkv = nn.Linear(dim, 3 * heads * head_dim, bias=False)
        self.out = nn.Linear(heads * head_dim, dim)
        self.out_dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, tokens, _ = x.shape
        # (B, T, 3*H*D) -> three (B, H, T, D) tensors.
        q, k, v = self.qkv(x).reshape(batch, tokens, 3, self.heads, -1).permute(2, 0, 3, 1, 4)
        y = F.scaled_dot_product_attention(
            q, k, v, dropout_p=self.dropout if self.training else 0.0
        )
        y = y.transpose(1, 2).reshape(batch, tokens, -1)
        return self.out_dropout(self.out(y))


class FeedForward(nn.Module):
    def __init__(self, dim: int, mlp_dim: int, dropout: float) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(dim, mlp_dim),
            nn.GELU(),
            nn.Dropout(dropout),
            nn.Linear(mlp_dim, dim),
            nn.Dropout(dropout),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class Block(nn.Module):
    """Pre-norm Transformer block: x + Attn(LN(x)), then x + FF(LN(x))."""

    def __init__(self, dim: int, heads: int, head_dim: int, mlp_dim: int, dropout: float) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = Attention(dim, heads, head_dim, dropout)
        self.norm2 = nn.LayerNorm(dim)
        self.ff = FeedForward(dim, mlp_dim, dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.ff(self.norm2(x))


class ViT(nn.Module):
    def __init__(
        self,
        *,
        num_classes: int,
        in_channels: int,
        image_size: int,
        patch_size: int,
        dim: int,
        depth: int,
        heads: int,
        head_dim: int,
        mlp_dim: int,
        dropout: float,
        emb_dropout: float,
    ) -> None:
        super().__init__()
        sizes = {"patch_size": patch_size, "dim": dim, "depth": depth, "heads": heads}
        sizes |= {"head_dim": head_dim, "mlp_dim": mlp_dim}
        for name, value in sizes.items():
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        for name, value in {"dropout": dropout, "emb_dropout": emb_dropout}.items():
            if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value < 1:
                raise ValueError(f"{name} must be a probability in [0, 1), got {value!r}")
        if image_size % patch_size:
            raise ValueError(f"image_size {image_size} is not divisible by patch_size {patch_size}")
        self.patch_size = patch_size
        num_patches = (image_size // patch_size) ** 2
        self.patch_embedding = nn.Linear(patch_size * patch_size * in_channels, dim)
        self.pos_embedding = nn.Parameter(torch.randn(1, num_patches + 1, dim))
        self.cls_token = nn.Parameter(torch.randn(1, 1, dim))
        self.emb_dropout = nn.Dropout(emb_dropout)
        self.blocks = nn.Sequential(
            *(Block(dim, heads, head_dim, mlp_dim, dropout) for _ in range(depth))
        )
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, num_classes)

    def patchify(self, images: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> (B, patches row-major, p*p*C); each patch flattened as (row, col, C)."""
        b, c, h, w = images.shape
        p = self.patch_size
        x = images.reshape(b, c, h // p, p, w // p, p).permute(0, 2, 4, 3, 5, 1)
        return x.reshape(b, (h // p) * (w // p), p * p * c)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = self.patch_embedding(self.patchify(images))
        cls = self.cls_token.expand(x.shape[0], -1, -1)
        x = self.emb_dropout(torch.cat([cls, x], dim=1) + self.pos_embedding)
        x = self.blocks(x)
        return self.head(self.norm(x[:, 0]))


def vit(
    *,
    num_classes: int,
    in_channels: int,
    image_size: int,
    patch_size: int = 4,
    dim: int = 512,
    depth: int = 6,
    heads: int = 8,
    head_dim: int = 64,
    mlp_dim: int = 512,
    dropout: float = 0.1,
    emb_dropout: float = 0.1,
) -> ViT:
    """The paper's CIFAR ViT (patch 4, dim 512, depth 6, 8 heads of 64, MLP 512, dropout 0.1)."""
    return ViT(
        num_classes=num_classes,
        in_channels=in_channels,
        image_size=image_size,
        patch_size=patch_size,
        dim=dim,
        depth=depth,
        heads=heads,
        head_dim=head_dim,
        mlp_dim=mlp_dim,
        dropout=dropout,
        emb_dropout=emb_dropout,
    )
