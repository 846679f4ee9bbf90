"""The Dask cluster that long flows submit their jobs to.

``rtlgen regress``, ``sweep``, ``faults`` and large ``sim`` runs cut their
work into jobs and submit them to :mod:`dask.distributed`: by default a
``LocalCluster`` on this machine (one single-threaded worker process per
job slot), or the cluster whose scheduler is at ``--scheduler
tcp://HOST:PORT`` (else at Dask's configured ``scheduler-address``).

A job gets plain data only: the files of a build folder travel with it
(:func:`pack_folder`, :func:`unpacked_folder`), so remote workers need no
shared file system, except the flows that write into an output folder
(``sweep``), whose workers must see that folder at the same path.

Workers of a local cluster do not take Ctrl-C themselves: the terminal's
SIGINT reaches them too, but only stops the tools they run (simulators,
Yosys), and a job then raises :class:`JobStopped`; their nanny processes
ignore it.  The main process decides what happens: it cancels what is
queued, stops the running jobs with :func:`stop_jobs` (they clean up their
temporary folders) and closes the cluster.
"""

from __future__ import annotations

import contextlib
import functools
import os
import shutil
import signal
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from rtlgen.errors import RtlgenError
from rtlgen.procs import signal_children

__all__ = ["JobStopped", "dask_client", "stopping", "stop_jobs", "pack_folder", "unpacked_folder", "job_folder",
           "job", "gather_as_done"]

#: set in a worker process when its jobs are to stop (SIGINT, or :func:`stop_jobs`)
_STOPPING = threading.Event()
#: jobs running in this worker process
_RUNNING = 0
_RUNNING_LOCK = threading.Lock()


def stopping() -> bool:
    """True in a worker whose jobs were told to stop."""
    return _STOPPING.is_set()


def _stop_tools() -> None:
    """Stop what the jobs of this process started: its children, and the process groups they lead
    (tools run by :func:`rtlgen.flows.tools.run_group` are in sessions of their own)."""
    _STOPPING.set()
    signal_children(signal.SIGTERM, groups=True)


def _stop_handler(signum, frame) -> None:
    # the event loop of the worker goes on (it reports the stopped job); the running job sees its
    # tool end and raises Terminated (see job())
    _stop_tools()


def _ignore(signum, frame) -> None:
    pass


def dask_setup(server=None) -> None:
    """Preload of the local cluster's workers and nannies: in a worker, SIGINT stops the jobs' tools;
    a nanny ignores it (the main process closes the cluster)."""
    if threading.current_thread() is not threading.main_thread():
        return
    if type(server).__name__ == "Nanny":
        signal.signal(signal.SIGINT, _ignore)
        return
    from rtlgen import progress
    progress.configure(quiet=True)   # the main process reports the jobs; workers share its terminal
    signal.signal(signal.SIGINT, _stop_handler)


def _stop_request(timeout: float) -> int:
    """Runs on each worker (``client.run``): stop the running jobs; wait up to ``timeout`` s for them."""
    _stop_tools()
    deadline = time.monotonic() + timeout
    while _RUNNING and time.monotonic() < deadline:
        time.sleep(0.05)
    return _RUNNING


def _clear_stop() -> None:
    _STOPPING.clear()


class JobStopped(Exception):
    """A job stopped by its campaign (an Exception, not an interrupt: the worker goes on)."""


