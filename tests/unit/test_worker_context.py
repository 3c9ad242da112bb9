"""The worker's state is one context built from its Settings (not module globals): the kernel
cache's bound comes from the settings the worker started with, and a forked child builds its
own context (its threads and connections are not the parent's)."""

from __future__ import annotations

import os
from pathlib import Path

from app.config import Settings
from tasks.store import open as store_open
from workers import context as wcontext
from workers.solvers.cache import process_cache


def test_the_kernel_cache_bound_comes_from_the_workers_settings(tmp_path: Path) -> None:
    try:
        ctx = wcontext.configure(Settings(home=tmp_path, kernel_cache_bytes=12345))
        assert wcontext.context() is ctx
        assert process_cache().max_bytes == 12345
        assert store_open.current_settings().home == tmp_path
        assert ctx.chain.recent == {} and ctx.beater is None and ctx.results is None
    finally:
        wcontext.configure(Settings(home=tmp_path))
        wcontext.reset()
        store_open._CURRENT.clear()


def test_a_forked_child_builds_its_own_context(tmp_path: Path) -> None:
    parent = wcontext.configure(Settings(home=tmp_path))
    parent.chain.state["instance"] = 7
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: a new context from the same settings
        child = wcontext.context()
        ok = child is not parent and child.settings == parent.settings
        ok = ok and child.chain.state["instance"] is None
        os.write(w, b"1" if ok else b"0")
        os._exit(0)
    os.close(w)
    os.waitpid(pid, 0)
    assert os.read(r, 1) == b"1"
    assert wcontext.context() is parent
    wcontext.reset()
    store_open._CURRENT.clear()
