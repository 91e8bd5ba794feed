"""What every worker pool's process shares: its job services, its Celery tasks, its start-up.

A pool package (``soundstage_musicgen``, ``soundstage_demucs``, ``soundstage_pipeline``) keeps only what is
its own: its engines and its job functions (one per task). The plumbing around them is defined here once.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar

from soundstage import reaper, retention
from soundstage.db import Job, JobRepository, create_db_engine, create_session_factory, utcnow
from soundstage.device_faults import check_device
from soundstage.errors import AppError, ErrorCode, ModelUnavailableError
from soundstage.jobrunner import Execute, JobMissingError, JobOutput, JobRunner, ProgressReporter, transient_errors
from soundstage.pools import Pool, TaskName, task_for_kind
from soundstage.queue import create_celery_app, enqueue_job
from soundstage.schemas import JobKind, JobTaskPayload, ModelCapabilities, WorkerInfo
from soundstage.schemas.magenta_model import ServingCheckpoint
from soundstage.schemas.system import JamSlots
from soundstage.settings import Settings
from soundstage.storage import ObjectStore, open_store
from soundstage.workers import Heartbeat

if TYPE_CHECKING:
    from celery import Celery, Task
    from redis import Redis

logger = logging.getLogger(__name__)


HAND_BACK_SECONDS = 10.0
"""How long a stopping worker waits for its running jobs to be handed back before it goes on stopping."""
MISSING_JOB_RETRIES = 5
"""Deliveries of a message whose job row does not exist yet before it is dropped (see JobMissingError)."""


@dataclass
class JobServices:
    """The database, storage, Redis, job runner and task publisher of one worker process."""

    repo: JobRepository
    store: ObjectStore
    redis: Redis[bytes]
    runner: JobRunner
    publisher: Celery  # sends tasks by name (a pipeline's next steps, a parent to advance)
    hostname: str  # `host:pid`, how the job rows and the worker registry name this process
    # Set once this process hands its jobs back: a job delivered after that goes back to the broker
    # untouched (its claim would name this process again, and the run it replaces would not notice).
    stopping: threading.Event = field(default_factory=threading.Event)

    @classmethod
    def build(cls, settings: Settings) -> JobServices:
        from redis import Redis

        hostname = f"{socket.gethostname()}:{os.getpid()}"
        repo = JobRepository(create_session_factory(create_db_engine(settings.resolved_database_url)))
        store = open_store(
            settings.resolved_storage_url, s3_endpoint_url=settings.s3_endpoint_url, s3_region=settings.s3_region
        )
        redis = Redis.from_url(settings.require_redis_url(), socket_connect_timeout=2, socket_timeout=5)
        publisher = create_celery_app(settings, "soundstage-publisher")
        runner = JobRunner(
            repo=repo,
            store=store,
            redis=redis,
            worker_name=hostname,
            max_attempts=settings.max_job_attempts,
            stale_after_s=settings.job_heartbeat_timeout,
            timeout_s=settings.job_timeout_seconds,
            notify_parent=lambda parent_id: enqueue_job(publisher, TaskName.PIPELINE_ADVANCE, parent_id),
            # A warm shutdown, as on SIGTERM: the other running jobs are handed back, the supervisor restarts us.
            on_broken_device=lambda: os.kill(os.getpid(), signal.SIGTERM),
        )
        return cls(repo=repo, store=store, redis=redis, runner=runner, publisher=publisher, hostname=hostname)

    def publish_again(self, job: Job) -> None:
        """Send a job's task once more (it was handed back or reaped)."""
        enqueue_job(self.publisher, task_for_kind(JobKind(job.kind)), job.id)

    def hand_back(self) -> None:
        """Queue every job this process runs again, at once (it is stopping); its runs end at their next
        progress report."""
        self.stopping.set()
        try:
            handed = self.repo.hand_back(self.hostname, self.publish_again)
        except Exception:  # the database or broker is away: the reaper gives them back once this process is gone
            logger.warning("could not hand the running jobs back", exc_info=True)
            return
        if handed:
            logger.info(
                "stopping: handed back to the queue at once: %d running job(s): %s", len(handed), ", ".join(handed)
            )


