"""``soundstage keys create|list|revoke``: the operator's API keys, kept hashed in DATABASE_URL.

A new key is printed once, at creation; afterwards only its first characters are shown. The API accepts
it within KEY_CACHE_SECONDS, and stops accepting a revoked one within the same time.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from soundstage import migrations
from soundstage.db import ApiKeyStore, KeyInfo, create_db_engine, create_session_factory
from soundstage.keys import Scope, parse_scopes
from soundstage.settings import Settings


def add_parser(commands: Any) -> None:
    keys = commands.add_parser("keys", help="Create, list and revoke API keys (stored hashed in the database).")
    actions = keys.add_subparsers(dest="action", required=True)
    create = actions.add_parser("create", help="Make a key; it is printed once and never shown again.")
    create.add_argument("--name", required=True, help="Who or what the key is for.")
    create.add_argument(
        "--scopes",
        default=f"{Scope.GENERATE},{Scope.SEPARATE},{Scope.JAM}",
        help="Comma-separated: " + ", ".join(Scope) + " (admin sees every key's jobs and implies the rest).",
    )
    create.add_argument("--json", action="store_true", help="Print JSON.")
    listing = actions.add_parser("list", help="Every key made so far, revoked ones too.")
    listing.add_argument("--json", action="store_true", help="Print JSON.")
    revoke = actions.add_parser("revoke", help="Stop accepting a key.")
    revoke.add_argument("key_id", help="The key's id (from `soundstage keys list`).")


def _as_json(info: KeyInfo) -> dict[str, Any]:
    return {
        "id": info.id,
        "name": info.name,
        "shown": info.shown + "…",
        "scopes": sorted(info.scopes),
        "created_at": info.created_at.isoformat(),
        "revoked_at": info.revoked_at.isoformat() if info.revoked_at else None,
        "last_used_at": info.last_used_at.isoformat() if info.last_used_at else None,
    }


def _table(keys: list[KeyInfo]) -> str:
    rows = [("ID", "NAME", "KEY", "SCOPES", "CREATED", "LAST USED", "STATUS")]
    for info in keys:
        rows.append(
            (
                info.id,
                info.name,
                info.shown + "…",
                ",".join(sorted(info.scopes)),
                info.created_at.strftime("%Y-%m-%d %H:%M"),
                info.last_used_at.strftime("%Y-%m-%d %H:%M") if info.last_used_at else "-",
                "active" if info.active else "revoked " + info.revoked_at.strftime("%Y-%m-%d %H:%M"),  # type: ignore[union-attr]
            )
        )
    widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip() for row in rows
    )


def run(settings: Settings, args: argparse.Namespace) -> int:
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    migrations.upgrade(settings.resolved_database_url)
    engine = create_db_engine(settings.resolved_database_url)
    try:
        store = ApiKeyStore(create_session_factory(engine))
        if args.action == "create":
            try:
                scopes = parse_scopes(args.scopes)
            except ValueError as error:
                print(f"soundstage keys create: {error}")
                return 2
            created = store.create(args.name.strip() or "unnamed", scopes)
            if args.json:
                print(json.dumps({**_as_json(created.info), "api_key": created.api_key}))
            else:
                print(created.api_key)
                scope_list = ",".join(sorted(scopes))
                print(f"key {created.info.id} ({created.info.name}): {scope_list}. Keep it: it is not shown again.")
            return 0
        if args.action == "list":
            keys = store.list()
            print(json.dumps([_as_json(info) for info in keys]) if args.json else _table(keys))
            return 0
        revoked = store.revoke(args.key_id)
        if revoked is None:
            print(f"soundstage keys revoke: no key with id {args.key_id!r}")
            return 1
        print(f"key {revoked.id} ({revoked.name}) revoked")
        return 0
    finally:
        engine.dispose()
