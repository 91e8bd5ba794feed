"""Celery messages waiting in a Redis queue, decoded (protocol 2: body = [args, kwargs, embed])."""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from typing import Any

from soundstage.schemas.tasks import JobTaskPayload


@dataclass(frozen=True)
class QueuedTask:
    task: str
    payload: JobTaskPayload
    headers: dict[str, Any]


def queued_tasks(client: Any, queue: str) -> list[QueuedTask]:
    """Every message on ``queue`` (oldest last, as Redis lists them), with its payload validated."""
    tasks = []
    for raw in client.lrange(queue, 0, -1):
        message = json.loads(raw)
        args, kwargs, _embed = json.loads(base64.b64decode(message["body"]))
        tasks.append(
            QueuedTask(
                task=message["headers"]["task"],
                payload=JobTaskPayload.from_task_arguments(tuple(args), kwargs),
                headers=message["headers"],
            )
        )
    return tasks


def queued_job_ids(client: Any, queue: str) -> list[str]:
    return [task.payload.job_id for task in queued_tasks(client, queue)]
