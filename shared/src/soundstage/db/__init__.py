"""Database models, engine/session factory and the job repository."""

from soundstage.db.models import Base, Job, JobFile, utcnow
from soundstage.db.repository import Claim, ClaimOutcome, JobRepository, NewFile, new_job_id
from soundstage.db.session import create_db_engine, create_session_factory

__all__ = [
    "Base",
    "Claim",
    "ClaimOutcome",
    "Job",
    "JobFile",
    "JobRepository",
    "NewFile",
    "create_db_engine",
    "create_session_factory",
    "new_job_id",
    "utcnow",
]
