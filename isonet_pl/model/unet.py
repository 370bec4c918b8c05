"""IsoNet 0.2's "fullconv" 3-D U-Net (SPEC §7) in PyTorch.

The network maps a batch of cubes ``(b, in_channels, z, y, x)`` to ``(b, out_channels, z, y,
x)``. With the defaults it has the architecture and parameter count of IsoNet's default model
(filter base 64, depth 3, three convolutions per level, batch norm, dropout 0.3, strided-conv
down-sampling, residual output): 27,322,369 convolution weights and biases plus 5,376 trainable
batch-norm parameters.

Layer conventions, and how the Keras settings map to PyTorch:

* Every convolution uses "same" padding (``kernel_size // 2``). For the stride-2 down-sampling
  convolutions and the transposed convolutions PyTorch pads symmetrically, whereas TF pads
  "same" asymmetrically; the sampling grids therefore differ by one voxel from IsoNet's. That
  only matters when importing IsoNet ``.h5`` weights (SPEC §7.4), which we do not do.
* Keras ``BatchNormalization`` defaults are ``momentum=0.99`` (weight of the *old* running
  statistic) and ``epsilon=1e-3``; PyTorch's ``momentum`` is the weight of the *new* batch
  statistic, so the same update is ``BatchNorm3d(eps=1e-3, momentum=0.01)``.
* Keras ``Dropout`` zeroes single elements, so we use element-wise :class:`torch.nn.Dropout`,
  not channel-wise ``Dropout3d``.
* Weights are drawn from N(0, 0.02²) and biases are zero, for every (transposed) convolution.
  Batch-norm layers keep PyTorch's (and Keras's) γ = 1, β = 0.
"""

from __future__ import annotations

import logging

import torch
from torch import nn

logger = logging.getLogger(__name__)

__all__ = ["UNet3D"]

# IsoNet's activation: LeakyReLU with negative slope 0.05 (SPEC §7.1).
LEAKY_SLOPE = 0.05
# Keras BatchNormalization defaults, expressed in PyTorch terms (see the module docstring).
BN_EPS = 1e-3
BN_MOMENTUM = 0.01
# Standard deviation of the normal weight initialisation (SPEC §7.1).
INIT_STD = 0.02


class ConvBlock(nn.Sequential):
    """Conv3d → BatchNorm3d? → Dropout? → LeakyReLU(0.05)? (IsoNet's ConvBlock, SPEC §7.1).

    Parameters
    ----------
    in_channels : int
        Channels of the input ``(b, in_channels, z, y, x)``.
    out_channels : int
        Channels of the output.
    kernel_size : int, default 3
        Cubic kernel size; padding ``kernel_size // 2`` keeps the size ("same") at stride 1.
    stride : int, default 1
        Stride 2 halves every spatial size (for even sizes).
    batch_norm : bool, default False
        Add ``BatchNorm3d(eps=1e-3, momentum=0.01)`` after the convolution.
    dropout : float, default 0.0
        Element-wise dropout rate after the normalisation; 0 adds no layer.
    activation : bool, default True
        End with ``LeakyReLU(0.05)``; False gives a linear block.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        stride: int = 1,
        batch_norm: bool = False,
        dropout: float = 0.0,
        activation: bool = True,
    ) -> None:
        layers: list[nn.Module] = [
            nn.Conv3d(
                in_channels,
                out_channels,
                kernel_size,
                stride=stride,
                padding=kernel_size // 2,
            )
        ]
        if batch_norm:
            layers.append(nn.BatchNorm3d(out_channels, eps=BN_EPS, momentum=BN_MOMENTUM))
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        if activation:
            layers.append(nn.LeakyReLU(LEAKY_SLOPE))
        super().__init__(*layers)


class Level(nn.Sequential):
    """``n`` ConvBlocks at one resolution: the first maps ``in_channels`` to ``out_channels``.

    Parameters
    ----------
    in_channels : int
        Channels of the input ``(b, in_channels, z, y, x)``.
    out_channels : int
        Channels of every block's output.
    n : int
        Number of blocks, at least 1.
    **block_kwargs
        Passed to every :class:`ConvBlock` (``kernel_size``, ``batch_norm``, ``dropout``).
    """

    def __init__(self, in_channels: int, out_channels: int, n: int, **block_kwargs) -> None:
        blocks = [
            ConvBlock(in_channels if i == 0 else out_channels, out_channels, **block_kwargs)
            for i in range(n)
        ]
        super().__init__(*blocks)


class Down(nn.Module):
    """Halve the spatial size: a stride-2 ConvBlock (no BN, no dropout) or MaxPool3d(2).

    Parameters
    ----------
    channels : int
        Channels in and out.
    kernel_size : int
        Kernel of the strided convolution.
    pool : bool
        Use ``MaxPool3d(2)`` instead of the strided convolution.
    """

    def __init__(self, channels: int, kernel_size: int, pool: bool) -> None:
        super().__init__()
        if pool:
            self.down: nn.Module = nn.MaxPool3d(2)
        else:
            self.down = ConvBlock(channels, channels, kernel_size, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map ``(b, c, z, y, x)`` to ``(b, c, z/2, y/2, x/2)``."""
        return self.down(x)


