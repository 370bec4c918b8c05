"""Peak memory and time of streamed prediction by how freed memory is kept (isonet_pl.heap.reused_heap).

``heap``: kept for the whole prediction (never returned: the heap fragments and its peak grows with the
tomogram); ``tile``: kept during each tile's network call and returned after it (what predict does);
``plain``: glibc's defaults (large blocks mapped afresh and zero-filled on every allocation).

Run: ``.venv/bin/python bench/heap_rss.py heap|tile|plain WORKERS`` after writing the input, e.g.
``.venv/bin/python -c "import dask.array as da, numpy as np; from isonet_pl.io.zarr_store import write_tomogram;
write_tomogram(da.random.default_rng(0).standard_normal((128, 1024, 1024), dtype=np.float32, chunks=(64, 256,
1024)), '/tmp/rss_in.zarr', (10.0,) * 3, chunks=(64, 64, 64))"``. Predicts /tmp/rss_in.zarr to /tmp/rss_out.zarr
(remove it between runs) with ``bench/predict.py``'s small network, blocks 128³ + 8, and prints the wall time
and the peak RSS (VmHWM) of this process.
"""

from isonet_pl.heap import share_one_arena

share_one_arena()  # as the command line does

import contextlib  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

import dask  # noqa: E402
import torch  # noqa: E402
from _common import peak_rss_mib  # noqa: E402
from predict import UNIT, small_module  # noqa: E402

from isonet_pl.heap import reused_heap  # noqa: E402
from isonet_pl.io.zarr_store import open_tomogram, write_tomogram  # noqa: E402
from isonet_pl.predict import predictor  # noqa: E402
from isonet_pl.predict.predictor import predict_tomogram  # noqa: E402

torch.set_num_threads(2)
predictor.TILE_HEAP = sys.argv[1] == "tile"
store = open_tomogram("/tmp/rss_in.zarr")
t0 = time.perf_counter()
with reused_heap() if sys.argv[1] == "heap" else contextlib.nullcontext():
    out = predict_tomogram(store.zarr_array(0), small_module(), UNIT, chunk=128, halo=8)
    with dask.config.set(scheduler="threads", num_workers=int(sys.argv[2])):
        write_tomogram(out, "/tmp/rss_out.zarr", store.voxel_size, chunks=(64, 64, 64))
print(sys.argv[1:], f"{time.perf_counter() - t0:.0f} s, peak RSS {peak_rss_mib():.0f} MiB", flush=True)
