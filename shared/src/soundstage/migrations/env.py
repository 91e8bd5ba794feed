"""Alembic environment: runs migrations on the URL put in the config by `soundstage.migrations`."""

from __future__ import annotations

from alembic import context

from soundstage.db.models import Base
from soundstage.db.session import create_db_engine

config = context.config
target_metadata = Base.metadata


def run_migrations_offline() -> None:
    context.configure(
        url=config.get_main_option("sqlalchemy.url"),
        target_metadata=target_metadata,
        literal_binds=True,
        render_as_batch=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    url = config.get_main_option("sqlalchemy.url")
    assert url is not None, "sqlalchemy.url must be set"  # noqa: S101 - programming error, not input
    engine = create_db_engine(url)
    with engine.connect() as connection:
        # Batch mode lets later ALTERs work on SQLite too.
        context.configure(connection=connection, target_metadata=target_metadata, render_as_batch=True)
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
