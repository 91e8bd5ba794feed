"""Alembic is the only way the schema is created: upgrade and downgrade on both backends."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import create_engine, inspect, text

from soundstage import migrations
from soundstage.db import JobRepository, NewChild, create_db_engine, create_session_factory
from soundstage.db.models import Base


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_upgrade_matches_models_and_downgrade_removes_everything(backend: str, request: pytest.FixtureRequest) -> None:
    url: str = request.getfixturevalue(f"{backend}_url")
    migrations.upgrade(url)
    engine = create_engine(url)
    inspector = inspect(engine)
    tables = set(inspector.get_table_names())
    assert {"jobs", "job_files", "alembic_version"} <= tables
    for table in Base.metadata.sorted_tables:
        migrated = {column["name"] for column in inspector.get_columns(table.name)}
        assert migrated == {column.name for column in table.columns}, table.name
    assert {ix["name"] for ix in inspector.get_indexes("jobs")} >= {"ix_jobs_status", "ix_jobs_created_at"}
    migrations.upgrade(url)  # idempotent
    migrations.downgrade(url, "base")
    assert set(inspect(engine).get_table_names()) <= {"alembic_version"}
    migrations.upgrade(url)
    assert "jobs" in inspect(engine).get_table_names()
    engine.dispose()


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_pipeline_migration_keeps_existing_jobs_both_ways(backend: str, request: pytest.FixtureRequest) -> None:
    """0003 turns text progress into an object (and back), widens ids to UUID strings and adds parents;
    jobs written before it survive the upgrade and the downgrade."""
    url: str = request.getfixturevalue(f"{backend}_url")
    migrations.upgrade(url, "0002")
    engine = create_engine(url)
    old_id = "0123456789abcdef0123456789abcdef"
    with engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO jobs (id, kind, queue, status, params, progress, progress_detail, attempts, "
                "cancel_requested, created_at) VALUES (:id, 'generate', 'musicgen', 'processing', '{}', 40.0, "
                "'window 1/2: decoding step 3', 1, false, :now)"
            ),
            {"id": old_id, "now": datetime.now(UTC)},
        )
    migrations.upgrade(url)
    repo = JobRepository(create_session_factory(create_db_engine(url)))
    job = repo.get(old_id)
    assert job is not None and job.progress_detail == {"message": "window 1/2: decoding step 3"}
    parent = repo.create(kind="soundtrack", queue="pipeline", model=None, params={})
    assert len(parent.id) == 36
    with repo.family(parent.id) as family:
        family.add_child(
            NewChild(step="scene:0", kind="generate", queue="musicgen", model=None, params={}, stage="generating")
        )
    assert [child.step for child in repo.children(parent.id)] == ["scene:0"]
    migrations.downgrade(url, "0002")
    with engine.connect() as connection:
        rows = dict(connection.execute(text("SELECT id, progress_detail FROM jobs")).all())
    assert rows == {old_id: "window 1/2: decoding step 3", parent.id: None}, "steps are dropped, their parent kept"
    migrations.upgrade(url)
    engine.dispose()
