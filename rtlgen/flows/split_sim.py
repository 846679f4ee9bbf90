"""Large ``rtlgen sim`` runs cut into chunks of vectors, run as Dask jobs.

Vectors are independent, so a run of N vectors is N/k vectors on each of k
simulations of the same core, each from reset.  :func:`run_split` cuts the
input codes into chunks, submits one job per chunk to the cluster of
:mod:`rtlgen.flows.cluster` (a local one of ``jobs`` worker processes, or
``scheduler``), and puts the outputs back in order.  The build folder's
files travel with the jobs (sent to each worker once), so remote workers
need no shared file system; each worker builds the batch testbench once
(on this machine it is built here first, into the cache the workers read).
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from .. import progress
from ..errors import RtlgenError
from .batch_sim import build_testbench, run_batch
from .cluster import dask_client, gather_as_done, job, job_folder, pack_folder, unpacked_folder
from .sim import _codes_array, read_manifest, run_sim

__all__ = ["SPLIT_MIN_VECTORS", "run_split", "should_split"]

#: ``rtlgen sim`` splits a run over Dask from this many vectors on (per engine), with ``--jobs`` > 1
#: or ``--scheduler``; below it, starting the workers costs more than they save
SPLIT_MIN_VECTORS = {"batch": 200_000, "cocotb": 20_000}
#: chunks per worker of a batch run (the first finished chunks show progress)
BATCH_CHUNKS_PER_WORKER = 4


def should_split(engine: str, n: int, jobs: int, scheduler: str | None) -> bool:
    return (jobs > 1 or bool(scheduler)) and n >= SPLIT_MIN_VECTORS[engine]


@job
def _chunk(files: dict, codes: np.ndarray, engine: str, simulator: str, gap: float, seed: int):
    with unpacked_folder(files, prefix="rtlgen-sim-core-") as outdir, job_folder("rtlgen-sim-job-") as work:
        if engine == "batch":
            out, figures = run_batch(outdir, codes, None, gap=gap, seed=seed, simulator=simulator,
                                     work_dir=work)
            return out, figures["cycles"]
        return run_sim(outdir, codes, simulator=simulator, gap=gap, seed=seed, work_dir=work), None


def run_split(outdir, in_codes, *, engine: str, simulator: str, gap: float, jobs: int = 2,
              scheduler: str | None = None, seed: int = 1, chunks: int | None = None) -> tuple[np.ndarray, dict]:
    """Simulate ``in_codes`` on the core in ``outdir`` in chunks on Dask; (output codes, figures).

    ``engine``: ``batch`` or ``cocotb``; chunk ``k`` runs with seed ``seed + k``.  Figures:
    ``vectors_per_second`` (of the whole run, build excluded), ``chunks``, ``workers``, ``seconds``.
    """
    outdir = Path(outdir).resolve()
    manifest = read_manifest(outdir)
    ins = _codes_array(in_codes, manifest["input"], "input")
    if engine not in SPLIT_MIN_VECTORS:
        raise RtlgenError(f"unknown engine {engine!r}: batch or cocotb")
    if engine == "batch" and not scheduler:     # workers on this machine find it in the cache
        build_testbench(outdir, simulator)
    files = pack_folder(outdir)
    with dask_client(scheduler, jobs, "rtlgen sim") as client:
        workers = sum(client.nthreads().values()) or 1
        n_chunks = chunks or (workers * BATCH_CHUNKS_PER_WORKER if engine == "batch" else workers)
        pieces = [p for p in np.array_split(np.arange(len(ins)), max(1, min(n_chunks, len(ins)))) if len(p)]
        [shared] = client.scatter([files], broadcast=True)
        t0 = time.perf_counter()
        chunks_data = client.scatter([ins[p] for p in pieces])   # sent as data, not in the task graph
        futures = [client.submit(_chunk, shared, data, engine, simulator, gap, seed + k, pure=False)
                   for k, data in enumerate(chunks_data)]
        results: list = [None] * len(pieces)
        bar = progress.counter(f"simulating {len(ins):,} vectors on {simulator} ({engine}) in {len(pieces)} chunks "
                               f"on {workers} Dask workers", total=len(ins), unit="vectors")
        ok = False
        try:
            def keep(k: int, r) -> None:
                results[k] = r
                bar.update(len(pieces[k]))
            gather_as_done(client, futures, keep)
            ok = True
        finally:
            bar.close(ok=ok)
        seconds = time.perf_counter() - t0
    outs = [np.asarray(r[0]) for r in results]
    out = np.concatenate(outs) if all(o.dtype != object for o in outs) else np.concatenate(
        [o.astype(object) for o in outs])
    return out, {"vectors_per_second": len(ins) / seconds if seconds > 0 else float("inf"), "seconds": seconds,
                 "chunks": len(pieces), "workers": workers}