def task_payload(args: Any, kwargs: Any) -> JobTaskPayload | None:
    """The payload of a task call, or None when the message holds none we can read (it is dropped)."""
    from pydantic import ValidationError

    try:
        return JobTaskPayload.from_task_arguments(tuple(args or ()), dict(kwargs or {}))
    except (ValidationError, TypeError, IndexError):
        return None


def job_task_base(runner: Callable[[], JobRunner]) -> type[Task]:
    """A Celery Task base that ends the job, instead of leaving it processing, when its retries for a
    platform error ran out."""
    from celery import Task

    class JobTask(Task):  # type: ignore[misc]
        def on_failure(self, exc: BaseException, task_id: str, args: Any, kwargs: Any, einfo: Any) -> None:
            payload = task_payload(args, kwargs)
            if payload is None:
                return
            try:
                runner().fail(
                    payload.job_id,
                    ErrorCode.INTERNAL_ERROR,
                    f"The job could not be completed after retries of a platform error ({type(exc).__name__}).",
                )
            except Exception:
                logger.exception("job %s: could not record the failure", payload.job_id)

    return JobTask


def connect_start_up(
    app: Celery,
    *,
    load: Callable[[], None],
    start: Callable[[], None],
    stop: Callable[[], None],
    in_process: bool,
    stopping: Callable[[], None] | None = None,
) -> None:
    """Run ``start`` (heartbeat) when the worker (or each prefork child) starts, then ``load`` (models) in a
    background thread; ``stop`` when it shuts down. ``stopping`` runs the moment a worker whose tasks run
    in its own process is told to stop (SIGTERM, Ctrl-C), before it waits for its running tasks: it hands
    their jobs back, so they end at once. (A prefork pool's children run short CPU steps, which finish.)

    Loading runs in the background because a prefork child must report to its parent within seconds of
    the fork or it is killed and replaced, and loading takes longer than that (far longer for real
    weights). A job that arrives first waits on its engine's lock."""
    from celery.signals import (
        worker_process_init,
        worker_process_shutdown,
        worker_ready,
        worker_shutdown,
        worker_shutting_down,
    )

    def started(**_: Any) -> None:
        start()
        threading.Thread(target=load, name="soundstage-model-load", daemon=True).start()

    def stopped(**_: Any) -> None:
        stop()

    def shutting_down(**_: Any) -> None:
        if stopping is None:
            return
        # Celery sends this from its signal handler, in the thread it interrupted: the hand-back runs in a
        # thread of its own so that it never waits on a lock the interrupted code holds.
        handing = threading.Thread(target=stopping, name="soundstage-hand-back", daemon=True)
        handing.start()
        handing.join(HAND_BACK_SECONDS)

    if in_process:
        worker_ready.connect(started, weak=False)
        worker_shutting_down.connect(shutting_down, weak=False)
        worker_shutdown.connect(stopped, weak=False)
    else:
        worker_process_init.connect(started, weak=False)
        worker_process_shutdown.connect(stopped, weak=False)


def pool_from_args(args: list[str]) -> str | None:
    """The Celery pool named on the command line, if any."""
    for index, arg in enumerate(args):
        if arg.startswith("--pool="):
            return arg.split("=", 1)[1]
        if arg in ("--pool", "-P") and index + 1 < len(args):
            return args[index + 1]
    return None


def worker_argv(
    pool: Pool, *, execution_pool: str, concurrency: int, settings: Settings, extra: list[str]
) -> list[str]:
    """`celery worker` arguments for a pool's queue (``execution_pool``: Celery's `--pool`, threads, prefork
    or solo); what the operator passed (`extra`) wins."""
    defaults = [
        "worker",
        "--queues",
        pool.queue.value,
        "--pool",
        execution_pool,
        "--concurrency",
        str(concurrency),
        "--loglevel",
        settings.log_level,
        "--without-gossip",
        "--without-mingle",
    ]
    return [*defaults, *extra]


