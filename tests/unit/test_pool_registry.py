"""The pool registry's notion of a built pool: its worker module is installed, not only its package."""

from __future__ import annotations

import dataclasses

from soundstage.pools import POOLS, Queue, pool_for


def test_a_pool_whose_worker_module_is_installed_is_built() -> None:
    assert pool_for(Queue.MUSICGEN).worker_installed
    assert pool_for(Queue.DEMUCS).worker_installed


def test_a_package_without_its_worker_module_is_not_a_built_pool() -> None:
    # soundstage_magenta is installed (its engine), its worker module may not be: check by a name that is not.
    magenta = pool_for(Queue.MAGENTA)
    assert not dataclasses.replace(magenta, worker_module=f"{magenta.package}.no_such_worker").worker_installed


def test_a_pool_whose_package_is_not_installed_is_not_built() -> None:
    pool = dataclasses.replace(POOLS[0], worker_module="soundstage_not_installed.app")
    assert not pool.worker_installed