class Up(nn.Module):
    """Double the spatial size and concatenate the skip connection (decoder entry).

    Strided mode (IsoNet's default): ``ConvTranspose3d(in → out, k=3, s=2, p=1,
    output_padding=1)``, concatenation ``[up, skip]``, then ``LeakyReLU(0.05)`` on the
    concatenation, so the skip features pass a second leaky ReLU (as in IsoNet, SPEC §7.2).
    Pool mode: nearest-neighbour ``Upsample(×2)`` (channels unchanged) and the concatenation,
    without an activation (SPEC §7.3).

    Parameters
    ----------
    in_channels : int
        Channels of the coarse input.
    out_channels : int
        Channels of the transposed convolution's output (strided mode only).
    pool : bool
        Use parameter-free up-sampling instead of the transposed convolution.
    """

    def __init__(self, in_channels: int, out_channels: int, pool: bool) -> None:
        super().__init__()
        self.pool = pool
        if pool:
            self.up: nn.Module = nn.Upsample(scale_factor=2, mode="nearest")
            self.act: nn.Module = nn.Identity()
            self.out_channels = in_channels
        else:
            self.up = nn.ConvTranspose3d(
                in_channels, out_channels, kernel_size=3, stride=2, padding=1, output_padding=1
            )
            self.act = nn.LeakyReLU(LEAKY_SLOPE)
            self.out_channels = out_channels

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        """Map ``(b, c, z, y, x)`` and a skip ``(b, s, 2z, 2y, 2x)`` to ``(b, o + s, 2z, 2y, 2x)``.

        ``o`` is ``self.out_channels``.
        """
        return self.act(torch.cat([self.up(x), skip], dim=1))