def warm_up_models(models: list[str], load: Callable[[str], bool]) -> int:
    """Load every model once (``load(ref)`` returns whether it has random weights), the model-cache
    warm-up of a pool. Every model is tried; returns the exit status: 1 if any was unavailable."""
    from soundstage.errors import ModelUnavailableError

    failed: list[str] = []
    for ref in models:
        logger.info("loading model %s", ref)
        try:
            random_weights = load(ref)
        except ModelUnavailableError as error:
            logger.error("model %s is not available: %s", ref, error.message)
            failed.append(ref)
            continue
        except Exception:  # disk, network or checkpoint errors: report every model, then fail
            logger.exception("model %s could not be loaded", ref)
            failed.append(ref)
            continue
        logger.info("model %s available (random weights: %s)", ref, random_weights)
    if failed:
        logger.error("%d of %d models unavailable: %s", len(failed), len(models), ", ".join(failed))
        return 1
    logger.info("all %d models available", len(models))
    return 0


@contextmanager
def task_context(task: Task, job_id: str) -> Iterator[None]:
    """Log lines inside carry ``job_id`` and the request id the task's message brought (soundstage.logs)."""
    from soundstage.logs import job_context, request_context
    from soundstage.queue import REQUEST_ID_HEADER

    request_id = getattr(task.request, REQUEST_ID_HEADER, None)
    with job_context(job_id), request_context(request_id if isinstance(request_id, str) else None):
        yield


def run_delivered_job(task: Task, runner: JobRunner, job_id: str, execute: Execute) -> None:
    """Run a delivered job with ``runner``; a duplicate delivery of a job running elsewhere is checked
    again once that job's heartbeat could have gone stale (it is then finished, or taken over).

    The re-check is not bounded by the task's retry limit: the job is alive, not failing, and running
    out of retries would fail it (``on_failure``) while it runs."""
    from soundstage.jobrunner import JobBusyError

    with task_context(task, job_id):
        try:
            runner.run(job_id, execute)
        except JobBusyError as busy:
            raise task.retry(countdown=busy.retry_in, max_retries=task.request.retries + 1) from busy
        except JobMissingError as missing:
            if task.request.retries >= MISSING_JOB_RETRIES:
                logger.warning("job %s: no such job; dropping its message", job_id)
                return
            raise task.retry(
                countdown=0.5 * (task.request.retries + 1), max_retries=MISSING_JOB_RETRIES + 1
            ) from missing


class EngineInfo(Protocol):
    @property
    def device(self) -> str: ...

    @property
    def gpu_available(self) -> bool: ...

    @property
    def random_weights(self) -> bool: ...


class Engine(Protocol):
    """What a pool's engine offers its runtime: a model loaded once, and facts about it."""

    @property
    def model_ref(self) -> str: ...

    @property
    def loaded(self) -> bool: ...

    @property
    def info(self) -> EngineInfo: ...

    def load(self) -> object: ...

    def capabilities(self) -> ModelCapabilities:
        """What the loaded model can do (called only once it is loaded)."""
        ...


EngineT = TypeVar("EngineT", bound=Engine)


