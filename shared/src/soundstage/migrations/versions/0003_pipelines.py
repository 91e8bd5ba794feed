"""Jobs that form a pipeline, UUID job ids and structured progress.

- ``jobs.id`` and ``job_files.job_id`` hold canonical UUID strings (36 characters; the 32-character ids of
  existing jobs stay valid, and a downgrade keeps the width);
- ``jobs.parent_id``, ``jobs.step`` (unique per parent), ``jobs.stage`` and ``jobs.pipeline``: a multi-step
  job is a parent with child jobs;
- ``jobs.progress_detail`` becomes a JSON object ``{current_scene, total_scenes, stage, message}``; the text
  of existing rows moves into ``message`` (and back on downgrade).

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def _dialect() -> str:
    return op.get_bind().dialect.name


def upgrade() -> None:
    postgres = _dialect() == "postgresql"
    # Text details into objects first, while the column still holds text.
    if not postgres:
        op.execute(
            "UPDATE jobs SET progress_detail = json_object('message', progress_detail) WHERE progress_detail IS NOT NULL"
        )
    with op.batch_alter_table("jobs") as batch:
        batch.alter_column("id", existing_type=sa.String(32), type_=sa.String(36), existing_nullable=False)
        batch.alter_column(
            "progress_detail",
            existing_type=sa.String(255),
            type_=sa.JSON(),
            existing_nullable=True,
            postgresql_using="CASE WHEN progress_detail IS NULL THEN NULL "
            "ELSE json_build_object('message', progress_detail) END",
        )
        batch.add_column(sa.Column("parent_id", sa.String(36), nullable=True))
        batch.add_column(sa.Column("step", sa.String(64), nullable=True))
        batch.add_column(sa.Column("stage", sa.String(32), nullable=True))
        batch.add_column(sa.Column("pipeline", sa.JSON(), nullable=True))
        batch.create_foreign_key("fk_jobs_parent_id", "jobs", ["parent_id"], ["id"], ondelete="CASCADE")
        batch.create_index("ix_jobs_parent_id", ["parent_id"])
        batch.create_unique_constraint("uq_jobs_parent_step", ["parent_id", "step"])
    with op.batch_alter_table("job_files") as batch:
        batch.alter_column("job_id", existing_type=sa.String(32), type_=sa.String(36), existing_nullable=False)


def downgrade() -> None:
    postgres = _dialect() == "postgresql"
    # Child jobs have no place in the old schema; their parents keep their own rows.
    op.execute("DELETE FROM jobs WHERE parent_id IS NOT NULL")
    # The id columns keep their width: jobs made since hold 36-character ids (and their files are named
    # after them), and the older code reads and writes such ids as well as its own.
    with op.batch_alter_table("jobs") as batch:
        batch.drop_constraint("uq_jobs_parent_step", type_="unique")
        batch.drop_index("ix_jobs_parent_id")
        batch.drop_constraint("fk_jobs_parent_id", type_="foreignkey")
        batch.drop_column("pipeline")
        batch.drop_column("stage")
        batch.drop_column("step")
        batch.drop_column("parent_id")
        batch.alter_column(
            "progress_detail",
            existing_type=sa.JSON(),
            type_=sa.String(255),
            existing_nullable=True,
            postgresql_using="left(progress_detail ->> 'message', 255)",
        )
    if not postgres:
        op.execute(
            "UPDATE jobs SET progress_detail = substr(json_extract(progress_detail, '$.message'), 1, 255) "
            "WHERE progress_detail IS NOT NULL"
        )
