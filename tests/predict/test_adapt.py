"""Batch-norm statistics measured through predict's tiles (isonet_pl.predict.adapt)."""

from __future__ import annotations

import dask.array as da
import numpy as np
import torch

from isonet_pl.model.batchnorm import batch_norms, collecting_batch_norm
from isonet_pl.normalization import Normalization
from isonet_pl.predict.adapt import adapt_batch_norm, spread, tile_boxes


def _module(batch_norm: bool = True):
    from isonet_pl.model.module import IsoNetModule

    torch.manual_seed(0)
    return IsoNetModule(net={"depth": 2, "base_channels": 4, "convs_per_level": 1, "dropout": 0.3,
                             "residual": False, "batch_norm": batch_norm}).eval()


def test_tile_boxes_are_the_regions_predict_reads():
    """The boxes are those of predict_tomogram's blocks (recorded from its own calls), cores covering the volume."""
    from isonet_pl.predict import predictor

    shape, core, halo = (20, 45, 70), 16, 8
    seen = []
    real = predictor.read_reflected
    predictor.read_reflected = lambda source, lo, hi: seen.append((lo, hi)) or real(source, lo, hi)
    try:
        vol = np.zeros(shape, np.float32)
        predictor.predict_tomogram(vol, _module(), Normalization.unit(), chunk=core, halo=halo).compute(
            scheduler="synchronous")
    finally:
        predictor.read_reflected = real
    boxes = tile_boxes(shape, core, halo)
    assert sorted(boxes) == sorted(seen) and len(boxes) == 2 * 3 * 5
    assert boxes[0] == ((0, 0, 0), (20, 24, 24)) and boxes[-1] == ((8, 24, 56), (20, 45, 70))


def test_spread():
    assert spread(3, 8) == [0, 1, 2] and spread(9, 3) == [0, 4, 8] and len(spread(100, 8)) == 8


def test_statistics_are_those_of_the_tiles_inputs():
    """With one tile per source the first batch norm's running mean and variance are the means over the sources
    of the per-channel mean and (unbiased) variance of its input on the normalised, padded source (recorded in
    eval mode with a hook); the weights and every other layer are unchanged, the module stays in eval mode and
    its momenta are restored."""
    module = _module()
    first = batch_norms(module)[0]
    momentum = first.momentum
    weights = {k: v.clone() for k, v in module.state_dict().items() if "running" not in k and "num_batches" not in k}
    rng = np.random.default_rng(1)
    sources = [rng.normal(3, 2, size=(14, 20, 22)).astype(np.float32) for _ in range(2)]
    norm = Normalization.of_volume(sources[0], False)
    inputs = []
    hook = first.register_forward_hook(lambda m, args, out: inputs.append(args[0].detach().double()))
    from isonet_pl.predict.predictor import run_network

    for s in sources:
        run_network(module, norm.apply(s)[None])
    hook.remove()
    mean = torch.stack([x.mean(dim=(0, 2, 3, 4)) for x in inputs]).mean(0)
    var = torch.stack([x.var(dim=(0, 2, 3, 4), unbiased=True) for x in inputs]).mean(0)
    assert adapt_batch_norm(module, sources, norm, core=32, halo=8) == 2
    np.testing.assert_allclose(first.running_mean.double(), mean, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(first.running_var.double(), var, rtol=1e-4)
    assert not module.training and first.momentum == momentum
    assert all(torch.equal(module.state_dict()[k], v) for k, v in weights.items())


def test_statistics_depend_on_the_tile_size_and_without_batch_norm_nothing_happens():
    """Measured through small and through large tiles, the statistics differ (the reason for measuring them at
    predict's size); a network without batch norm is left alone (0 tiles)."""
    vol = np.random.default_rng(2).normal(size=(16, 48, 48)).astype(np.float32)
    norm = Normalization.of_volume(vol, False)
    small, large = _module(), _module()
    adapt_batch_norm(small, [vol], norm, core=8, halo=0, tiles=100)
    adapt_batch_norm(large, [vol], norm, core=48, halo=0)
    assert not torch.allclose(batch_norms(small)[-1].running_var, batch_norms(large)[-1].running_var, rtol=1e-3)
    assert adapt_batch_norm(_module(batch_norm=False), [vol], norm, core=16, halo=4) == 0


def test_collecting_restores_mode_and_momentum_on_error():
    module = _module().train()
    try:
        with collecting_batch_norm(module) as norms:
            assert all(m.training for m in norms) and all(m.momentum is None for m in norms)
            raise RuntimeError
    except RuntimeError:
        pass
    assert module.training and all(m.momentum == 0.01 for m in batch_norms(module))


def test_lazy_sources_read_tile_by_tile():
    """Zarr-like (read on demand) sources give the same statistics as the same arrays in memory."""
    vol = np.random.default_rng(3).normal(size=(16, 40, 40)).astype(np.float32)
    norm = Normalization.of_volume(vol, False)
    a, b = _module(), _module()
    adapt_batch_norm(a, [vol], norm, core=16, halo=8)
    adapt_batch_norm(b, [da.from_array(vol, chunks=8)], norm, core=16, halo=8)
    for x, y in zip(batch_norms(a), batch_norms(b), strict=True):
        torch.testing.assert_close(x.running_var, y.running_var)
