#!/usr/bin/env python3
"""evaluate.py - the figures of a saved zoo model, computed from its f16 file.

    python3 tools/zoo/evaluate.py MODEL_DIR [--data zoo-data]

Loads MODEL_DIR (Hugging Face layout, f16) upcast to f32 and writes into it:

  heldout_ids.u16      the first HELDOUT_TOKENS ids of heldout.bin (uint16 LE): the
                       stream every perplexity below is measured on, so llmlab can
                       measure the same without the corpus
  eval.json            perplexity on heldout_ids with llmlab's definition
                       (docs/perplexity.md): windows of CTX tokens moved by STRIDE,
                       each token after the first scored once, in the first window
                       that holds it, with the context its window gives; for the
                       whole stream and for its first SHORT_TOKENS ids (what
                       tests/test_zoo.c re-measures quickly)
  ref_logits.f32       logits [REF_T][vocab] (f32 LE) of the first REF_T held-out ids
  ref_tokens.txt       those ids

train.py calls this at the end; run it alone to refresh the figures.
"""
import argparse
import json
import math
import os

import numpy as np
import torch
from transformers import LlamaForCausalLM

CTX, STRIDE, HELDOUT_TOKENS, SHORT_TOKENS, REF_T = 1024, 512, 32768, 2048, 8


def strided_nll(model, ids, ctx, stride):
    """(sum of NLL in nats, tokens scored) over ids with strided windows."""
    total, count, prev_end, n = 0.0, 0, 0, len(ids)
    for begin in range(0, n, stride):
        end = min(begin + ctx, n)
        x = torch.as_tensor(ids[begin:end], dtype=torch.long)[None]
        with torch.no_grad():
            logp = torch.log_softmax(model(x).logits[0].double(), dim=-1)
        first = max(prev_end, begin + 1)  # tokens already scored, and a window's first token, are context only
        t = torch.arange(first, end)
        total -= logp[t - begin - 1, torch.as_tensor(ids[first:end])].sum().item()
        count += end - first
        prev_end = end
        if end == n:
            break
    return total, count


def evaluate(model_dir, data_dir, extra=None):
    model = LlamaForCausalLM.from_pretrained(model_dir, torch_dtype=torch.float32).eval()
    held = np.fromfile(os.path.join(data_dir, "heldout.bin"), dtype=np.uint16)[:HELDOUT_TOKENS]
    held.astype("<u2").tofile(os.path.join(model_dir, "heldout_ids.u16"))
    ids = held.astype(np.int64).tolist()
    ev = dict(extra or {})
    ev.update(ctx=CTX, stride=STRIDE, torch=torch.__version__)
    for name, n in (("heldout", len(ids)), ("short", SHORT_TOKENS)):
        nll, count = strided_nll(model, ids[:n], CTX, STRIDE)
        ev[f"{name}_tokens"], ev[f"{name}_scored"] = n, count
        ev[f"{name}_nll"], ev[f"{name}_ppl"] = nll / count, math.exp(nll / count)
    with torch.no_grad():
        ref = model(torch.as_tensor(ids[:REF_T])[None]).logits[0].float().numpy()
    ref.astype("<f4").tofile(os.path.join(model_dir, "ref_logits.f32"))
    with open(os.path.join(model_dir, "ref_tokens.txt"), "w") as f:
        f.write(" ".join(map(str, ids[:REF_T])) + "\n")
    with open(os.path.join(model_dir, "eval.json"), "w") as f:
        json.dump(ev, f, indent=1)
    return ev


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("model")
    ap.add_argument("--data", default="zoo-data")
    a = ap.parse_args()
    old = {}
    path = os.path.join(a.model, "eval.json")
    if os.path.exists(path):  # keep the training facts train.py recorded
        with open(path) as f:
            old = {k: v for k, v in json.load(f).items() if not k.startswith(("heldout", "short", "ctx", "stride", "scored"))}
    print(json.dumps(evaluate(a.model, a.data, old)))


if __name__ == "__main__":
    main()
