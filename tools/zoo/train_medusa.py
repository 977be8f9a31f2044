#!/usr/bin/env python3
"""train_medusa.py - Medusa-1 heads for the zoo's target (frozen), in Medusa's layout.

    python3 tools/zoo/train_medusa.py [--data zoo-data] [--model models/zoo/target]
                                      [--heads 4] [--steps N] [--threads N]

Head k (k = 0..K-1) reads the target's final-normed hidden state h_t and predicts
token t + k + 2 (the base LM head predicts t + 1): one ResBlock x + SiLU(W x + b)
(W, b zero at the start, so the block starts as the identity, as Medusa does) and
a vocab projection initialised from the target's LM head.  Loss: sum over heads of
0.8^k x cross-entropy (Medusa's decay), AdamW, cosine schedule, random windows of
the training ids (seeded).  Saved as MODEL/medusa_lm_head.safetensors in f16
with the tensor names docs/decoding/medusa.md lists ({k}.0.linear.weight,
{k}.0.linear.bias, {k}.1.weight), then evaluated from that f16 file: each head's
top-1 accuracy on held-out windows -> MODEL/medusa_eval.json.
"""
import argparse
import json
import math
import os
import time

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from transformers import LlamaForCausalLM


class Head(torch.nn.Module):
    def __init__(self, dim, vocab, lm_weight):
        super().__init__()
        self.linear = torch.nn.Linear(dim, dim)
        torch.nn.init.zeros_(self.linear.weight)
        torch.nn.init.zeros_(self.linear.bias)
        self.out = torch.nn.Linear(dim, vocab, bias=False)
        self.out.weight.data.copy_(lm_weight)

    def forward(self, h):
        return self.out(h + torch.nn.functional.silu(self.linear(h)))


def hidden(model, x):
    with torch.no_grad():
        return model.model(x).last_hidden_state


def head_losses(heads, h, x):
    """Cross-entropy of each head; head k at position t predicts x[t + k + 2]."""
    out = []
    for k, head in enumerate(heads):
        shift = k + 2
        logits = head(h[:, :-shift])
        out.append(torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), x[:, shift:].reshape(-1)))
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default="zoo-data")
    ap.add_argument("--model", default="models/zoo/target")
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--seq", type=int, default=512)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--seed", type=int, default=3)
    ap.add_argument("--threads", type=int, default=0)
    a = ap.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    rng = np.random.default_rng(a.seed)
    train = np.fromfile(os.path.join(a.data, "train.bin"), dtype=np.uint16).astype(np.int64)
    held = np.fromfile(os.path.join(a.data, "heldout.bin"), dtype=np.uint16).astype(np.int64)
    model = LlamaForCausalLM.from_pretrained(a.model, torch_dtype=torch.float32).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    dim, vocab = model.config.hidden_size, model.config.vocab_size
    heads = torch.nn.ModuleList(Head(dim, vocab, model.lm_head.weight) for _ in range(a.heads))
    opt = torch.optim.AdamW(heads.parameters(), lr=a.lr, betas=(0.9, 0.95), weight_decay=0.0)
    t0 = time.time()
    log = open(os.path.join(a.model, "medusa_train_log.tsv"), "w")
    log.write("step\tlr\tloss\t" + "\t".join(f"head{k}_loss" for k in range(a.heads)) + "\tseconds\n")
    for step in range(a.steps):
        lr = a.lr * 0.5 * (1 + math.cos(math.pi * step / a.steps))
        for g in opt.param_groups:
            g["lr"] = lr
        starts = rng.integers(0, len(train) - a.seq - 1, size=a.batch)
        x = torch.as_tensor(np.stack([train[s:s + a.seq] for s in starts]))
        losses = head_losses(heads, hidden(model, x), x)
        loss = sum(0.8 ** k * l for k, l in enumerate(losses))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if step % 25 == 0 or step == a.steps - 1:
            log.write(f"{step}\t{lr:.6g}\t{loss.item():.4f}\t" + "\t".join(f"{l.item():.4f}" for l in losses)
                      + f"\t{time.time() - t0:.1f}\n")
            log.flush()
            print(f"step {step}: " + " ".join(f"{l.item():.3f}" for l in losses), flush=True)
    tensors = {}
    for k, head in enumerate(heads):
        tensors[f"{k}.0.linear.weight"] = head.linear.weight.detach().to(torch.float16).contiguous()
        tensors[f"{k}.0.linear.bias"] = head.linear.bias.detach().to(torch.float16).contiguous()
        tensors[f"{k}.1.weight"] = head.out.weight.detach().to(torch.float16).contiguous()
    path = os.path.join(a.model, "medusa_lm_head.safetensors")
    save_file(tensors, path)
    # Evaluate the saved f16 heads: top-1 accuracy per head on held-out windows.
    saved = load_file(path)
    for k, head in enumerate(heads):
        head.linear.weight.data = saved[f"{k}.0.linear.weight"].float()
        head.linear.bias.data = saved[f"{k}.0.linear.bias"].float()
        head.out.weight.data = saved[f"{k}.1.weight"].float()
    correct, total = [0] * a.heads, [0] * a.heads
    with torch.no_grad():
        for s in range(0, min(len(held), 16384) - a.seq, a.seq):
            x = torch.as_tensor(held[s:s + a.seq])[None]
            h = hidden(model, x)
            for k, head in enumerate(heads):
                shift = k + 2
                pred = head(h[:, :-shift]).argmax(-1)
                correct[k] += (pred == x[:, shift:]).sum().item()
                total[k] += pred.numel()
    ev = dict(heads=a.heads, steps=a.steps, batch=a.batch, seq=a.seq, lr=a.lr, seed=a.seed,
              train_seconds=round(time.time() - t0, 1),
              heldout_top1=[round(c / t, 4) for c, t in zip(correct, total)])
    with open(os.path.join(a.model, "medusa_eval.json"), "w") as f:
        json.dump(ev, f, indent=1)
    print(json.dumps(ev))


if __name__ == "__main__":
    main()
