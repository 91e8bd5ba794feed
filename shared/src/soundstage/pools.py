"""The pool registry: every worker pool's queue, task names, worker module, settings and capabilities, in one table.

A pool is a set of worker processes that consume one queue and run that queue's tasks. The API calls tasks
by name (``send_task``) and never imports a pool's code; the embedded launcher starts one worker for every
pool whose worker is installed; the Celery app of every process routes each task to its pool's queue.
All of them read this table. A new pool is one :class:`Pool` entry here (with its settings class in
:mod:`soundstage.pool_settings`) plus its package.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING

from soundstage.schemas.common import JobKind

if TYPE_CHECKING:
    from soundstage.pool_settings import PoolSettings
    from soundstage.settings import Settings


class Queue(StrEnum):
    """One queue per pool; a worker consumes only its own."""

    MUSICGEN = "musicgen"
    MAGENTA = "magenta"
    DEMUCS = "demucs"
    PIPELINE = "pipeline"


class TaskName(StrEnum):
    """Explicit dotted task names: `<pool>.<action>`."""

    MUSICGEN_GENERATE = "musicgen.generate"
    MAGENTA_GENERATE = "magenta.generate"
    MAGENTA_LOOP = "magenta.loop"
    MAGENTA_EMBED = "magenta.embed"
    DEMUCS_SEPARATE = "demucs.separate"
    PIPELINE_STEP = "pipeline.step"
    PIPELINE_ADVANCE = "pipeline.advance"


@dataclass(frozen=True)
class Pool:
    name: str
    queue: Queue
    tasks: tuple[TaskName, ...]
    """Every task the pool's workers run."""
    job_tasks: dict[JobKind, TaskName]
    """The task that runs a job of each kind the pool owns (the job row's `kind`)."""
    worker_module: str
    """`python -m <module>` starts one of its workers."""
    settings_attr: str | None
    """The attribute of :class:`Settings` holding the pool's own settings (None: a reserved slot)."""
    serves_models: bool
    """Whether the pool loads models (whose names requests choose, and whose capabilities it publishes)."""
    gpu: bool
    """Whether its workers want an accelerator (the deployments give them one)."""

    @property
    def package(self) -> str:
        return self.worker_module.split(".")[0]

    @property
    def worker_installed(self) -> bool:
        """Whether the pool is built: its worker entry module is installed. The module, not only its
        package: a pool's package may be installed before its worker exists (the Magenta pool's engine came
        first). What the embedded launcher starts and what the deployments must run."""
        try:
            return importlib.util.find_spec(self.worker_module) is not None
        except ModuleNotFoundError:  # its package is not installed
            return False

    def settings(self, settings: Settings) -> PoolSettings | None:
        if self.settings_attr is None:
            return None
        pool_settings: PoolSettings = getattr(settings, self.settings_attr)
        return pool_settings

    def served_models(self, settings: Settings) -> list[str]:
        """The models the pool serves, the default first; empty for a pool without models."""
        own = self.settings(settings)
        return own.served_models if own is not None else []


POOLS: tuple[Pool, ...] = (
    Pool(
        name="musicgen",
        queue=Queue.MUSICGEN,
        tasks=(TaskName.MUSICGEN_GENERATE,),
        job_tasks={JobKind.GENERATE: TaskName.MUSICGEN_GENERATE},
        worker_module="soundstage_musicgen.app",
        settings_attr="musicgen",
        serves_models=True,
        gpu=True,
    ),
    Pool(
        name="magenta",
        queue=Queue.MAGENTA,
        tasks=(TaskName.MAGENTA_GENERATE, TaskName.MAGENTA_LOOP, TaskName.MAGENTA_EMBED),
        job_tasks={
            JobKind.STYLE: TaskName.MAGENTA_GENERATE,
            JobKind.LOOP: TaskName.MAGENTA_LOOP,
            JobKind.EMBED: TaskName.MAGENTA_EMBED,
        },
        worker_module="soundstage_magenta.app",
        settings_attr="magenta",
        serves_models=True,
        gpu=True,
    ),
    Pool(
        name="demucs",
        queue=Queue.DEMUCS,
        tasks=(TaskName.DEMUCS_SEPARATE,),
        job_tasks={JobKind.SEPARATE: TaskName.DEMUCS_SEPARATE},
        worker_module="soundstage_demucs.app",
        settings_attr="demucs",
        serves_models=True,
        gpu=True,
    ),
    Pool(
        name="pipeline",
        queue=Queue.PIPELINE,
        tasks=(TaskName.PIPELINE_STEP, TaskName.PIPELINE_ADVANCE),
        job_tasks={JobKind.MIX: TaskName.PIPELINE_STEP, JobKind.SOUNDTRACK: TaskName.PIPELINE_ADVANCE},
        worker_module="soundstage_pipeline.app",
        settings_attr="pipeline",
        serves_models=False,
        gpu=False,
    ),
)

ADVANCED_KINDS = frozenset(
    kind for pool in POOLS for kind, task in pool.job_tasks.items() if task is TaskName.PIPELINE_ADVANCE
)
"""Kinds of job that are parents advanced by their steps: no worker runs one as a unit, so none is ever
handed back or reaped (their steps are)."""

_BY_QUEUE = {pool.queue: pool for pool in POOLS}
_BY_TASK = {task: pool for pool in POOLS for task in pool.tasks}
_BY_KIND = {kind: pool for pool in POOLS for kind in pool.job_tasks}


def pool_for(queue: Queue) -> Pool:
    return _BY_QUEUE[queue]


def pool_of_task(task: TaskName) -> Pool:
    return _BY_TASK[task]


def pool_of_kind(kind: JobKind) -> Pool:
    return _BY_KIND[kind]


def task_for_kind(kind: JobKind) -> TaskName:
    """The task that runs (or, for a pipeline, advances) a job of ``kind``."""
    return _BY_KIND[kind].job_tasks[kind]


def served_models(settings: Settings, queue: Queue) -> list[str]:
    return pool_for(queue).served_models(settings)