class UNet3D(nn.Module):
    """IsoNet 0.2's fully convolutional 3-D U-Net (SPEC §7.2).

    Parameters
    ----------
    in_channels : int, default 1
        Channels of the input ``(b, in_channels, z, y, x)``.
    out_channels : int, default 1
        Channels of the output ``(b, out_channels, z, y, x)``.
    depth : int, default 3
        Number of down-sampling steps (IsoNet ``unet_depth``). Inputs must have spatial sizes
        divisible by ``2**depth`` (:attr:`min_input_multiple`).
    base_channels : int, default 64
        Channels at the finest level (IsoNet ``filter_base``); level ``n`` has
        ``base_channels * 2**n``.
    convs_per_level : int, default 3
        ConvBlocks per encoder and decoder level (IsoNet ``convs_per_depth``); the bottleneck
        has ``max(convs_per_level - 2, 0)`` wide blocks plus one narrowing linear block.
    kernel_size : int, default 3
        Cubic kernel of every convolution except the transposed ones (always 3) and the head
        (1). Must be odd.
    batch_norm : bool, default True
        Batch normalisation in the encoder and decoder blocks (IsoNet
        ``batch_normalization``).
    dropout : float, default 0.3
        Element-wise dropout rate in the encoder and decoder blocks (IsoNet ``drop_out``).
    residual : bool, default True
        Add the input to the head's output (IsoNet always does in ``refine``); needs
        ``in_channels == out_channels``.
    pool : bool, default False
        Down-sample with ``MaxPool3d(2)`` and up-sample with nearest-neighbour ``Upsample``
        instead of strided and transposed convolutions (IsoNet ``pool=2,2,2``).

    Raises
    ------
    ValueError
        For a non-positive size or channel count, an even kernel, a dropout rate outside
        [0, 1), or ``residual`` with ``in_channels != out_channels``.

    Notes
    -----
    With ``f_n = base_channels * 2**n`` and ``K = convs_per_level``, the layers are:

    * encoder level ``n = 0 … depth-1``: ``K`` ConvBlocks to ``f_n`` (BN, dropout, leaky ReLU),
      whose output is the skip ``s_n``, then down-sampling ``f_n → f_n``;
    * bottleneck (no BN, no dropout): ``max(K-2, 0)`` ConvBlocks to ``f_depth``, then one
      linear ConvBlock to ``f_{depth-1}``;
    * decoder level ``n = depth-1 … 0``: up-sampling to ``f_n`` channels, concatenation with
      ``s_n``, leaky ReLU, then ``K`` ConvBlocks to ``f_n``;
    * head: ``Conv3d(f_0 → out_channels, 1×1×1)``, linear; plus the input if ``residual``.

    All biases start at 0 and all convolution weights are drawn from N(0, 0.02²).
    """

    def __init__(
        self,
        in_channels: int = 1,
        out_channels: int = 1,
        depth: int = 3,
        base_channels: int = 64,
        convs_per_level: int = 3,
        kernel_size: int = 3,
        batch_norm: bool = True,
        dropout: float = 0.3,
        residual: bool = True,
        pool: bool = False,
    ) -> None:
        super().__init__()
        for name, value in [
            ("in_channels", in_channels),
            ("out_channels", out_channels),
            ("depth", depth),
            ("base_channels", base_channels),
            ("convs_per_level", convs_per_level),
            ("kernel_size", kernel_size),
        ]:
            if value < 1:
                raise ValueError(f"UNet3D: {name} must be >= 1, got {value}")
        if kernel_size % 2 == 0:
            raise ValueError(
                f"UNet3D: kernel_size must be odd for 'same' padding, got {kernel_size}"
            )
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"UNet3D: dropout must be in [0, 1), got {dropout}")
        if residual and in_channels != out_channels:
            raise ValueError(
                "UNet3D: residual=True adds the input to the output, so in_channels must equal "
                f"out_channels (got {in_channels} and {out_channels}); set residual=False"
            )
        self.depth = depth
        self.residual = residual
        self.kernel_size = kernel_size
        self.convs_per_level = convs_per_level
        self.base_channels = base_channels

        channels = [base_channels * 2**n for n in range(depth + 1)]
        level_kwargs = dict(kernel_size=kernel_size, batch_norm=batch_norm, dropout=dropout)

        # Encoder: K blocks per level (the skip), then halve the size.
        self.encoder = nn.ModuleList()
        self.down = nn.ModuleList()
        previous = in_channels
        for n in range(depth):
            self.encoder.append(Level(previous, channels[n], convs_per_level, **level_kwargs))
            self.down.append(Down(channels[n], kernel_size, pool))
            previous = channels[n]

        # Bottleneck at the coarsest size, without BN or dropout; the last block is linear.
        n_wide = max(convs_per_level - 2, 0)
        wide = channels[depth] if n_wide else previous
        self.bottleneck = nn.Sequential(
            *[
                ConvBlock(previous if i == 0 else wide, wide, kernel_size)
                for i in range(n_wide)
            ],
            ConvBlock(wide, channels[depth - 1], kernel_size, activation=False),
        )
        previous = channels[depth - 1]

        # Decoder, coarse to fine: up-sample, concatenate the skip, K blocks.
        self.up = nn.ModuleList()
        self.decoder = nn.ModuleList()
        for n in reversed(range(depth)):
            up = Up(previous, channels[n], pool)
            self.up.append(up)
            self.decoder.append(
                Level(up.out_channels + channels[n], channels[n], convs_per_level, **level_kwargs)
            )
            previous = channels[n]

        self.head = nn.Conv3d(previous, out_channels, kernel_size=1)

        self.reset_parameters()
        logger.debug(
            "UNet3D(depth=%d, base_channels=%d, convs_per_level=%d, pool=%s): %d parameters",
            depth,
            base_channels,
            convs_per_level,
            pool,
            sum(p.numel() for p in self.parameters()),
        )

    @property
    def min_input_multiple(self) -> int:
        """Every spatial size of an input must be a multiple of this (``2**depth``)."""
        return 2**self.depth

    def reset_parameters(self) -> None:
        """Initialise as IsoNet does: convolution weights ~ N(0, 0.02²), biases 0."""
        for module in self.modules():
            if isinstance(module, (nn.Conv3d, nn.ConvTranspose3d)):
                nn.init.normal_(module.weight, mean=0.0, std=INIT_STD)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)

    def check_input_shape(self, shape: tuple[int, ...] | torch.Size) -> None:
        """Raise a ValueError unless ``shape`` is ``(b, c, z, y, x)`` with z, y, x divisible.

        Parameters
        ----------
        shape : tuple of int
            Shape of an input batch ``(b, c, z, y, x)``.

        Raises
        ------
        ValueError
            If ``shape`` has not five axes, or a spatial size is not a multiple of
            :attr:`min_input_multiple`.
        """
        if len(shape) != 5:
            raise ValueError(
                f"UNet3D expects a batch (b, c, z, y, x) with 5 axes, got shape {tuple(shape)}"
            )
        multiple = self.min_input_multiple
        bad = [s for s in shape[2:] if s % multiple]
        if bad:
            raise ValueError(
                f"UNet3D with depth {self.depth} needs spatial sizes (z, y, x) divisible by "
                f"{multiple}, got input shape {tuple(shape)}; crop or pad the volume to a "
                f"multiple of {multiple}"
            )

    @property
    def receptive_radius(self) -> int:
        """Voxels of context on each side that can reach an output voxel (the theoretical receptive field's
        half-width): every k×k×k convolution at level n adds ``(k // 2) · 2**n``, each down- and up-sampling
        step ``2**n``. An output voxel farther than this from a tile's edge equals the whole-volume forward."""
        k = self.kernel_size // 2
        convs = self.convs_per_level
        radius = 0
        for n in range(self.depth):
            radius += (2 * convs * k + 2) * 2**n  # encoder and decoder convolutions, down and up steps
        radius += (max(convs - 2, 0) + 1) * k * 2**self.depth  # bottleneck
        return radius

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Run the network.

        Parameters
        ----------
        x : torch.Tensor
            Input batch ``(b, in_channels, z, y, x)``; z, y and x must be multiples of
            :attr:`min_input_multiple`.

        Returns
        -------
        torch.Tensor
            Output batch ``(b, out_channels, z, y, x)``.

        Raises
        ------
        ValueError
            If the input shape is not allowed (see :meth:`check_input_shape`).
        """
        self.check_input_shape(x.shape)

        skips = []
        h = x
        for level, down in zip(self.encoder, self.down, strict=True):
            h = level(h)
            skips.append(h)
            h = down(h)

        h = self.bottleneck(h)

        for up, level, skip in zip(self.up, self.decoder, reversed(skips), strict=True):
            h = level(up(h, skip))

        out = self.head(h)
        if self.residual:
            out = out + x
        return out
