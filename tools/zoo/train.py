#!/usr/bin/env python3
"""train.py - trains one zoo model (Llama architecture) on the corpus token ids.

    python3 tools/zoo/train.py --role target|draft [--data zoo-data] [--out models/zoo]
                               [--steps N] [--threads N] [--device cpu|cuda]

Roles (shapes in ROLES below): `target` (6 layers, dim 256, GQA 4/2 heads, context
1024) and `draft` (2 layers, dim 192, same tokenizer).  Training: random windows of
SEQ tokens from train.bin (seeded), AdamW (betas 0.9/0.95, weight decay 0.1 on
matrices), linear warmup then cosine decay to 10%, f32 on the CPU (bf16 autocast on
a GPU), gradient clipping 1.0.  Every EVAL_EVERY steps the loss on a fixed held-out
slice is logged.  At the end the model is saved in Hugging Face layout in f16
(config.json + model.safetensors + the corpus tokenizer.json) and evaluated from that
f16 file by evaluate.py (held-out perplexity, reference logits), so the figures are
those of the committed weights.

Outputs in OUT/ROLE/: config.json, model.safetensors, tokenizer.json, train_log.tsv
(step, tokens, lr, train loss, held-out loss, seconds), and evaluate.py's files.
"""
import argparse
import json
import math
import os
import shutil
import time

import numpy as np
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from evaluate import CTX, evaluate

ROLES = {
    "target": dict(hidden_size=256, intermediate_size=768, num_hidden_layers=6, num_attention_heads=4,
                   num_key_value_heads=2, steps=600, batch=8, seq=1024, lr=2e-3, seed=1),
    "draft": dict(hidden_size=192, intermediate_size=512, num_hidden_layers=2, num_attention_heads=3,
                  num_key_value_heads=1, steps=600, batch=8, seq=1024, lr=3e-3, seed=2),
}
EVAL_EVERY = 50


def config_for(role, vocab, bos, eos):
    r = ROLES[role]
    return LlamaConfig(vocab_size=vocab, hidden_size=r["hidden_size"], intermediate_size=r["intermediate_size"],
                       num_hidden_layers=r["num_hidden_layers"], num_attention_heads=r["num_attention_heads"],
                       num_key_value_heads=r["num_key_value_heads"], max_position_embeddings=CTX,
                       rms_norm_eps=1e-5, rope_theta=10000.0, tie_word_embeddings=True,
                       bos_token_id=bos, eos_token_id=eos, hidden_act="silu", attention_bias=False)


def lr_at(step, steps, peak):
    warm = max(1, steps // 20)
    if step < warm:
        return peak * (step + 1) / warm
    p = (step - warm) / max(1, steps - warm)
    return peak * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * p)))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--role", choices=sorted(ROLES), required=True)
    ap.add_argument("--data", default="zoo-data")
    ap.add_argument("--out", default="models/zoo")
    ap.add_argument("--steps", type=int, default=0, help="override the role's step count")
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    a = ap.parse_args()
    r = dict(ROLES[a.role])
    if a.steps:
        r["steps"] = a.steps
    if a.threads:
        torch.set_num_threads(a.threads)
    torch.manual_seed(r["seed"])
    rng = np.random.default_rng(r["seed"])
    train = np.fromfile(os.path.join(a.data, "train.bin"), dtype=np.uint16).astype(np.int64)
    held = np.fromfile(os.path.join(a.data, "heldout.bin"), dtype=np.uint16).astype(np.int64)
    with open(os.path.join(a.data, "tokenizer.json")) as f:
        tj = json.load(f)
    vocab = max(max(tj["model"]["vocab"].values()), max(t["id"] for t in tj["added_tokens"])) + 1
    bos = tj["model"]["vocab"].get("<|begin_of_text|>", 0)
    eos = tj["model"]["vocab"].get("<|end_of_text|>", 1)
    cfg = config_for(a.role, vocab, bos, eos)
    model = LlamaForCausalLM(cfg).to(a.device)
    params = sum(p.numel() for p in model.parameters())
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": no_decay, "weight_decay": 0.0}],
                            lr=r["lr"], betas=(0.9, 0.95), eps=1e-8)
    out = os.path.join(a.out, a.role)
    os.makedirs(out, exist_ok=True)
    log = open(os.path.join(out, "train_log.tsv"), "w")
    log.write("step\ttokens\tlr\ttrain_loss\theldout_loss\tseconds\n")
    eval_x = torch.as_tensor(held[:4 * 512].reshape(4, 512), device=a.device)
    seq, batch, t0 = r["seq"], r["batch"], time.time()
    print(f"{a.role}: {params / 1e6:.2f}M parameters, {r['steps']} steps of {batch}x{seq} tokens on {a.device}",
          flush=True)
    for step in range(r["steps"]):
        starts = rng.integers(0, len(train) - seq - 1, size=batch)
        x = torch.as_tensor(np.stack([train[s:s + seq] for s in starts]), device=a.device)
        for g in opt.param_groups:
            g["lr"] = lr_at(step, r["steps"], r["lr"])
        with torch.autocast(a.device, dtype=torch.bfloat16, enabled=a.device == "cuda"):
            loss = model(x, labels=x).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        if step % EVAL_EVERY == 0 or step == r["steps"] - 1:
            model.eval()
            with torch.no_grad():
                hl = model(eval_x, labels=eval_x).loss.item()
            model.train()
            dt = time.time() - t0
            log.write(f"{step}\t{(step + 1) * batch * seq}\t{opt.param_groups[0]['lr']:.6g}\t{loss.item():.4f}"
                      f"\t{hl:.4f}\t{dt:.1f}\n")
            log.flush()
            print(f"step {step}: train {loss.item():.3f} heldout {hl:.3f} ({dt:.0f} s)", flush=True)
    train_s = time.time() - t0
    # Save in f16, then evaluate the saved weights (upcast to f32) so the figures are the committed model's.
    model.to(torch.float16).save_pretrained(out, safe_serialization=True)
    shutil.copy(os.path.join(a.data, "tokenizer.json"), os.path.join(out, "tokenizer.json"))
    for extra in ("generation_config.json",):
        if os.path.exists(os.path.join(out, extra)):
            os.remove(os.path.join(out, extra))
    ev = dict(role=a.role, parameters=params, steps=r["steps"], batch=batch, seq=seq, lr=r["lr"], seed=r["seed"],
              train_tokens=r["steps"] * batch * seq, train_seconds=round(train_s, 1), device=a.device)
    ev = evaluate(out, a.data, ev)
    print(json.dumps(ev))


if __name__ == "__main__":
    main()
