"""Ray, for the commands that scale out (`vap predict --engine ray`, `vap extract --engine ray`):
import it lazily with an install hint, and start a local instance or join a cluster.

Without an address a private local instance is started (`address="local"`: never an unrelated
cluster that happens to run on the machine) with the CPUs given and a small object store (rows and
file lists are all that travel through it); it is shut down when the command ends. With
`--address auto`, `ray://host:10001` or `RAY_ADDRESS` set, the command joins that cluster and leaves it
running.
"""
from __future__ import annotations

import contextlib
import logging
import os
import sys

from pipeline.errors import ClusterError

INSTALL_HINT = 'Ray is not installed: pip install "vap[ray]" (or pip install "ray[data]>=2.40")'
LOCAL_OBJECT_STORE_MB = 256  # rows and file lists only; Ray's own default (30% of RAM) is far more


def import_ray():
    """The ray module, or a ClusterError with the install hint."""
    try:
        import ray
        import ray.data  # noqa: F401 (the engines use Ray Data)
    except ImportError:
        raise ClusterError(INSTALL_HINT) from None
    return ray


@contextlib.contextmanager
def ray_session(address: str | None = None, num_cpus: int | None = None, num_gpus: int | None = None,
                object_store_mb: int = LOCAL_OBJECT_STORE_MB, progress: bool = False):
    """Ray for the duration of a block: joined (address, or $RAY_ADDRESS) or a local instance of
    num_cpus CPUs (default: all of this machine's) and num_gpus GPUs (default: Ray finds them) started
    here and shut down at the end."""
    ray = import_ray()
    with contextlib.redirect_stdout(sys.stderr):  # stdout is the command's JSON: Ray's notes go to stderr
        with _session(ray, address, num_cpus, num_gpus, object_store_mb, progress):
            yield ray


@contextlib.contextmanager
def _session(ray, address, num_cpus, num_gpus, object_store_mb, progress):
    address = address or os.environ.get("RAY_ADDRESS") or None
    started = not ray.is_initialized()
    if started:
        kwargs = dict(logging_level=logging.WARNING, include_dashboard=False, log_to_driver=False)
        try:
            if address:
                ray.init(address=address, **kwargs)
            else:
                ray.init(address="local", num_cpus=num_cpus or os.cpu_count() or 1, num_gpus=num_gpus,
                         object_store_memory=object_store_mb * 2**20, **kwargs)
        except (ConnectionError, RuntimeError, ValueError) as e:
            where = f"the Ray cluster at {address}" if address else "a local Ray instance"
            raise ClusterError(f"cannot start or join {where}: {str(e).splitlines()[0]}") from None
    # Ray Data's INFO lines and its note that progress bars are off: our bar and summary say it
    logging.getLogger("ray.data").setLevel(logging.ERROR)
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = progress  # our own bar counts the rows; Ray's are per operator
    ctx.print_on_execution_start = False
    try:
        yield
    finally:
        if started:
            ray.shutdown()


def pool_size(ray, workers: int, cpus_per_worker: float, gpus_per_worker: float) -> int:
    """workers, or (0) as many as the cluster's CPUs (GPUs when each worker takes some) hold."""
    if workers > 0:
        return workers
    res = ray.cluster_resources()
    n = int(res.get("CPU", 1) // max(cpus_per_worker, 1e-9))
    if gpus_per_worker > 0:
        n = min(n, int(res.get("GPU", 0) // gpus_per_worker))
    if n < 1:
        raise ClusterError(f"the Ray cluster has {res.get('CPU', 0)} CPUs and {res.get('GPU', 0)} GPUs: not "
                           f"enough for one worker of {cpus_per_worker} CPUs and {gpus_per_worker} GPUs")
    return n
