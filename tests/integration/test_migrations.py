"""Alembic is the only way the schema is created: upgrade and downgrade on both backends."""

from __future__ import annotations

import pytest
from sqlalchemy import create_engine, inspect

from soundstage import migrations
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
