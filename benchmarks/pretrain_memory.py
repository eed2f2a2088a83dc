"""Resident memory and words/s of a short pretraining run (the leg memory-growth check in docs/pretraining.md):

    python benchmarks/pretrain_memory.py 400
    ONEDNN_PRIMITIVE_CACHE_CAPACITY=1024 python benchmarks/pretrain_memory.py 400   # oneDNN's default cache

    python benchmarks/pretrain_memory.py 400 reuse     # glibc reusing its heap, as `spacy-elmo pretrain` sets it
    MALLOC_MMAP_MAX_=0 MALLOC_TRIM_THRESHOLD_=4294967296 python benchmarks/pretrain_memory.py 400   # the same by hand

Needs corpus/pretrain_train.txt (scripts/prepare_mixture.py). Prints words/s per 50 steps, RSS every
10 s, and the page faults per step (fresh pages the allocator asked the kernel for).
"""
import sys, threading, time, tempfile
from pathlib import Path
sys.path.insert(0, "benchmarks")
from bench_pretrain import corpus_sample, ROOT
from spacy_elmo.pretrain import load_config, pretrain
from spacy_elmo.pretrain.memory import reuse_freed_memory
if sys.argv[2:] == ["reuse"]:
    print("allocator: heap reused" if reuse_freed_memory() else "allocator: unchanged (no glibc, or MALLOC_* set)")
work = Path(tempfile.mkdtemp())
corpus = corpus_sample(Path("corpus/pretrain_train.txt"), 30000, work)
overrides = {"paths.train": str(corpus), "paths.dev": None, "system.device": "cpu", "system.threads": 2,
             "training.max_steps": int(sys.argv[1]), "training.max_epochs": 0, "training.max_minutes": 0,
             "training.log_every": 50, "training.checkpoint_every": 0, "training.eval_every": 0}
config = load_config(ROOT / "configs" / "pretrain_default_en.cfg", overrides)
samples = []
def rss(): return int(open("/proc/self/status").read().split("VmRSS:")[1].split()[0]) // 1024
def watch():
    while True:
        samples.append(rss()); time.sleep(2)
threading.Thread(target=watch, daemon=True).start()
import resource
faults_before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
pretrain(config, work / "out", progress=False)
faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults_before
import json
tr = [json.loads(l) for l in (work / "out" / "metrics.jsonl").read_text().splitlines()]
print("words/s:", [round(e["words_per_s"]) for e in tr if e["event"] == "train"])
print("rss MB every 10 s:", samples[::5])
print(f"minor page faults: {faults:,} ({faults / int(sys.argv[1]):,.0f} per step)")
