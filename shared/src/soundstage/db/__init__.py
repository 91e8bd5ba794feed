"""Database models, engine/session factory and the job repository."""

from soundstage.db.api_keys import ApiKeyStore, CreatedKey, KeyInfo
from soundstage.db.family import Family, NewChild
from soundstage.db.models import Base, Job, JobFile, new_job_id, utcnow
from soundstage.db.repository import Claim, ClaimOutcome, JobRepository, NewFile, Progress, detail
from soundstage.db.session import create_db_engine, create_session_factory

__all__ = [
    "ApiKeyStore",
    "Base",
    "Claim",
    "ClaimOutcome",
    "CreatedKey",
    "Family",
    "Job",
    "JobFile",
    "JobRepository",
    "KeyInfo",
    "NewChild",
    "NewFile",
    "Progress",
    "create_db_engine",
    "create_session_factory",
    "detail",
    "new_job_id",
    "utcnow",
]
