"""One Magenta stack for every module of this package: a real Magenta worker process loads and compiles
random:tiny once (about 30 s on two cores), and the style, bars and embedding tests all talk to it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.e2e.conftest import build_stack_factory
from tests.support.servers import PostgresServer, S3Server
from tests.support.stack import Stack

MAGENTA = "soundstage_magenta.app"


@pytest.fixture(scope="package")
def stack(
    tmp_path_factory: pytest.TempPathFactory,
    postgres_server: PostgresServer,
    s3_server: S3Server,
    model_cache_dir: Path,
) -> Iterator[Stack]:
    root = tmp_path_factory.mktemp("magenta")
    factory, stop_all = build_stack_factory(root, postgres_server, s3_server, model_cache_dir)
    finetunes = root / "finetunes"  # mirrors of finetune repositories (test_model builds them)
    finetunes.mkdir()
    stack = factory(
        MAGENTA_MODEL="random:tiny",
        SYNC_WAIT_SECONDS="120",
        MAGENTA_FINETUNES_DIR=str(finetunes),
        HF_HUB_OFFLINE="1",  # a repository not mirrored is asked of Hugging Face: refused at once, offline
    )
    stack.start_api()
    stack.start_worker(module=MAGENTA)
    stack.wait_for_workers(1, timeout=300)
    yield stack
    stop_all()


@pytest.fixture
def client(stack: Stack) -> httpx.Client:
    return httpx.Client(base_url=stack.url, timeout=180)
