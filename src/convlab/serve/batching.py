"""Micro-batching for the service: predictions of concurrent requests run as one forward pass.

A forward pass of 16 images costs far less than 16 passes of one (the weights are read once, the matrix
units stay busy), so under load the service gathers what arrives within a short window (``wait_ms``) up to
``max_batch`` images, predicts them together and hands each request its own rows. A lone request waits at
most ``wait_ms``. Each request keeps its own images together in one batch, in its order.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field

import torch

from convlab.errors import ConvlabError
from convlab.serve.limits import DEFAULT_BATCH_WAIT_MS, DEFAULT_MAX_BATCH


@dataclass
class _Job:
    pixels: Sequence[torch.Tensor]
    topk: int
    future: Future = field(default_factory=Future)


class Batcher:
    """One thread that runs ``predict(pixels, topk) -> rows`` on batches gathered from concurrent ``submit``s.

    ``largest_batch`` and ``batches`` say how much batching happened (for tests and the load benchmark).
    """

    def __init__(
        self,
        predict: Callable[[Sequence[torch.Tensor], int], list],
        wait_ms: float = DEFAULT_BATCH_WAIT_MS,
        max_batch: int = DEFAULT_MAX_BATCH,
    ):
        if not (isinstance(wait_ms, (int, float)) and 0 <= wait_ms <= 1000):
            raise ConvlabError(f"--batch-wait-ms must be 0 to 1000 milliseconds, got {wait_ms!r}.")
        if isinstance(max_batch, bool) or not isinstance(max_batch, int) or max_batch < 1:
            raise ConvlabError(f"--max-batch must be a whole number of images, 1 or more; got {max_batch!r}.")
        self.predict, self.wait, self.max_batch = predict, wait_ms / 1000.0, max_batch
        self.largest_batch = 0
        self.batches = 0
        self._jobs: queue.Queue[_Job | None] = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="convlab-batcher", daemon=True)
        self._thread.start()

    def submit(self, pixels: Sequence[torch.Tensor], topk: int) -> Future:
        """A future of the top-``topk`` rows of ``pixels`` (uint8 C x H x W images), one per image."""
        job = _Job(list(pixels), int(topk))
        self._jobs.put(job)
        return job.future

    def close(self) -> None:
        self._jobs.put(None)
        self._thread.join(timeout=5)

    def _run(self) -> None:
        carried: _Job | None = None
        while True:
            first = carried if carried is not None else self._jobs.get()
            carried = None
            if first is None:
                return
            jobs, images = [first], len(first.pixels)
            deadline = time.perf_counter() + self.wait
            while images < self.max_batch:
                try:
                    job = self._jobs.get(timeout=max(0.0, deadline - time.perf_counter()))
                except queue.Empty:
                    break
                if job is None or images + len(job.pixels) > self.max_batch:
                    carried = job if job is not None else None
                    if job is None:
                        self._jobs.put(None)  # stop after this batch
                    break
                jobs.append(job)
                images += len(job.pixels)
            self._answer(jobs, images)

    def _answer(self, jobs: list[_Job], images: int) -> None:
        self.batches += 1
        self.largest_batch = max(self.largest_batch, images)
        try:
            rows = self.predict([p for job in jobs for p in job.pixels], max(job.topk for job in jobs))
        except Exception as error:  # the request's own error (a bad image shape...) reaches each caller
            for job in jobs:
                job.future.set_exception(error)
            return
        start = 0
        for job in jobs:
            own = rows[start : start + len(job.pixels)]
            start += len(job.pixels)
            job.future.set_result([found[: job.topk] for found in own])
