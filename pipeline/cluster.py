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
def ray_session(address: str | None = None):
    """Ray for the duration of a block: joined (address, or $RAY_ADDRESS) or a local instance on all of
    this machine's CPUs (and the GPUs Ray finds) started here and shut down at the end."""
    address = address or os.environ.get("RAY_ADDRESS") or None
    if address:
        _token_auth_for_join()  # before Ray is imported: it reads its settings then
    ray = import_ray()
    with contextlib.redirect_stdout(sys.stderr):  # stdout is the command's JSON: Ray's notes go to stderr
        with _session(ray, address):
            yield ray


@contextlib.contextmanager
def _session(ray, address):
    started = not ray.is_initialized()
    if started:
        kwargs = dict(logging_level=logging.WARNING, include_dashboard=False, log_to_driver=False)
        try:
            if address:
                ray.init(address=address, **kwargs)
            else:
                ray.init(address="local", num_cpus=os.cpu_count() or 1,
                         object_store_memory=LOCAL_OBJECT_STORE_MB * 2**20, **kwargs)
        except (ConnectionError, RuntimeError, ValueError) as e:
            where = f"the Ray cluster at {address}" if address else "a local Ray instance"
            raise ClusterError(f"cannot start or join {where}: {str(e).splitlines()[0]}") from None
    # Ray Data's INFO lines and its note that progress bars are off: our bar and summary say it
    logging.getLogger("ray.data").setLevel(logging.ERROR)
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False  # our own bar counts the rows; Ray's are per operator
    ctx.print_on_execution_start = False
    try:
        yield
    finally:
        if started:
            ray.shutdown()


def _token_auth_for_join() -> None:
    """Ray >= 2.59 turns token authentication on for a cluster started on a machine that holds a token (any
    local `ray.init()` writes ~/.ray/auth_token), but a process that joins by address sends the token only when
    RAY_AUTH_MODE=token, so `ray start --head` then `--address HOST:PORT` fails to connect. A client in token mode
    also joins a cluster without authentication, so where a token is at hand and RAY_AUTH_MODE is not set, it is
    set to token for the join (before Ray is imported, or Ray is told to read its settings again)."""
    if "RAY_AUTH_MODE" in os.environ:
        return  # the user's choice
    if os.environ.get("RAY_AUTH_TOKEN") or os.environ.get("RAY_AUTH_TOKEN_PATH") or \
            os.path.isfile(os.path.expanduser("~/.ray/auth_token")):
        os.environ["RAY_AUTH_MODE"] = "token"
        if "ray" in sys.modules:  # imported already (a caller's own): have it read its settings again, as Ray
            try:                  # itself does when it turns token authentication on
                from ray._raylet import Config

                Config.initialize("")
            except Exception:  # another Ray: joining says what went wrong, as before
                pass


def worker_threads(threads: int) -> None:
    """Hold a Ray worker to its share of the cores: PyTorch (and so ONNX Runtime, which takes the same count) and
    the views' OpenCV calls, which by default use every core and would compete with the other workers for theirs.
    Call before the backbone is built."""
    import cv2
    import torch

    torch.set_num_threads(max(1, threads))
    cv2.setNumThreads(max(1, threads))


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


def pool_rows(ray, items: list[dict], worker: type, workers: int, cpus_per_worker: float, gpus_per_worker: float,
              **worker_kwargs):
    """The rows of worker(**worker_kwargs) - a Ray Data actor pool of `workers` - over items, in
    completion order. A block per item (up to 10000): any worker takes the next one, and a retried task
    redoes one item. Ray Data's actor pools restart a dead worker and retry its task (max_restarts=-1,
    max_task_retries=-1 are its defaults; tests/test_scale.py kills one to check), so an item's row may
    come twice: the caller keeps the first."""
    ds = ray.data.from_items(items, override_num_blocks=min(len(items), 10_000)).map_batches(
        worker, batch_size=1, compute=ray.data.ActorPoolStrategy(size=workers), num_cpus=cpus_per_worker,
        num_gpus=gpus_per_worker or None, fn_constructor_kwargs=worker_kwargs)
    return ds.iter_rows()


def stopped(ray_error: Exception, done: int, total: int, what: str, where: str) -> ClusterError:
    """The one-line error for a Ray job that failed part way (a worker that cannot start, a cluster
    that went away): what was done, where it is, and Ray's last line."""
    lines = [x for x in str(ray_error).splitlines() if x.strip()]
    return ClusterError(f"the Ray job stopped after {done} of {total} {what} (those are in {where}; rerun to "
                        f"resume): {lines[-1] if lines else type(ray_error).__name__}")
