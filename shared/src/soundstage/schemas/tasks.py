"""Task payloads sent through the broker: ids, never objects (the job row holds the rest).

Every task takes one keyword argument, ``payload``, validated into :class:`JobTaskPayload`. The payload
carries its ``version``, so a worker can tell a message written by a newer or older API instead of
misreading it: version 1 is the only one so far. Messages from before the payload existed (a bare job id
as the only positional argument) are still read, as version 1.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

PAYLOAD_VERSION: Literal[1] = 1


class JobTaskPayload(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    version: Literal[1] = Field(default=PAYLOAD_VERSION, description="Payload format version.")
    job_id: str = Field(min_length=1, max_length=64, description="The job to run (or, for a pipeline, to advance).")

    @classmethod
    def from_task_arguments(cls, args: tuple[Any, ...], kwargs: dict[str, Any]) -> JobTaskPayload:
        """The payload of a task call: ``payload=`` (current), or a bare job id (messages from before version 1).
        Raises pydantic's ValidationError for anything else."""
        if "payload" in kwargs:
            return cls.model_validate(kwargs["payload"])
        if len(args) == 1 and isinstance(args[0], str) and not kwargs:
            return cls(job_id=args[0])
        return cls.model_validate(kwargs.get("payload", args[0] if args else {}))