@dataclass
class PoolRuntime(Generic[EngineT]):
    """Per-process state of a worker: one engine per served model (each loaded once), the job
    services, and the heartbeat that tells `/health` and the probes what is loaded."""

    pool: Pool
    settings: Settings
    engines: dict[str, EngineT]  # one per served model, in the order the settings list them
    services: JobServices
    heartbeat: Heartbeat | None = None
    load_errors: dict[str, str] = field(default_factory=dict)
    serving: Callable[[], list[ServingCheckpoint]] | None = None
    """What each model serves beyond its name (Magenta: the finetune checkpoint), for the heartbeat."""
    sessions: Callable[[], JamSlots] | None = None
    """Magenta: its jam slots and sessions, for the heartbeat."""
    after_load: Callable[[], None] | None = None
    """Runs once the models are loaded (Magenta: starts following the selected checkpoint)."""
    before_stop: Callable[[], None] | None = None
    """Runs before the heartbeat stops (Magenta: stops following, so that no beat comes after it)."""

    def engine_for(self, model: str | None) -> EngineT:
        """The loaded engine serving ``model`` (the first when None: a pool without models has one engine);
        a failure to load fails the job, not the worker."""
        engine = next(iter(self.engines.values()), None) if model is None else self.engines.get(model)
        if engine is None:
            raise AppError(
                ErrorCode.UNKNOWN_MODEL,
                f"This worker serves {', '.join(self.engines)}, not {model!r}.",
                status_code=422,
            )
        self._load(engine)
        return engine

    def load_all(self) -> None:
        for engine in self.engines.values():
            try:
                self._load(engine)
                logger.info("model %s loaded on %s", engine.model_ref, engine.info.device)
            except ModelUnavailableError as error:
                # Keep consuming: its jobs fail fast with model_unavailable and say how to fix it.
                logger.error("model %s unavailable: %s", engine.model_ref, error.message)
        if self.after_load is not None:
            self.after_load()
        if self.heartbeat:
            self.heartbeat.beat()

    def _load(self, engine: EngineT) -> None:
        try:
            engine.load()
        except ModelUnavailableError as error:
            self.load_errors[engine.model_ref] = error.message
            raise
        self.load_errors.pop(engine.model_ref, None)

    def start_heartbeat(self) -> None:
        """The worker's registry entry, and the reaper that relies on every worker keeping one."""
        services = self.services
        self.heartbeat = Heartbeat(
            services.redis,
            self.describe,
            after_beat=self.periodic,
        )
        self.heartbeat.start()

    def periodic(self) -> None:
        """After each heartbeat: the reaper's sweep, then retention's (each done by one process per period,
        whichever comes first; a failure of one does not skip the other)."""
        services, settings = self.services, self.settings
        try:
            reaper.sweep(
                services.repo,
                services.redis,
                services.publish_again,
                sweeper=services.hostname,
                idle_seconds=settings.job_reap_after_seconds,
            )
        finally:
            retention.sweep(
                services.repo,
                services.store,
                services.redis,
                retention_hours=settings.retention_hours,
                max_stored_files=settings.max_stored_files,
                sweeper=services.hostname,
            )

    def stop_heartbeat(self) -> None:
        if self.before_stop is not None:
            self.before_stop()
        if self.heartbeat:
            self.heartbeat.stop()

    def describe(self) -> WorkerInfo:
        loaded = [engine for engine in self.engines.values() if engine.loaded]
        info = loaded[0].info if loaded else None
        devices = sorted({engine.info.device for engine in loaded})  # touched at every heartbeat
        return WorkerInfo(
            hostname=self.services.hostname,
            queue=self.pool.queue.value,
            model=next(iter(self.engines)),
            models_loaded=[engine.model_ref for engine in loaded],
            device=info.device if info else "unknown",
            gpu_available=info.gpu_available if info else False,
            random_weights=any(engine.info.random_weights for engine in loaded),
            model_loaded=len(loaded) == len(self.engines),
            load_error="; ".join(f"{ref}: {message}" for ref, message in self.load_errors.items()) or None,
            load_errors=dict(self.load_errors),
            device_error=next(filter(None, (check_device(device) for device in devices)), None),
            capabilities=[engine.capabilities() for engine in loaded] if self.pool.serves_models else [],
            serving=self.serving() if self.serving is not None else [],
            jam=self.sessions() if self.sessions is not None else None,
            seen_at=utcnow(),
        )


class RuntimeHolder(Generic[EngineT]):
    """The process's one runtime, built on first use (after fork, never at import)."""

    def __init__(self, build: Callable[[Settings], PoolRuntime[EngineT]]) -> None:
        self._build = build
        self._runtime: PoolRuntime[EngineT] | None = None
        self._lock = threading.Lock()

    def get(self, settings: Settings) -> PoolRuntime[EngineT]:
        with self._lock:
            if self._runtime is None:
                self._runtime = self._build(settings)
            return self._runtime


JobFunction = Callable[[Job, EngineT, ObjectStore, ProgressReporter], JobOutput]
"""Runs one job of a pool on its engine: the job row in, files already stored and a result out."""