def job(fn):
    """Decorate a function that runs as a Dask job: it knows it is running, and it raises
    :class:`JobStopped` instead of going on when its worker was told to stop."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        global _RUNNING
        if _STOPPING.is_set():
            raise JobStopped()
        with _RUNNING_LOCK:
            _RUNNING += 1
        try:
            result = fn(*args, **kwargs)
        except BaseException:
            if _STOPPING.is_set():      # its tool was stopped under it: not a failure of the job
                raise JobStopped() from None
            raise
        finally:
            with _RUNNING_LOCK:
                _RUNNING -= 1
        if _STOPPING.is_set():
            raise JobStopped()
        return result

    return wrapper


@contextlib.contextmanager
def dask_client(scheduler: str | None, jobs: int, what: str) -> Iterator[object]:
    """A ``dask.distributed.Client``: of the scheduler at ``scheduler``, else of a new LocalCluster
    with ``jobs`` single-threaded worker processes (closed on exit).  ``what`` names the command in
    errors.  A scheduler that does not answer within Dask's ``rtlgen.scheduler-timeout`` setting
    (default 10 s; ``DASK_RTLGEN__SCHEDULER_TIMEOUT``) is an error."""
    try:
        import dask
        from dask.distributed import Client, LocalCluster
    except ImportError:   # pragma: no cover - a dependency
        raise RtlgenError(f"{what} needs dask.distributed: pip install 'dask[distributed]'") from None
    scheduler = scheduler or dask.config.get("scheduler-address", None)
    if scheduler:
        try:
            client = Client(scheduler, timeout=dask.config.get("rtlgen.scheduler-timeout", "10s"))
        except (OSError, TimeoutError, ValueError) as exc:
            raise RtlgenError(f"{what}: cannot reach the Dask scheduler at {scheduler}: {exc}") from None
        try:
            yield client
        finally:
            client.close()
        return
    scratch = tempfile.mkdtemp(prefix="rtlgen-dask-")    # the cluster's scratch space, removed after
    try:
        with dask.config.set({"temporary-directory": scratch}):
            # the scheduler's HTTP server on a free local port: with no address it takes 8787, and a
            # second campaign on the machine would warn that the port is in use
            cluster = LocalCluster(n_workers=max(1, int(jobs)), threads_per_worker=1, processes=True,
                                   dashboard_address="127.0.0.1:0", silence_logs=50, local_directory=scratch,
                                   preload=["rtlgen.flows.cluster"], preload_nanny=["rtlgen.flows.cluster"])
        client = Client(cluster)
        try:
            yield client
        finally:
            client.close()
            cluster.close()
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def stop_jobs(client, futures: list, grace: float = 20.0) -> None:
    """After Ctrl-C: cancel the queued jobs, stop the running ones and wait (up to ``grace`` s) until
    they have cleaned up.  On a shared cluster only this campaign's futures are touched."""
    pending = [f for f in futures if not f.done()]
    if pending:
        client.cancel(pending)
    try:
        if getattr(client, "cluster", None) is not None:   # our local cluster: every worker is ours
            client.run(_stop_request, grace, wait=True)
            client.run(_clear_stop, wait=True)
    except Exception:  # noqa: BLE001 - a worker that died has nothing left to clean up
        pass


def gather_as_done(client, futures: list, on_result) -> None:
    """Call ``on_result(index, result)`` for each future as it finishes (in finishing order).

    A job that raises, or Ctrl-C, stops the others (:func:`stop_jobs`) before the exception goes on."""
    from dask.distributed import as_completed
    index = {f.key: k for k, f in enumerate(futures)}
    try:
        for future in as_completed(futures):
            on_result(index[future.key], future.result())
    except BaseException:
        stop_jobs(client, futures)
        raise


# ---------------------------------------------------------------------------
# build folders as data
# ---------------------------------------------------------------------------

def pack_folder(folder) -> dict[str, bytes]:
    """The files at the top of a build folder (Verilog, manifest, model), as ``{name: bytes}``."""
    folder = Path(folder)
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


@contextlib.contextmanager
def job_folder(prefix: str = "rtlgen-job-") -> Iterator[Path]:
    """A temporary folder for a job's files: removed when the job ends, or is stopped by its
    campaign; kept (for a look: the error names what is in it) when the job fails."""
    work = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        yield work
    except BaseException:
        if stopping():
            shutil.rmtree(work, ignore_errors=True)
        raise
    shutil.rmtree(work, ignore_errors=True)


@contextlib.contextmanager
def unpacked_folder(files: dict[str, bytes], prefix: str = "rtlgen-job-") -> Iterator[Path]:
    """A temporary build folder holding ``files`` (from :func:`pack_folder`), removed afterwards."""
    work = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        for name, data in files.items():
            (work / os.path.basename(name)).write_bytes(data)
        yield work
    finally:
        shutil.rmtree(work, ignore_errors=True)
