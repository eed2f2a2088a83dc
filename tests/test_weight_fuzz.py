"""Fuzzing the weight-file format: mutated headers and bytes, truncations, links, storage kinds,
shapes and dtypes. Every case must load or be refused with WeightFileError naming the file, within
a time and memory limit per case: no other exception, no hang, no crash, no runaway allocation.

The cases run in one worker process (importing torch once keeps the test to a few seconds) under
an address-space limit (RLIMIT_AS); the parent gives each case its own deadline and names the
case that overran or killed the worker.
"""

from __future__ import annotations

import json
import os
import random
import select
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

from spacy_elmo.bilm import expected_shapes, save_model_dir

resource = pytest.importorskip("resource")  # RLIMIT_AS: POSIX only

SECONDS_PER_CASE = 20.0  # generous: the machine may be busy; a case takes milliseconds
MEMORY_HEADROOM = 1 << 30  # bytes of address space each case may add to the worker's

WORKER = """
import json, os, resource, sys, time
import torch
from spacy_elmo.bilm import OptionsError, WeightFileError, load_bilm

torch.set_num_threads(1)
with open("/proc/self/statm") as f:
    used = int(f.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
limit = used + int(sys.argv[2])
resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
options, cases = sys.argv[1], sys.argv[3:]
print("ready", flush=True)
for path in cases:
    start = time.perf_counter()
    try:
        load_bilm(options_file=options, weight_file=path)
        outcome = "loaded"
    except (WeightFileError, OptionsError) as err:
        outcome = "refused" if path in str(err) and "\\n" not in str(err) else f"bad message: {err!r}"
    except BaseException as err:
        outcome = f"escaped {type(err).__name__}: {err}"
    print(json.dumps({"case": path, "outcome": outcome, "s": time.perf_counter() - start}), flush=True)
"""


def mutate_bytes(rng: random.Random, data: bytes, n: int, head_only: bool) -> bytes:
    data = bytearray(data)
    span = min(len(data), 4096) if head_only else len(data)
    for _ in range(n):
        data[rng.randrange(span)] = rng.randrange(256)
    return bytes(data)


def structural_cases(name: str, shape: tuple[int, ...], tmp: Path) -> dict[str, object]:
    """edit(f) functions that replace dataset `name` (of `shape`) in a weight file opened r+."""
    other = tmp / "other.h5"
    with h5py.File(other, "w") as f:
        f["x"] = np.ones(shape, dtype="float32")
    raw = tmp / "raw.bin"
    raw.write_bytes(np.ones(int(np.prod(shape)), dtype="float32").tobytes())

    def virtual(f):
        layout = h5py.VirtualLayout(shape=shape, dtype="float32")
        layout[...] = h5py.VirtualSource(str(other), "x", shape=shape)
        f.create_virtual_dataset(name, layout)

    def compact(f):  # bytes inside the object header (h5py has no high-level flag for it)
        dcpl = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
        dcpl.set_layout(h5py.h5d.COMPACT)
        dset = h5py.h5d.create(f.id, name.encode(), h5py.h5t.IEEE_F32LE, h5py.h5s.create_simple(shape), dcpl=dcpl)
        dset.write(h5py.h5s.ALL, h5py.h5s.ALL, np.ones(shape, "float32"))

    def scalar_group_on_path(f):
        top = name.split("/")[0]
        if top != name:
            del f[top]
            f[top] = 1.0

    return {
        "external-storage": lambda f: f.create_dataset(name, shape, "float32", external=[(str(raw), 0, h5py.h5f.UNLIMITED)]),
        "virtual": virtual,
        "soft-link": lambda f: f.__setitem__(name, h5py.SoftLink("/nowhere")),
        "external-link": lambda f: f.__setitem__(name, h5py.ExternalLink(str(other), "x")),
        "dangling-external-link": lambda f: f.__setitem__(name, h5py.ExternalLink(str(tmp / "absent.h5"), "x")),
        "group": lambda f: f.create_group(name),
        "dataset-on-the-path": scalar_group_on_path,
        "extra-dim": lambda f: f.create_dataset(name, (*shape, 1), "float32"),
        "one-short": lambda f: f.create_dataset(name, (*shape[:-1], shape[-1] - 1), "float32"),
        "empty": lambda f: f.create_dataset(name, (0,), "float32"),
        "scalar": lambda f: f.create_dataset(name, data=1.0),
        "huge-unallocated": lambda f: f.create_dataset(name, (1 << 40, 1 << 20), "float32", chunks=(1, 1024)),
        "huge-chunk": lambda f: f.create_dataset(name, shape, "float32", maxshape=(None,) * len(shape),
                                                 chunks=(1 << 28,) + (1,) * (len(shape) - 1)),
        "int8": lambda f: f.create_dataset(name, shape, "int8"),
        "bool": lambda f: f.create_dataset(name, shape, "bool"),
        "complex": lambda f: f.create_dataset(name, shape, "complex64"),
        "string": lambda f: f.create_dataset(name, shape, h5py.string_dtype()),
        "compound": lambda f: f.create_dataset(name, shape, np.dtype([("a", "f4"), ("b", "f4")])),
        "float16": lambda f: f.create_dataset(name, data=np.full(shape, 0.5, dtype="float16")),
        "float64-overflow": lambda f: f.create_dataset(name, data=np.full(shape, 1e300)),
        "float32-nan": lambda f: f.create_dataset(name, data=np.full(shape, np.nan, dtype="float32")),
        "gzip": lambda f: f.create_dataset(name, data=np.ones(shape, "float32"), compression="gzip"),
        "lzf-shuffle": lambda f: f.create_dataset(name, data=np.ones(shape, "float32"), compression="lzf", shuffle=True),
        "compact": compact,
    }


