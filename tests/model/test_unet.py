"""Tests of UNet3D: shapes, the SPEC §7.2 parameter count, errors, initialisation, identity."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from isonet_pl.model import UNet3D

torch.set_num_threads(1)

TINY = dict(base_channels=4, depth=2, convs_per_level=2)

SHAPE_CASES = [
    # (UNet3D kwargs, input shape, output shape)
    (dict(base_channels=4), (1, 1, 16, 16, 16), (1, 1, 16, 16, 16)),
    (dict(TINY), (2, 1, 16, 24, 32), (2, 1, 16, 24, 32)),
    (dict(base_channels=4, depth=2, convs_per_level=1), (1, 1, 8, 16, 8), (1, 1, 8, 16, 8)),
    (dict(TINY, pool=True), (1, 1, 16, 16, 16), (1, 1, 16, 16, 16)),
    (dict(base_channels=4, depth=4, convs_per_level=1), (1, 1, 16, 16, 16), (1, 1, 16, 16, 16)),
    (dict(base_channels=4, depth=1, kernel_size=5), (1, 1, 18, 10, 12), (1, 1, 18, 10, 12)),
    (
        dict(TINY, in_channels=2, out_channels=3, residual=False, batch_norm=False, dropout=0.0),
        (1, 2, 16, 16, 16),
        (1, 3, 16, 16, 16),
    ),
]


@pytest.mark.parametrize(("kwargs", "in_shape", "out_shape"), SHAPE_CASES)
def test_output_shape(kwargs, in_shape, out_shape):
    """Each configuration maps its input shape to the expected output shape."""
    net = UNet3D(**kwargs).eval()
    with torch.no_grad():
        out = net(torch.randn(in_shape))
    assert out.shape == out_shape
    assert torch.isfinite(out).all()


def test_default_parameter_count_matches_spec():
    """The default network has SPEC §7.2's analytic parameter counts.

    27,322,369 convolution weights and biases (including the transposed convolutions:
    256→256 at the deepest level, then 256→128 and 128→64, and the 1×1×1 head) plus 5,376
    trainable BatchNorm parameters (γ, β of 2·3 blocks per level at 64, 128, 256 channels) and
    as many running statistics (SPEC's 10,752 BatchNorm numbers in total).
    """
    with torch.device("meta"):
        net = UNet3D()
    convs = (nn.Conv3d, nn.ConvTranspose3d)
    conv_params = sum(
        p.numel() for m in net.modules() if isinstance(m, convs) for p in m.parameters()
    )
    bn_layers = [m for m in net.modules() if isinstance(m, nn.BatchNorm3d)]
    bn_trainable = sum(p.numel() for m in bn_layers for p in m.parameters())
    bn_running = sum(m.running_mean.numel() + m.running_var.numel() for m in bn_layers)

    assert conv_params == 27_322_369
    assert bn_trainable == 5_376
    assert bn_running == 5_376
    assert sum(p.numel() for p in net.parameters() if p.requires_grad) == 27_327_745


def test_min_input_multiple_is_two_to_the_depth():
    """min_input_multiple is 2**depth."""
    assert UNet3D(base_channels=4, depth=3).min_input_multiple == 8
    assert UNet3D(base_channels=4, depth=1).min_input_multiple == 2


def test_indivisible_input_raises_naming_shape_and_multiple():
    """A spatial size that is not a multiple of 2**depth raises a clear ValueError."""
    net = UNet3D(**TINY)
    with pytest.raises(ValueError, match=r"divisible by 4.*\(1, 1, 16, 16, 18\)"):
        net(torch.zeros(1, 1, 16, 16, 18))


def test_input_without_batch_axes_raises():
    """An input that is not (b, c, z, y, x) raises a ValueError."""
    with pytest.raises(ValueError, match="5 axes"):
        UNet3D(**TINY)(torch.zeros(1, 16, 16, 16))


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(in_channels=1, out_channels=2, residual=True),
        dict(kernel_size=4),
        dict(dropout=1.0),
        dict(depth=0),
    ],
)
def test_invalid_settings_raise(kwargs):
    """Inconsistent or out-of-range settings raise a ValueError at construction."""
    with pytest.raises(ValueError):
        UNet3D(**{**TINY, **kwargs})


def test_residual_with_zero_head_is_identity():
    """residual=True and an all-zero head return the input unchanged."""
    net = UNet3D(**TINY).eval()
    nn.init.zeros_(net.head.weight)
    nn.init.zeros_(net.head.bias)
    x = torch.randn(2, 1, 16, 16, 16)
    with torch.no_grad():
        assert torch.equal(net(x), x)


def test_no_residual_with_zero_head_is_zero():
    """residual=False and an all-zero head return zeros."""
    net = UNet3D(**TINY, residual=False).eval()
    nn.init.zeros_(net.head.weight)
    nn.init.zeros_(net.head.bias)
    with torch.no_grad():
        assert not net(torch.randn(1, 1, 16, 16, 16)).any()


def test_channels_last_3d_matches_contiguous():
    """A channels_last_3d model and input give the same output as the contiguous layout."""
    net = UNet3D(**TINY).eval()
    x = torch.randn(2, 1, 16, 16, 16)
    with torch.no_grad():
        expected = net(x)
        net_cl = net.to(memory_format=torch.channels_last_3d)
        out = net_cl(x.to(memory_format=torch.channels_last_3d))
    assert out.shape == expected.shape
    torch.testing.assert_close(out, expected, rtol=1e-4, atol=1e-5)


def test_initialisation_and_layer_settings():
    """Weights ~ N(0, 0.02²), biases 0; BN has Keras's eps/momentum; dropout is element-wise."""
    torch.manual_seed(0)
    net = UNet3D(base_channels=8, depth=2, convs_per_level=2)
    convs = [m for m in net.modules() if isinstance(m, (nn.Conv3d, nn.ConvTranspose3d))]
    weights = torch.cat([m.weight.flatten() for m in convs])
    assert all(not m.bias.any() for m in convs)
    assert abs(weights.mean().item()) < 2e-3
    assert weights.std().item() == pytest.approx(0.02, rel=0.05)
    bns = [m for m in net.modules() if isinstance(m, nn.BatchNorm3d)]
    assert bns and all(m.eps == 1e-3 and m.momentum == 0.01 for m in bns)
    assert not any(isinstance(m, nn.Dropout3d) for m in net.modules())
    assert all(m.p == 0.3 for m in net.modules() if isinstance(m, nn.Dropout))
    assert all(m.negative_slope == 0.05 for m in net.modules() if isinstance(m, nn.LeakyReLU))


def test_pool_variant_has_no_strided_or_transposed_convs():
    """pool=True uses MaxPool3d and Upsample instead of strided and transposed convolutions."""
    net = UNet3D(**TINY, pool=True)
    assert not any(isinstance(m, nn.ConvTranspose3d) for m in net.modules())
    assert all(m.stride == (1, 1, 1) for m in net.modules() if isinstance(m, nn.Conv3d))
    assert sum(isinstance(m, nn.MaxPool3d) for m in net.modules()) == 2
    assert sum(isinstance(m, nn.Upsample) for m in net.modules()) == 2


def test_train_mode_backward_gives_gradients_everywhere():
    """A backward pass in train mode reaches every parameter."""
    net = UNet3D(**TINY).train()
    net(torch.randn(2, 1, 16, 16, 16)).abs().mean().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in net.parameters())
