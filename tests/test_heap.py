"""Freed memory kept for reuse while the network runs (isonet_pl.heap)."""

from __future__ import annotations

import resource
import sys
from pathlib import Path

import pytest
import torch

from isonet_pl.heap import _libc, reused_heap

pytestmark = pytest.mark.skipif(sys.platform != "linux" or _libc() is None, reason="glibc's malloc only")


def _faults_per_forward(net, x, repeats: int = 3) -> list[int]:
    """Minor page faults of each of ``repeats`` forward passes (after a first one)."""
    counts = []
    with torch.no_grad():
        net(x)
        for _ in range(repeats):
            before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
            net(x)
            counts.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
    return counts


def test_freed_memory_is_reused_inside_and_unmapped_after():
    """A forward pass whose activations exceed glibc's 32 MiB mapping threshold (16 channels of 96³: 54 MiB)
    faults in every page of them on every call (~134,000 faults); inside :func:`reused_heap` the later calls
    reuse the freed memory (no faults once the heap has grown to the pass's size); after it the default
    behaviour is back (re-entrant: an inner block's exit keeps the settings)."""
    torch.set_num_threads(1)
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv3d(1, 16, 3, padding=1), torch.nn.LeakyReLU(0.05),
                              torch.nn.Conv3d(16, 16, 3, padding=1), torch.nn.LeakyReLU(0.05),
                              torch.nn.Conv3d(16, 1, 3, padding=1)).eval()
    x = torch.randn(1, 1, 96, 96, 96)
    pages = 16 * 96**3 * 4 // 4096
    with reused_heap():
        with reused_heap():
            pass
        inside = _faults_per_forward(net, x, repeats=5)
    assert min(inside) < 0.05 * pages, inside  # the heap may still grow on a call or two in a fragmented process
    if "[always]" in Path("/sys/kernel/mm/transparent_hugepage/enabled").read_text():
        pytest.skip("transparent huge pages always on: fresh mappings fault per 2 MiB")
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    torch.zeros(16 << 20)  # 64 MiB, mapped afresh
    if resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before < 4096:
        pytest.skip("torch uses huge pages in this process (an earlier test ran the command line, which asks "
                    "for them before torch's first allocation)")
    after = _faults_per_forward(net, x)
    assert min(after) > pages, after


def test_threads_reuse_freed_memory_with_one_arena():
    """In a fresh process that calls share_one_arena first (as the command line does), a forward pass run by a
    worker thread (as predict's dask threads run the tiles) reuses freed memory inside reused_heap."""
    import subprocess
    import textwrap

    script = textwrap.dedent("""
        import resource, threading
        from isonet_pl.heap import reused_heap, share_one_arena
        share_one_arena()
        import torch
        torch.set_num_threads(1)
        net = torch.nn.Sequential(torch.nn.Conv3d(1, 16, 3, padding=1), torch.nn.Conv3d(16, 1, 3, padding=1))
        x = torch.randn(1, 1, 96, 96, 96)
        faults = []
        def work():
            with torch.no_grad():
                for _ in range(8):
                    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
                    net(x)
                    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
        with reused_heap():
            thread = threading.Thread(target=work)
            thread.start()
            thread.join()
        print(min(faults[1:]))
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    # Without reuse each pass faults in its activations anew (64,804 pages per pass without reused_heap on a
    # Sapphire Rapids machine, 2026-12-02; the 16-channel activation alone is 13,824); with it, only what the
    # kernel does in the background: 0 on most runs, 1,078 in one full-suite run there. Bound: a quarter of
    # that one activation.
    assert int(out.stdout.split()[-1]) < 0.25 * (16 * 96**3 * 4 // 4096), out.stdout


def test_huge_pages_cut_the_page_faults_of_a_forward():
    """In a fresh process that calls use_huge_pages before importing torch (as the command line does), a
    forward pass whose activations exceed glibc's mapping threshold faults per 2 MiB page instead of per
    4 KiB page (this CPU: ~2,300 against ~65,000 faults a call, the activations' pages being ~14,000 each)."""
    import subprocess
    import textwrap

    mode = Path("/sys/kernel/mm/transparent_hugepage/enabled")
    if not mode.exists() or "[never]" in mode.read_text():
        pytest.skip("transparent huge pages are off on this machine")
    script = textwrap.dedent("""
        import os, resource, sys
        from isonet_pl.heap import use_huge_pages
        if sys.argv[1] == "huge":
            use_huge_pages()
        else:
            os.environ["THP_MEM_ALLOC_ENABLE"] = "0"
        import torch
        torch.set_num_threads(1)
        net = torch.nn.Sequential(torch.nn.Conv3d(1, 16, 3, padding=1), torch.nn.Conv3d(16, 1, 3, padding=1))
        x = torch.randn(1, 1, 96, 96, 96)
        counts = []
        with torch.no_grad():
            for _ in range(3):
                before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
                net(x)
                counts.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
        print(min(counts[1:]))
    """)
    pages = 16 * 96**3 * 4 // 4096
    faults = {}
    for kind in ("huge", "small"):
        out = subprocess.run([sys.executable, "-c", script, kind], capture_output=True, text=True, check=True)
        faults[kind] = int(out.stdout.split()[-1])
    if "[always]" in mode.read_text():  # the kernel uses huge pages whatever torch asks
        assert faults["huge"] < 0.2 * pages, faults
    else:
        assert faults["small"] > pages and faults["huge"] < 0.2 * faults["small"], faults
