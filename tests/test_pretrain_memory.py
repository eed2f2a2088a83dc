"""The pretraining process's allocator settings (spacy_elmo/pretrain/memory.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

from spacy_elmo.pretrain import memory

needs_glibc = pytest.mark.skipif(memory._LIBC is None, reason="needs glibc (Linux): the settings are no-ops elsewhere")

# A step's pattern in miniature: allocate a 40 MB buffer, write every page, free it, 20 times.
# 40 MB is above glibc's largest automatic mmap threshold (32 MB), so by default every round maps
# fresh pages from the kernel and faults all of them in again.
ROUNDS_SCRIPT = textwrap.dedent("""
    import ctypes, importlib.util, json, resource, sys
    # the module alone, without the package (and torch) around it: a quick subprocess
    spec = importlib.util.spec_from_file_location("memory", {path!r})
    memory = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(memory)
    reuse_freed_memory = memory.reuse_freed_memory
    libc = ctypes.CDLL("libc.so.6")
    libc.malloc.restype = ctypes.c_void_p
    libc.free.argtypes = [ctypes.c_void_p]
    changed = reuse_freed_memory() if sys.argv[1] == "reuse" else False
    size, rounds = 40 << 20, 20
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(rounds):
        p = libc.malloc(size)
        ctypes.memset(p, 1, size)
        libc.free(p)
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
    print(json.dumps({{"changed": changed, "pages_per_round": faults / rounds}}))
""")


def run_rounds(mode: str, env: dict[str, str] | None = None) -> dict:
    script = ROUNDS_SCRIPT.format(path=memory.__file__)
    out = subprocess.run([sys.executable, "-c", script, mode], capture_output=True, text=True, env=env, check=True)
    return json.loads(out.stdout)


@needs_glibc
def test_freed_buffers_are_reused_instead_of_faulted_in_again():
    env = {k: v for k, v in os.environ.items() if k not in memory.ALLOCATOR_ENV}
    default, reused = run_rounds("default", env), run_rounds("reuse", env)
    page_rounds = (40 << 20) / os.sysconf("SC_PAGE_SIZE")
    assert default["changed"] is False and reused["changed"] is True
    assert default["pages_per_round"] > 0.9 * page_rounds  # every round faults the whole buffer in
    assert reused["pages_per_round"] < 0.1 * page_rounds  # only the first round does


@needs_glibc
def test_a_users_allocator_variables_are_left_alone():
    env = {**os.environ, "MALLOC_TRIM_THRESHOLD_": "1048576"}
    env.pop("MALLOC_MMAP_MAX_", None)
    assert run_rounds("reuse", env)["changed"] is False


def test_without_glibc_everything_is_a_no_op(monkeypatch):
    monkeypatch.setattr(memory, "_LIBC", None)
    for name in memory.ALLOCATOR_ENV:
        monkeypatch.delenv(name, raising=False)
    assert memory.reuse_freed_memory() is False
    memory.release_free_memory()  # must not raise


def test_resident_memory_is_read_on_linux():
    from pathlib import Path

    rss = memory.resident_mb()
    if Path("/proc/self/status").is_file():
        assert isinstance(rss, int) and rss > 0  # a Python process with numpy and torch loaded
    else:
        assert rss is None
