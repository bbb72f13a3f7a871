"""The one MLP builder every method's projector, predictor and head is made with.

As lightly's `ProjectionHead(blocks)`: a head is a list of blocks, each a Linear layer followed,
where given, by a normalization and an activation. The methods differ only in their blocks (their
official code's widths, biases, BatchNorms and activations, cited in each method's file), so
each writes them out and none carries its own builder.
"""
from __future__ import annotations

from torch import nn

Block = tuple[int, int, bool, "nn.Module | None", "nn.Module | None"]  # (in, out, bias, norm, activation)


def mlp(*blocks: Block) -> nn.Sequential:
    """Linear(in, out, bias) [+ norm] [+ activation] per block, in one flat nn.Sequential (so state
    dict keys are `0.weight`, `1.running_mean`, ... as with a hand-written Sequential)."""
    layers: list[nn.Module] = []
    for in_dim, out_dim, bias, norm, activation in blocks:
        layers.append(nn.Linear(in_dim, out_dim, bias=bias))
        layers += [module for module in (norm, activation) if module is not None]
    return nn.Sequential(*layers)


def widths_mlp(in_dim: int, widths: tuple[int, ...], *, hidden_bias: bool) -> nn.Sequential:
    """VICReg's and Barlow Twins' "8192-8192-8192" expanders: (Linear, BatchNorm1d, ReLU) between
    layers, the last Linear alone and without bias."""
    dims = [in_dim, *widths]
    hidden = [(dims[i], dims[i + 1], hidden_bias, nn.BatchNorm1d(dims[i + 1]), nn.ReLU(inplace=True))
              for i in range(len(dims) - 2)]
    return mlp(*hidden, (dims[-2], dims[-1], False, None, None))
