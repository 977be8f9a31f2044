#!/usr/bin/env python3
"""bench_tokenizers_hf.py - encode throughput of the Hugging Face `tokenizers` library.

The baseline llmlab's own tokenizer is compared with: the same tokenizer.json and
the same text file, single-threaded (RAYON_NUM_THREADS=1 is set before the
library loads, so its Rust thread pool has one thread).  Two workloads:

    whole   the file encoded as one string (one call)
    lines   each line encoded by its own encode() call (per-call overhead shows)

Each is repeated --reps times; the median time gives MB/s (10^6 bytes of UTF-8
input per second) and tokens/s.  add_special_tokens is off unless --special.

    python3 tools/bench_tokenizers_hf.py --tokenizer tests/data/tokenizers/bytelevel_llama3/tokenizer.json \\
        --text some_corpus.txt [--reps 5] [--special] [--json]
"""
import argparse
import json
import os
import statistics
import sys
import time

os.environ["RAYON_NUM_THREADS"] = "1"  # must precede the import: the pool is sized at first use
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from tokenizers import Tokenizer, __version__ as TOKENIZERS_VERSION  # noqa: E402


def timed(fn, reps):
    """Median wall time of fn() over reps runs, and its last result."""
    times, out = [], None
    for _ in range(reps):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tokenizer", required=True, help="a tokenizer.json file")
    ap.add_argument("--text", required=True, help="a UTF-8 text file to encode")
    ap.add_argument("--reps", type=int, default=5, help="repetitions per workload (median reported)")
    ap.add_argument("--special", action="store_true", help="add_special_tokens=True")
    ap.add_argument("--json", action="store_true", help="one JSON object instead of a table")
    a = ap.parse_args()
    if a.reps < 1:
        ap.error("--reps must be at least 1")
    tok = Tokenizer.from_file(a.tokenizer)
    with open(a.text, "rb") as f:
        raw = f.read()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        sys.exit(f"{a.text}: not UTF-8 ({e}); the library takes Unicode strings")
    lines = text.splitlines(keepends=True)
    mb = len(raw) / 1e6

    tok.encode(text[:1000], add_special_tokens=a.special)  # warm-up (lazy regex compilation, caches)
    t_whole, enc = timed(lambda: tok.encode(text, add_special_tokens=a.special), a.reps)
    n_whole = len(enc.ids)
    t_lines, n_lines = timed(lambda: sum(len(tok.encode(s, add_special_tokens=a.special).ids) for s in lines),
                             a.reps)
    res = {
        "library": f"tokenizers {TOKENIZERS_VERSION}",
        "tokenizer": a.tokenizer, "text": a.text, "bytes": len(raw), "lines": len(lines), "reps": a.reps,
        "whole": {"seconds": t_whole, "tokens": n_whole, "mb_per_s": mb / t_whole, "tokens_per_s": n_whole / t_whole},
        "lines_one_by_one": {"seconds": t_lines, "tokens": n_lines, "mb_per_s": mb / t_lines,
                             "tokens_per_s": n_lines / t_lines},
    }
    if a.json:
        print(json.dumps(res, indent=1))
        return
    print(f"{res['library']}, 1 thread, {len(raw)} bytes, {len(lines)} lines, median of {a.reps}")
    print(f"{'workload':<18} {'MB/s':>9} {'Mtok/s':>9} {'tokens':>10} {'seconds':>9}")
    for name, key in (("whole file", "whole"), ("lines one by one", "lines_one_by_one")):
        r = res[key]
        print(f"{name:<18} {r['mb_per_s']:9.2f} {r['tokens_per_s'] / 1e6:9.3f} {r['tokens']:10d} {r['seconds']:9.4f}")


if __name__ == "__main__":
    main()
