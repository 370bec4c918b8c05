"""Peak memory and time of streamed prediction by how the network's large tensors get their memory.

``plain``: as the command line does (torch's large tensors in transparent huge pages, ``use_huge_pages``);
``4k``: glibc's defaults (every large tensor mapped afresh and faulted in per 4 KiB page, on every call);
``heap``: freed memory kept for reuse for the whole prediction (``reused_heap``: never returned, the heap
fragments and its peak grows with the tomogram; why predict does not use it).

Run: ``.venv/bin/python bench/perf/heap_rss.py plain|4k|heap WORKERS`` after writing the input, e.g.
``.venv/bin/python -c "import dask.array as da, numpy as np; from isonet_pl.io.zarr_store import write_tomogram;
write_tomogram(da.random.default_rng(0).standard_normal((128, 1024, 1024), dtype=np.float32, chunks=(64, 256,
1024)), '/tmp/rss_in.zarr', (10.0,) * 3, chunks=(64, 64, 64))"``. Predicts /tmp/rss_in.zarr to /tmp/rss_out.zarr
(remove it between runs) with ``bench/perf/predict.py``'s small network, blocks 128³ + 8, and prints the wall time
and the peak RSS (VmHWM) of this process.
"""

import os
import sys
from pathlib import Path

from isonet_pl.heap import share_one_arena, use_huge_pages

share_one_arena()  # as the command line does
if sys.argv[1] == "4k":
    os.environ["THP_MEM_ALLOC_ENABLE"] = "0"  # (bench/perf/predict.py, imported below, asks for huge pages)
use_huge_pages()
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # bench/: _common, perf, quality, studies

import contextlib  # noqa: E402
import time  # noqa: E402

import dask  # noqa: E402
import torch  # noqa: E402
from _common import peak_rss_mib  # noqa: E402

from isonet_pl.heap import reused_heap  # noqa: E402
from isonet_pl.io.zarr_store import open_tomogram, write_tomogram  # noqa: E402
from isonet_pl.predict.predictor import predict_tomogram  # noqa: E402
from perf.predict import UNIT, small_module  # noqa: E402

torch.set_num_threads(2)
store = open_tomogram("/tmp/rss_in.zarr")
t0 = time.perf_counter()
with reused_heap() if sys.argv[1] == "heap" else contextlib.nullcontext():
    out = predict_tomogram(store.zarr_array(0), small_module(), UNIT, chunk=128, halo=8)
    with dask.config.set(scheduler="threads", num_workers=int(sys.argv[2])):
        write_tomogram(out, "/tmp/rss_out.zarr", store.voxel_size, chunks=(64, 64, 64))
print(sys.argv[1:], f"{time.perf_counter() - t0:.0f} s, peak RSS {peak_rss_mib():.0f} MiB", flush=True)
