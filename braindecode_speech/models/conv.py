"""The encoder's temporal convolution stack: residual dilated convolutions and GLU convolutions.

Layout (paper defaults): ``depth`` blocks; block ``k`` holds two dilated convolutions with
dilations ``growth^(2k mod period)`` and ``growth^(2k+1 mod period)`` (1, 2, 4, 8, 16, 1, 2, ...),
each followed by batch norm and GELU and wrapped in a residual connection, except the very first
convolution of the stack, which changes the number of channels and is not residual. Each block
ends with a non-residual GLU convolution (``hidden → 2·hidden → GLU → hidden``). All convolutions
are "same"-padded, so the number of time samples never changes.
"""

from __future__ import annotations

from typing import Literal

from torch import Tensor, nn

__all__ = ["DilatedConv", "DilatedConvStack", "GLUConv", "make_activation"]

Activation = Literal["gelu", "relu"]


def make_activation(name: Activation) -> nn.Module:
    """``"gelu"`` → ``nn.GELU()``, ``"relu"`` → ``nn.ReLU()``."""
    if name == "gelu":
        return nn.GELU()
    if name == "relu":
        return nn.ReLU()
    raise ValueError(f"Unknown activation {name!r}; expected 'gelu' or 'relu'")


class DilatedConv(nn.Module):
    """``x [B, C_in, T]`` → ``[B, C_out, T]``: conv (odd kernel, dilated, same padding) → batch
    norm → activation → dropout, plus ``x`` when ``residual``."""

    def __init__(
        self,
        n_inputs: int,
        n_outputs: int,
        kernel_size: int,
        dilation: int,
        residual: bool,
        batch_norm: bool = True,
        activation: Activation = "gelu",
        dropout: float = 0.0,
    ):
        super().__init__()
        if kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd to keep the length, got {kernel_size}")
        if residual and n_inputs != n_outputs:
            raise ValueError(f"a residual conv needs n_inputs == n_outputs, got {n_inputs}, "
                             f"{n_outputs}")
        self.residual = residual
        layers: list[nn.Module] = [
            nn.Conv1d(n_inputs, n_outputs, kernel_size, dilation=dilation,
                      padding=dilation * (kernel_size // 2))
        ]
        if batch_norm:
            layers.append(nn.BatchNorm1d(n_outputs))
        layers.append(make_activation(activation))
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        self.layers = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        out = self.layers(x)
        return x + out if self.residual else out


class GLUConv(nn.Module):
    """``x [B, C, T]`` → ``[B, C, T]``: conv ``C → 2C`` (odd kernel, same padding) → GLU."""

    def __init__(self, n_channels: int, kernel_size: int):
        super().__init__()
        self.conv = nn.Conv1d(n_channels, 2 * n_channels, kernel_size, padding=kernel_size // 2)
        self.glu = nn.GLU(dim=1)

    def forward(self, x: Tensor) -> Tensor:
        return self.glu(self.conv(x))


class DilatedConvStack(nn.Module):
    """``depth`` blocks of two dilated convs (+ a GLU conv): ``[B, n_inputs, T]`` →
    ``[B, hidden, T]``.

    Parameters
    ----------
    n_inputs, hidden : input and hidden channel counts.
    depth : number of blocks (2·depth dilated convolutions).
    kernel_size : odd temporal kernel size, in samples.
    dilation_growth, dilation_period : conv ``i`` has dilation ``growth^(i mod period)``.
    skip : residual connections around the dilated convs (except the first one).
    glu : end each block with a non-residual GLU conv.
    batch_norm, activation, dropout : what follows each dilated conv.
    """

    def __init__(
        self,
        n_inputs: int,
        hidden: int = 320,
        depth: int = 5,
        kernel_size: int = 3,
        dilation_growth: int = 2,
        dilation_period: int = 5,
        skip: bool = True,
        glu: bool = True,
        batch_norm: bool = True,
        activation: Activation = "gelu",
        dropout: float = 0.0,
    ):
        super().__init__()
        blocks = []
        for block in range(depth):
            layers: list[nn.Module] = []
            for index in (2 * block, 2 * block + 1):
                layers.append(DilatedConv(
                    n_inputs if index == 0 else hidden, hidden, kernel_size,
                    dilation=dilation_growth ** (index % dilation_period),
                    residual=skip and index > 0, batch_norm=batch_norm, activation=activation,
                    dropout=dropout,
                ))
            if glu:
                layers.append(GLUConv(hidden, kernel_size))
            blocks.append(nn.Sequential(*layers))
        self.blocks = nn.ModuleList(blocks)

    def forward(self, x: Tensor) -> Tensor:
        for block in self.blocks:
            x = block(x)
        return x
