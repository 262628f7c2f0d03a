"""Where a sweep's jobs run, one run at a time per device. Not a scheduler of our own: the
local queue is `concurrent.futures`, the cluster is Ray.

- `InProcessQueue`: without a GPU, the jobs one after another in the sweep's own process
  (a CPU trains one run at a time anyway, and a worker process would start a second
  backend for nothing).
- `GpuQueue`: a `ProcessPoolExecutor` of one process per local GPU, each pinned to its GPU
  with CUDA_VISIBLE_DEVICES before its backend starts; the GPUs are counted with
  `nvidia-smi -L`, so the sweep's own process never starts TensorFlow or JAX (which would
  take memory on every GPU).
- `RayQueue`: each job a Ray task on a Ray cluster (`--ray auto`, `--ray ADDRESS`, or
  `--ray local` for a new instance on this host), one GPU per task where the cluster has
  GPUs, else a whole node's CPUs.

Each queue's `run(jobs, started, done)` trains every job and calls `done(run_dir,
outcome)` for each seed as its results come back; a job that fails stops the queue (the
jobs not started are dropped) and its error is raised.
"""

from __future__ import annotations

import concurrent.futures
import multiprocessing
import os
import re
import subprocess
from collections.abc import Callable, Mapping, Sequence

from tf_resnet9.errors import MissingPackage
from tf_resnet9.sweeps.jobs import Job, Outcome, train_job

RAY_INSTALL = "pip install 'tf_resnet9[sweep]' (or pip install 'ray[default]')"
# What the processes that train must see as the sweep's process does: the backend, and what
# XLA and TensorFlow read when they start.
_PASSED_ON = ("KERAS_BACKEND", "XLA_FLAGS", "TF_CPP_MIN_LOG_LEVEL")
_GPU_LINE = re.compile(r"^GPU (\d+):", re.M)  # nvidia-smi -L: "GPU 0: NVIDIA H100 (UUID: ...)"

Started = Callable[[str], None]
Done = Callable[[str, Outcome], None]


def local_gpus(
    environ: Mapping[str, str] = os.environ, nvidia_smi: Callable[[], str | None] | None = None
) -> list[str]:
    """The local GPUs to pin runs to, as CUDA_VISIBLE_DEVICES names them: those it lists
    where it is set (up to the first invalid entry, e.g. -1, where CUDA stops), else every
    GPU `nvidia-smi -L` lists; none without nvidia-smi or a GPU.

    Args:
        environ: The environment (the tests pass their own).
        nvidia_smi: Returns `nvidia-smi -L`'s output, or None where it fails (tests).
    """
    listed = (nvidia_smi or _nvidia_smi)()
    if listed is None:
        return []
    found = _GPU_LINE.findall(listed)
    if "CUDA_VISIBLE_DEVICES" not in environ:
        return found
    visible = []
    for entry in (e.strip() for e in environ["CUDA_VISIBLE_DEVICES"].split(",")):
        if not entry or entry.startswith("-"):
            break
        visible.append(entry)
    return visible if found else []


def _nvidia_smi() -> str | None:
    try:
        listed = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return listed.stdout if listed.returncode == 0 else None


class InProcessQueue:
    """The jobs one after another in this process (train_and_evaluate is re-entrant)."""

    description = "one run at a time, in this process (no GPU: nvidia-smi lists none)"

    def run(self, jobs: Sequence[Job], started: Started, done: Done) -> None:
        for job in jobs:
            train_job(job, started, done)

    def close(self) -> None:
        pass


def _pin_to_a_gpu(free_gpus) -> None:
    """A worker's start: take a GPU no other worker has (before any backend starts)."""
    os.environ["CUDA_VISIBLE_DEVICES"] = free_gpus.get()


