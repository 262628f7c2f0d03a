"""Stand-ins for a sweep's work (`tf_resnet9.sweeps.jobs.train_job`), for the queue tests:
light to import, since a `GpuQueue`'s worker processes import them afresh (spawn)."""

import os
import time

from tf_resnet9.errors import DatasetError

SECONDS_PER_JOB = 1.0  # long enough that every worker of the pool takes a job


def report_pinning(job) -> list[tuple[str, int]]:
    """(CUDA_VISIBLE_DEVICES, process id) for each of the job's seeds."""
    time.sleep(SECONDS_PER_JOB)
    return [(os.environ.get("CUDA_VISIBLE_DEVICES"), os.getpid())] * len(job.seeds)


def fail(job):
    raise DatasetError(f"no data for {job.combination}")
