"""The dask tile predictor: exact stitching with an identity network, on any chunking."""

from __future__ import annotations

import dask
import dask.array as da
import numpy as np
import pytest
import torch

from isonet_pl.predict.predictor import predict_tomogram


class Identity(torch.nn.Module):
    """A stand-in network: returns its input; needs sizes divisible by 4 (padding is exercised)."""

    class _Net:
        min_input_multiple = 4

    net = _Net()

    def forward(self, x):
        return x


@pytest.mark.parametrize("shape,chunk,halo", [((37, 50, 43), 16, 5), ((20, 33, 64), 32, 0), ((9, 40, 17), 8, 8)])
def test_identity_network_reproduces_the_input(shape, chunk, halo):
    """Any block size, halo and ragged edge: normalise -> identity -> de-normalise gives the input back."""
    vol = np.random.default_rng(0).normal(size=shape).astype(np.float32)
    with dask.config.set(scheduler="synchronous"):
        out = predict_tomogram(da.from_array(vol, chunks=11), Identity(), offset=0.3, scale=2.5, chunk=chunk,
                               halo=halo).compute()
    np.testing.assert_allclose(out, vol, rtol=1e-5, atol=1e-5)


def test_network_sees_normalised_protein_bright_input():
    """The network gets (-x - offset) / scale; the output comes back in the input's units and contrast."""

    class Plus(Identity):
        def forward(self, x):
            return x + 1.0  # +1 in normalised units

    vol = np.random.default_rng(1).normal(size=(16, 16, 16)).astype(np.float32)
    with dask.config.set(scheduler="synchronous"):
        out = predict_tomogram(da.from_array(vol), Plus(), offset=0.0, scale=2.0, chunk=8, halo=2).compute()
    np.testing.assert_allclose(out, vol - 2.0, rtol=1e-5, atol=1e-5)  # -(((-x)/2 + 1) * 2) = x - 2