def make_cases(tmp: Path, good: Path, options) -> list[Path]:
    rng = random.Random(18)
    data = good.read_bytes()
    cases = []

    def add(label: str, content: bytes) -> None:
        path = tmp / f"{len(cases):03d}-{label}.hdf5"
        path.write_bytes(content)
        cases.append(path)

    for k in range(30):
        add("header-bytes", mutate_bytes(rng, data, rng.randint(1, 8), head_only=True))
    for k in range(15):
        add("any-bytes", mutate_bytes(rng, data, rng.randint(1, 32), head_only=False))
    for k in range(6):
        add("truncated", data[: rng.randrange(len(data))])
    names = sorted(expected_shapes(options).items())
    for label in structural_cases(*names[0], tmp):
        name, shape = rng.choice(names)
        edit = structural_cases(name, shape, tmp)[label]
        path = tmp / f"{len(cases):03d}-{label}.hdf5"
        path.write_bytes(data)
        with h5py.File(path, "r+") as f:
            del f[name]
            edit(f)
        cases.append(path)
    return cases


def test_every_mutated_weight_file_loads_or_is_refused_cleanly(tmp_path, tiny_bilm):
    folder = save_model_dir(tiny_bilm, tmp_path / "model")
    cases = make_cases(tmp_path, folder / "weights.hdf5", tiny_bilm.options)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1]), "OMP_NUM_THREADS": "1"}
    worker = subprocess.Popen(
        [sys.executable, "-c", WORKER, str(folder / "options.json"), str(MEMORY_HEADROOM), *map(str, cases)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )
    results: dict[str, dict] = {}
    try:
        ready = _read_line(worker, 120.0, "worker start")
        assert ready == "ready", ready
        for case in cases:
            line = _read_line(worker, SECONDS_PER_CASE, case.name)
            result = json.loads(line)
            assert result["case"] == str(case)
            results[case.name] = result
    finally:
        worker.kill()
        worker.wait()
    bad = {name: r["outcome"] for name, r in results.items() if r["outcome"] not in ("loaded", "refused")}
    assert not bad, bad
    outcomes = {name.split("-", 1)[1].removesuffix(".hdf5"): r["outcome"] for name, r in results.items()}
    # The attacks and malformed structures are all refused; the valid variants all load.
    for label in ("external-storage", "virtual", "soft-link", "external-link", "dangling-external-link", "group",
                  "extra-dim", "one-short", "empty", "scalar", "huge-unallocated", "huge-chunk", "int8", "bool",
                  "complex", "string", "compound", "float64-overflow", "float32-nan", "truncated"):
        assert outcomes[label] == "refused", (label, outcomes[label])
    for label in ("float16", "gzip", "lzf-shuffle", "compact"):
        assert outcomes[label] == "loaded", (label, outcomes[label])
    assert sum(r["outcome"] == "refused" for r in results.values()) > len(results) // 2


def _read_line(proc: subprocess.Popen, timeout: float, what: str) -> str:
    """The worker's next line, or a failure naming the case that hung or crashed it."""
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            pytest.fail(f"{what}: no answer within {timeout:g} s (hang)")
        readable, _, _ = select.select([proc.stdout], [], [], left)
        if readable:
            line = proc.stdout.readline()
            if not line:
                proc.wait()
                pytest.fail(f"{what}: the worker died (exit {proc.returncode}): {proc.stderr.read()[-2000:]}")
            return line.strip()
