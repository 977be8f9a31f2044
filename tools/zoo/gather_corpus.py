#!/usr/bin/env python3
"""gather_corpus.py - the zoo's training text, from files every Debian machine has.

Sources, each read in sorted path order up to its byte budget:

  python   /usr/lib/python3.11 (Debian's python3.11): the standard library's .py
           sources, test suites and site-packages left out (code with English
           docstrings and comments)
  licenses /usr/share/common-licenses (base-files): long English prose
  docs     /usr/share/doc/*/: copyright files, README*, NEWS*, *.txt and their .gz
           forms, decompressed
  man      /usr/share/man/man1/*.1.gz rendered to plain text by `man -l` (MANWIDTH=80,
           col -b strips the overstrikes)

Every document is normalised the same way (decoded as UTF-8 with invalid bytes
replaced, CRLF -> LF, trailing whitespace removed) and the documents are split
deterministically: a document whose SHA-256 starts with a byte < HELDOUT_BYTE goes to
the held-out set, the rest to training.  The order within each split is by that hash
too, so sources interleave.  Output (in --out, default zoo-data/):

  train.txt, heldout.txt   the documents, each followed by a line holding only a form
                           feed (U+000C; form feeds inside documents become newlines)
  manifest.tsv             source, path, bytes used, sha256 prefix, split
  CORPUS.txt               totals per source and split, and the SHA-256 of both files

The manifest is what went in; a machine with other package versions gets another
corpus, and the hashes say so.

    python3 tools/zoo/gather_corpus.py [--out zoo-data] [--scale 1.0]
"""
import argparse
import gzip
import hashlib
import os
import subprocess

BUDGETS = {"python": 9_000_000, "licenses": 400_000, "docs": 4_000_000, "man": 2_500_000}
HELDOUT_BYTE = 5  # 5/256 ~ 2% of documents held out
MIN_DOC, MAX_DOC = 200, 200_000
DOC_END = "\n\f\n"


def normalise(data):
    text = data.decode("utf-8", "replace").replace("\r\n", "\n").replace("\f", "\n")
    return "\n".join(line.rstrip() for line in text.split("\n")).strip("\n")


def python_files():
    root = "/usr/lib/python3.11"
    for d, dirs, names in os.walk(root):
        dirs[:] = sorted(x for x in dirs if x not in ("test", "tests", "site-packages", "dist-packages",
                                                        "__pycache__", "idlelib", "lib2to3"))
        for n in sorted(names):
            if n.endswith(".py"):
                p = os.path.join(d, n)
                with open(p, "rb") as f:
                    yield p, f.read()


def license_files():
    root = "/usr/share/common-licenses"
    for n in sorted(os.listdir(root)) if os.path.isdir(root) else []:
        p = os.path.join(root, n)
        if os.path.isfile(p) and not os.path.islink(p):
            with open(p, "rb") as f:
                yield p, f.read()


def doc_files():
    root = "/usr/share/doc"
    for pkg in sorted(os.listdir(root)):
        d = os.path.join(root, pkg)
        if not os.path.isdir(d) or os.path.islink(d):
            continue
        for n in sorted(os.listdir(d)):
            p = os.path.join(d, n)
            base = n[:-3] if n.endswith(".gz") else n
            if not os.path.isfile(p) or os.path.islink(p):
                continue
            if not (base == "copyright" or base.startswith(("README", "NEWS")) or base.endswith(".txt")):
                continue
            with open(p, "rb") as f:
                data = f.read()
            yield p, gzip.decompress(data) if n.endswith(".gz") else data


def man_pages():
    root = "/usr/share/man/man1"
    env = dict(os.environ, MANWIDTH="80", LC_ALL="C.UTF-8", MAN_KEEP_FORMATTING="")
    for n in sorted(os.listdir(root)) if os.path.isdir(root) else []:
        p = os.path.join(root, n)
        if not n.endswith(".1.gz") or os.path.islink(p):
            continue
        r = subprocess.run(f"man -l {p!r} 2>/dev/null | col -b", shell=True, env=env, capture_output=True)
        if r.returncode == 0 and r.stdout:
            yield p, r.stdout


SOURCES = {"python": python_files, "licenses": license_files, "docs": doc_files, "man": man_pages}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default="zoo-data")
    ap.add_argument("--scale", type=float, default=1.0, help="multiplies every byte budget")
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    docs, manifest, seen = [], [], set()
    for source, gen in SOURCES.items():
        budget, used = int(BUDGETS[source] * a.scale), 0
        for path, data in gen():
            if used >= budget:
                break
            text = normalise(data)
            size = len(text.encode("utf-8"))
            if size < MIN_DOC or size > MAX_DOC:
                continue
            h = hashlib.sha256(text.encode("utf-8")).digest()
            if h in seen:  # identical copyright files of sibling packages
                continue
            seen.add(h)
            split = "heldout" if h[0] < HELDOUT_BYTE else "train"
            docs.append((h, split, text))
            manifest.append((source, path, size, h.hex()[:16], split))
            used += size
    docs.sort()
    totals = {}
    for split in ("train", "heldout"):
        blob = "".join(t + DOC_END for h, s, t in docs if s == split)
        with open(os.path.join(a.out, split + ".txt"), "w", encoding="utf-8") as f:
            f.write(blob)
        totals[split] = (len(blob.encode("utf-8")), hashlib.sha256(blob.encode("utf-8")).hexdigest())
    with open(os.path.join(a.out, "manifest.tsv"), "w") as f:
        f.write("source\tpath\tbytes\tsha256_16\tsplit\n")
        for row in manifest:
            f.write("\t".join(map(str, row)) + "\n")
    with open(os.path.join(a.out, "CORPUS.txt"), "w") as f:
        for source in SOURCES:
            for split in ("train", "heldout"):
                rows = [m for m in manifest if m[0] == source and m[4] == split]
                f.write(f"{source}\t{split}\t{len(rows)} documents\t{sum(m[2] for m in rows)} bytes\n")
        for split, (n, h) in totals.items():
            f.write(f"{split}.txt\t{n} bytes\tsha256 {h}\n")
    print(open(os.path.join(a.out, "CORPUS.txt")).read(), end="")


if __name__ == "__main__":
    main()
