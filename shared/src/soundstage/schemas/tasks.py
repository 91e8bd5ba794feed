"""Task payloads sent through the broker: ids, never objects (the job row holds the rest)."""

from __future__ import annotations

from pydantic import BaseModel


class JobTaskPayload(BaseModel):
    job_id: str