class GpuQueue:
    """A process per GPU, each pinned to its own, taking the next job when it is free.

    Args:
        gpus: The GPUs, as CUDA_VISIBLE_DEVICES names them (`local_gpus`).
        work: What a worker runs per job (the tests pass a stand-in).
    """

    def __init__(self, gpus: Sequence[str], work: Callable[[Job], list[Outcome]] = train_job):
        if not gpus:
            raise ValueError("gpus is empty: GpuQueue needs at least one GPU.")
        self.gpus = tuple(gpus)
        self.work = work
        self.description = (
            f"one run at a time on each of {len(gpus)} GPU{'s' * (len(gpus) > 1)} "
            f"({', '.join(self.gpus)}): a process per GPU, CUDA_VISIBLE_DEVICES pinned"
        )

    def run(self, jobs: Sequence[Job], started: Started, done: Done) -> None:
        # spawn, not fork: a fresh interpreter, so that CUDA_VISIBLE_DEVICES is set before
        # the worker's backend starts, and nothing of this process's threads is copied.
        context = multiprocessing.get_context("spawn")
        free_gpus = context.Queue()
        for gpu in self.gpus:
            free_gpus.put(gpu)
        workers = min(len(self.gpus), len(jobs))
        with concurrent.futures.ProcessPoolExecutor(
            workers, mp_context=context, initializer=_pin_to_a_gpu, initargs=(free_gpus,)
        ) as pool:
            futures = {pool.submit(self.work, job): job for job in jobs}
            try:
                for future in concurrent.futures.as_completed(futures):
                    _report(futures[future], future.result(), done)
            except BaseException:
                # The runs in progress finish (and are kept); those not started are dropped.
                pool.shutdown(wait=True, cancel_futures=True)
                raise

    def close(self) -> None:
        pass


def _report(job: Job, outcomes: Sequence[Outcome], done: Done) -> None:
    for run_dir, outcome in zip(job.run_dirs, outcomes):
        done(run_dir, outcome)


def import_ray():
    """The ray module.

    Raises:
        MissingPackage: Ray is not installed; the message says how to install it.
    """
    try:
        import ray
    except ImportError as error:
        raise MissingPackage(f"--ray needs Ray, which is not installed: {RAY_INSTALL}") from error
    return ray


class RayQueue:
    """Each job a Ray task, one run at a time per GPU of the cluster (or per node, on a
    cluster without GPUs: a run uses every core it is given).

    The data and the sweep's workdir must be at the same paths on every node (a shared file
    system), and tf_resnet9 installed there: each task trains into its run folder as
    `train_and_evaluate` does, and its results come back to the sweep.

    Args:
        address: `ray.init`'s address: "auto" (the cluster this host belongs to), "local"
            (a new instance on this host), or the head node's "host:port"; unused where Ray
            is initialised already (e.g. by the caller, with its own options).
        work: What a task runs per job (the tests may pass a stand-in).

    Raises:
        MissingPackage: Ray is not installed.
        ConnectionError: no cluster at `address`.
    """

    def __init__(self, address: str, work: Callable[[Job], list[Outcome]] = train_job):
        self.ray = import_ray()
        self._started_ray = not self.ray.is_initialized()
        if self._started_ray:
            self.ray.init(address=address)
        gpus = int(self.ray.cluster_resources().get("GPU", 0))
        if gpus:
            resources, per = {"num_gpus": 1}, f"one run per GPU ({gpus} in the cluster)"
        else:
            # A CPU run uses every core: one per node, on the smallest node's count.
            cpus = min(
                node["Resources"].get("CPU", 1) for node in self.ray.nodes() if node["Alive"]
            )
            resources, per = {"num_cpus": cpus}, f"no GPUs: one run per node ({cpus:g} CPUs)"
        env = {name: os.environ[name] for name in _PASSED_ON if name in os.environ}
        self._remote = self.ray.remote(**resources)(work).options(runtime_env={"env_vars": env})
        self.description = f"Ray tasks on the cluster at {address}: {per}"

    def run(self, jobs: Sequence[Job], started: Started, done: Done) -> None:
        ray = self.ray
        tasks = {self._remote.remote(job): job for job in jobs}
        pending = list(tasks)
        while pending:
            (ready,), pending = ray.wait(pending, num_returns=1)
            try:
                outcomes = ray.get(ready)
            except ray.exceptions.RayTaskError as error:
                for task in pending:  # not started: dropped; in progress: stopped
                    ray.cancel(task)
                # The cause's own class (DatasetError, ...), so that the command names it.
                raise error.as_instanceof_cause() from None
            _report(tasks[ready], outcomes, done)

    def close(self) -> None:
        if self._started_ray:
            self.ray.shutdown()