@dataclass(frozen=True)
class PlainTask:
    """A task that is not one job's run (a pipeline's advance): ``run`` gets the payload and handles it
    itself; ``give_up`` is called when it raised an error that is not retried, or its retries of a platform
    error ran out, so that the job it was for is ended rather than left waiting for a task that is gone."""

    run: Callable[[Task, JobTaskPayload], None]
    give_up: Callable[[JobTaskPayload], None]


def create_pool_app(
    settings: Settings,
    *,
    pool: Pool,
    runtime: Callable[[], PoolRuntime[EngineT]],
    jobs: Mapping[TaskName, JobFunction[EngineT]],
    in_process_pool: bool,
    tasks: Mapping[TaskName, PlainTask] | None = None,
) -> Celery:
    """The Celery app of a pool: a task per job function in ``jobs`` (each runs a delivered job through the
    job runner), the ``tasks`` that are not job runs, and start-up hooks that start the heartbeat and load
    the models once (``in_process_pool``: tasks run in the worker's main process, threads/solo pools;
    otherwise in prefork children, which load after the fork). Every task name must be one of the pool's."""
    foreign = set(jobs) | set(tasks or {})
    if not foreign <= set(pool.tasks):
        raise ValueError(f"tasks {sorted(foreign - set(pool.tasks))} are not tasks of the {pool.name} pool")
    app = create_celery_app(settings, f"soundstage-{pool.name}")
    for name, job in jobs.items():
        _register_job_task(app, name, runtime, job)
    for name, handler in (tasks or {}).items():
        _register_plain_task(app, name, handler)
    connect_start_up(
        app,
        start=lambda: runtime().start_heartbeat(),
        load=lambda: runtime().load_all(),
        stop=lambda: runtime().stop_heartbeat(),
        in_process=in_process_pool,
        stopping=lambda: runtime().services.hand_back(),  # noqa: PLW0108 - runtime() exists only once started
    )
    return app


_RETRY_OPTIONS: dict[str, Any] = {
    "retry_backoff": 2,
    "retry_backoff_max": 60,
    "retry_jitter": True,
    "max_retries": 5,
    "bind": True,
}


def _register_job_task(
    app: Celery, name: TaskName, runtime: Callable[[], PoolRuntime[EngineT]], job: JobFunction[EngineT]
) -> None:
    @app.task(  # type: ignore[untyped-decorator]
        name=name.value,
        base=job_task_base(lambda: runtime().services.runner),
        autoretry_for=transient_errors(),
        **_RETRY_OPTIONS,
    )
    def run_job(celery_task: Task, *args: Any, **kwargs: Any) -> None:
        payload = task_payload(args, kwargs)
        if payload is None:
            logger.error("%s: dropping a message without a valid payload (args %r, kwargs %r)", name, args, kwargs)
            return
        state = runtime()
        if state.services.stopping.is_set():
            from celery.exceptions import Reject

            raise Reject("this worker is stopping", requeue=True)
        store = state.services.store
        run_delivered_job(
            celery_task,
            state.services.runner,
            payload.job_id,
            lambda row, report: job(row, state.engine_for(row.model), store, report),
        )


def _register_plain_task(app: Celery, name: TaskName, handler: PlainTask) -> None:
    from celery import Task

    from soundstage.logs import job_context

    class GivesUp(Task):  # type: ignore[misc]
        def on_failure(self, exc: BaseException, task_id: str, args: Any, kwargs: Any, einfo: Any) -> None:
            payload = task_payload(args, kwargs)
            if payload is None:
                return
            with job_context(payload.job_id):
                logger.error("%s for job %s failed for good (%s); ending the job", name, payload.job_id, exc)
                try:
                    handler.give_up(payload)
                except Exception:
                    logger.exception("job %s: could not be ended", payload.job_id)

    @app.task(name=name.value, base=GivesUp, autoretry_for=transient_errors(), **_RETRY_OPTIONS)  # type: ignore[untyped-decorator]
    def run_task(celery_task: Task, *args: Any, **kwargs: Any) -> None:
        payload = task_payload(args, kwargs)
        if payload is None:
            logger.error("%s: dropping a message without a valid payload (args %r, kwargs %r)", name, args, kwargs)
            return
        with task_context(celery_task, payload.job_id):
            handler.run(celery_task, payload)
