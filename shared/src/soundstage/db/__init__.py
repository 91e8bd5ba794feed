"""Database models, engine/session factory and the job repository."""

from soundstage.db.family import Family, NewChild
from soundstage.db.models import Base, Job, JobFile, new_job_id, utcnow
from soundstage.db.repository import Claim, ClaimOutcome, JobRepository, NewFile, Progress, detail
from soundstage.db.session import create_db_engine, create_session_factory

__all__ = [
    "Base",
    "Claim",
    "ClaimOutcome",
    "Family",
    "Job",
    "JobFile",
    "JobRepository",
    "NewChild",
    "NewFile",
    "Progress",
    "create_db_engine",
    "create_session_factory",
    "detail",
    "new_job_id",
    "utcnow",
]
