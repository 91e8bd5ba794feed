"""`soundstage run` (embedded or services mode), `soundstage migrate` and `soundstage keys`."""

from __future__ import annotations

import argparse
import sys

from soundstage import keys_cli, migrations
from soundstage.logs import configure_logging
from soundstage.settings import Settings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="soundstage", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser(
        "run",
        help="Start the API and one worker per installed pool (embedded Redis if "
        "REDIS_URL is unset, SQLite if DATABASE_URL is unset).",
    )
    migrate = commands.add_parser("migrate", help="Apply database migrations (alembic upgrade).")
    migrate.add_argument("revision", nargs="?", default="head")
    keys_cli.add_parser(commands)
    args = parser.parse_args(argv)

    settings = Settings()
    configure_logging(settings.log_level, settings.log_format)
    if args.command == "run":
        from soundstage.embedded import run

        return run(settings)
    if args.command == "migrate":
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        migrations.upgrade(settings.resolved_database_url, args.revision)
        print(f"database at revision {args.revision}")
        return 0
    if args.command == "keys":
        return keys_cli.run(settings, args)
    return 2


if __name__ == "__main__":
    sys.exit(main())
