"""Alembic environment: one migration history for every package's models."""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine, pool

from infra.db import Base, import_all_models, include_object

import_all_models()
target_metadata = Base.metadata
configured_url = context.config.get_main_option("sqlalchemy.url")
assert configured_url, "sqlalchemy.url must be set by infra.db.alembic_config"
url: str = configured_url


def run_offline() -> None:
    context.configure(
        url=url, target_metadata=target_metadata, literal_binds=True, render_as_batch=True
    )
    with context.begin_transaction():
        context.run_migrations()


def run_online() -> None:
    engine = create_engine(url, poolclass=pool.NullPool)
    with engine.connect() as connection:
        context.configure(
            connection=connection,
            include_object=include_object,
            target_metadata=target_metadata,
            render_as_batch=connection.dialect.name == "sqlite",
        )
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


if context.is_offline_mode():
    run_offline()
else:
    run_online()
