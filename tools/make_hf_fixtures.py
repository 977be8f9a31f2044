#!/usr/bin/env python3
"""make_hf_fixtures.py - reference fixtures from Hugging Face transformers.

Builds three tiny random-init decoders with transformers, in float32, saves them as
real Hugging Face checkpoints (config.json + model.safetensors) under
tests/data/hf/<name>/, and records what transformers computes for them:

    tokens.txt          24 token ids (space-separated), drawn seeded from the vocab
    logits.f32          logits [T][vocab] of one forward over all 24 ids at positions
                        0..23, raw little-endian float32, row-major
    logits_shape.txt    "T vocab"
    greedy.txt          16 ids that model.generate(do_sample=False) appends to the
                        first 8 ids of tokens.txt (no EOS stop: always 16)
    meta.txt            diagnostics: margins, f32-vs-f64 error, ablation sizes

tests/test_hf_reference.c loads each directory with llmlab's own loader and checks
its forward against logits.f32 and its greedy decode against greedy.txt.

Regenerate (from the repository root; CPU only, a few seconds):

    python3 tools/make_hf_fixtures.py            # writes tests/data/hf/
    python3 tools/make_hf_fixtures.py --out DIR  # somewhere else

The output is deterministic for a given torch/transformers version (both are
printed and written to tests/data/hf/VERSIONS.txt); other versions may change the
random draws, which is fine: regenerate and commit all files together.

Why these shapes (each one targets a place where a loader/forward can go wrong):

  llama    LlamaForCausalLM, hidden 64, 4 heads, 2 KV heads (GQA: each KV head is
           shared by 2 query heads, repeated in order), head_dim 16, 2 layers,
           intermediate 160, vocab 251 (prime: not a multiple of 8/16, catches
           vector-width assumptions on the LM-head rows), untied LM head,
           rope_theta 500000 with llama3 rope scaling {factor 8, low 1, high 4,
           original_max_position_embeddings 64}, max_position_embeddings 256.
           With head_dim 16 and theta 5e5 the 8 RoPE wavelengths are 6.3, 32.5,
           168, ... tokens, so one frequency sits in the smooth-interpolation band
           (16..64) and six are divided by 8: the 24-token test sees llama3
           scaling (meta.txt reports how far plain RoPE would be off).
  mistral  MistralForCausalLM, hidden 64, 4 heads, 1 KV head (MQA), head_dim 32
           given explicitly (4*32 = 128 != 64: q/o projections are not square),
           2 layers, intermediate 100 (not a multiple of 8: reduction tails in the
           down projection), vocab 300, tied embeddings (safetensors holds no
           lm_head.weight), rope_theta 10000, no sliding window.
  qwen2    Qwen2ForCausalLM, hidden 128, 2 heads, 2 KV heads (plain MHA), head_dim
           64, q/k/v biases, 2 layers, intermediate 72, vocab 320, rope_theta 1e6,
           tied embeddings (as the small Qwen2 checkpoints; keeps the file small).

Weights: transformers' default init is degenerate for a test (RMSNorm weights all
ones, biases zero, std 0.02 so logits are nearly flat and argmax is a coin toss).
We overwrite every parameter: linear layers N(0, 1/fan_in) (q/k twice that std so
attention is not uniform), norms 1 + 0.1*N(0,1), biases 0.3*N(0,1), embeddings
and LM head N(0, 4/hidden) so logits spread over a few units (tied or not).  The script then
checks that every argmax (prefill rows and greedy steps) wins by a clear margin
(>= 1e-2), so f32 rounding differences cannot flip it, and re-draws otherwise.

config.json: transformers 5 writes RoPE settings only as "rope_parameters"
{rope_type, rope_theta, ...}; checkpoints on the Hub (and transformers 4) use
top-level "rope_theta" and "rope_scaling".  We add the classic keys next to the
new ones (same values), plus "torch_dtype", so the file reads like both; the
reference is computed from the checkpoint as reloaded from disk.
"""
import argparse
import json
import os
import shutil
import sys

import numpy as np
import torch
import transformers
import safetensors
from transformers import (LlamaConfig, LlamaForCausalLM, MistralConfig, MistralForCausalLM,
                          Qwen2Config, Qwen2ForCausalLM)

T = 24          # tokens of the logits test
PREFIX = 8      # greedy: prompt length
NEW = 16        # greedy: generated tokens
MIN_MARGIN = 1e-2


def specs():
    return [
        dict(name="llama", seed=1234, cls=LlamaForCausalLM,
             cfg=LlamaConfig(hidden_size=64, num_attention_heads=4, num_key_value_heads=2,
                             num_hidden_layers=2, intermediate_size=160, vocab_size=251,
                             max_position_embeddings=256, rope_theta=500000.0,
                             rope_scaling={"rope_type": "llama3", "factor": 8.0,
                                           "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                                           "original_max_position_embeddings": 64},
                             rms_norm_eps=1e-5, tie_word_embeddings=False,
                             bos_token_id=1, eos_token_id=2)),
        dict(name="mistral", seed=2345, cls=MistralForCausalLM,
             cfg=MistralConfig(hidden_size=64, num_attention_heads=4, num_key_value_heads=1,
                               head_dim=32, num_hidden_layers=2, intermediate_size=100,
                               vocab_size=300, max_position_embeddings=512, rope_theta=10000.0,
                               sliding_window=None, rms_norm_eps=1e-6,
                               tie_word_embeddings=True, bos_token_id=1, eos_token_id=2)),
        dict(name="qwen2", seed=3456, cls=Qwen2ForCausalLM,
             cfg=Qwen2Config(hidden_size=128, num_attention_heads=2, num_key_value_heads=2,
                             head_dim=64, num_hidden_layers=2, intermediate_size=72,
                             vocab_size=320, max_position_embeddings=1024,
                             rope_theta=1000000.0, rms_norm_eps=1e-6,
                             tie_word_embeddings=True, use_sliding_window=False,
                             bos_token_id=1, eos_token_id=2)),
    ]


def perturb(model, gen):
    """Overwrites every parameter with a non-degenerate random draw."""
    with torch.no_grad():
        dim = model.config.hidden_size
        for name, p in model.named_parameters():
            if name.endswith("norm.weight"):
                p.copy_(1.0 + 0.1 * torch.randn(p.shape, generator=gen))
            elif name.endswith(".bias"):
                p.copy_(0.3 * torch.randn(p.shape, generator=gen))
            elif name.endswith("embed_tokens.weight") or name.endswith("lm_head.weight"):
                # Final-normed hidden rows have norm ~sqrt(dim): logits ~ N(0, 2^2).
                p.copy_(torch.randn(p.shape, generator=gen) * (2.0 / dim ** 0.5))
            elif p.dim() == 2:
                gain = 2.0 if (".q_proj." in name or ".k_proj." in name) else 1.0
                p.copy_(torch.randn(p.shape, generator=gen) * (gain / p.shape[1] ** 0.5))
            else:
                raise RuntimeError("unexpected parameter " + name)


def classic_keys(path):
    """Adds Hub-style rope_theta / rope_scaling / torch_dtype next to rope_parameters."""
    with open(path) as f:
        cfg = json.load(f)
    rp = cfg.get("rope_parameters") or {}
    if "rope_theta" in rp:
        cfg["rope_theta"] = rp["rope_theta"]
    if rp.get("rope_type", "default") != "default":
        cfg["rope_scaling"] = {k: v for k, v in rp.items() if k != "rope_theta"}
    cfg["torch_dtype"] = "float32"
    with open(path, "w") as f:
        json.dump(cfg, f, indent=2, sort_keys=True)
        f.write("\n")


def load(cls, d, dtype):
    m = cls.from_pretrained(d, dtype=dtype, attn_implementation="eager")
    m.eval()
    return m


def logits_of(model, ids):
    with torch.no_grad():
        pos = torch.arange(len(ids)).unsqueeze(0)
        return model(input_ids=torch.tensor([ids]), position_ids=pos).logits[0]


def margin(row):
    top = torch.topk(row.double(), 2).values
    return float(top[0] - top[1])


def greedy(model, prompt):
    """model.generate with no EOS stop, checked against a recompute-everything loop."""
    gc = transformers.GenerationConfig(do_sample=False, max_new_tokens=NEW, min_new_tokens=0,
                                       eos_token_id=None, pad_token_id=0,
                                       bos_token_id=model.config.bos_token_id)
    with torch.no_grad():
        out = model.generate(torch.tensor([prompt]), generation_config=gc,
                             attention_mask=torch.ones(1, len(prompt), dtype=torch.long))
    new = out[0, len(prompt):].tolist()
    assert len(new) == NEW, new
    seq, margins = list(prompt), []
    for _ in range(NEW):
        row = logits_of(model, seq)[-1]
        margins.append(margin(row))
        seq.append(int(torch.argmax(row)))
    assert seq[len(prompt):] == new, (seq[len(prompt):], new)
    return new, min(margins)


def build(spec, root):
    d = os.path.join(root, spec["name"])
    cfg = spec["cfg"]
    for attempt in range(20):
        seed = spec["seed"] + 1000 * attempt
        torch.manual_seed(seed)
        gen = torch.Generator().manual_seed(seed)
        model = spec["cls"](cfg).float().eval()
        perturb(model, gen)
        if model.config.tie_word_embeddings:
            assert model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()
        ids = torch.randint(0, cfg.vocab_size, (T,), generator=gen).tolist()

        if os.path.isdir(d):
            shutil.rmtree(d)
        model.save_pretrained(d, safe_serialization=True)
        gpath = os.path.join(d, "generation_config.json")
        if os.path.exists(gpath):
            os.remove(gpath)
        # llama stays in transformers-5 form (rope_parameters only) so both config
        # dialects are covered; mistral and qwen2 also carry the classic keys.
        if spec["name"] != "llama":
            classic_keys(os.path.join(d, "config.json"))

        m32 = load(spec["cls"], d, torch.float32)
        lg = logits_of(m32, ids)
        pm = min(margin(lg[t]) for t in range(T))
        new, gm = greedy(m32, ids[:PREFIX])
        if pm >= MIN_MARGIN and gm >= MIN_MARGIN:
            break
        print("  %s seed %d: margins %.3g / %.3g too small, re-drawing" % (spec["name"], seed, pm, gm))
    else:
        raise RuntimeError("no seed gave clear argmax margins for " + spec["name"])

    # f32 reference vs f64: the size of f32 rounding error in this very forward.
    m64 = load(spec["cls"], d, torch.float64)
    lg64 = logits_of(m64, ids)
    err64 = float((lg.double() - lg64).abs().max())
    # Ablations: how far the logits move when a feature is dropped, so a forward that
    # forgets it cannot pass the tolerance by accident.
    abl = {}
    with torch.no_grad():
        if cfg.model_type == "llama":
            c = json.load(open(os.path.join(d, "config.json")))
            c2 = LlamaConfig(**{**c, "rope_scaling": None,
                                "rope_parameters": {"rope_type": "default", "rope_theta": 500000.0}})
            mp = LlamaForCausalLM(c2).float().eval()
            mp.load_state_dict(m32.state_dict())
            mp.config._attn_implementation = "eager"
            abl["no_llama3_scaling"] = float((logits_of(mp, ids) - lg).abs().max())
        bias = [p for n, p in m32.named_parameters() if n.endswith(".bias")]
        if bias:
            saved = [b.clone() for b in bias]
            for b in bias:
                b.zero_()
            abl["zero_qkv_bias"] = float((logits_of(m32, ids) - lg).abs().max())
            for b, s in zip(bias, saved):
                b.copy_(s)
        # All positions 0: how much RoPE matters at all.
        lp = m32(input_ids=torch.tensor([ids]), position_ids=torch.zeros(1, T, dtype=torch.long)).logits[0]
        abl["no_rope"] = float((lp - lg).abs().max())
        # GQA with the wrong head->KV-head map (h % n_kv instead of h // group): swap
        # query heads 1 and 2 (q rows and o columns), which leaves the model the same
        # except that each of those heads now reads the other KV head.
        c = m32.config
        if c.num_key_value_heads > 1 and c.num_attention_heads // c.num_key_value_heads == 2:
            hd = getattr(c, "head_dim", None) or c.hidden_size // c.num_attention_heads
            perm = list(range(c.num_attention_heads))
            perm[1], perm[2] = 2, 1
            idx = torch.cat([torch.arange(h * hd, (h + 1) * hd) for h in perm])
            sd = {k: v.clone() for k, v in m32.state_dict().items()}
            for layer in m32.model.layers:
                a = layer.self_attn
                a.q_proj.weight.copy_(a.q_proj.weight[idx])
                if a.q_proj.bias is not None:
                    a.q_proj.bias.copy_(a.q_proj.bias[idx])
                a.o_proj.weight.copy_(a.o_proj.weight[:, idx])
            abl["gqa_kv_map_h_mod_nkv"] = float((logits_of(m32, ids) - lg).abs().max())
            m32.load_state_dict(sd)
            assert float((logits_of(m32, ids) - lg).abs().max()) == 0.0

    np.asarray(lg.numpy(), dtype="<f4").tofile(os.path.join(d, "logits.f32"))
    with open(os.path.join(d, "logits_shape.txt"), "w") as f:
        f.write("%d %d\n" % tuple(lg.shape))
    with open(os.path.join(d, "tokens.txt"), "w") as f:
        f.write(" ".join(map(str, ids)) + "\n")
    with open(os.path.join(d, "greedy.txt"), "w") as f:
        f.write(" ".join(map(str, new)) + "\n")
    with open(os.path.join(d, "meta.txt"), "w") as f:
        f.write("seed %d\n" % seed)
        f.write("logits_absmax %.6g\n" % float(lg.abs().max()))
        f.write("prefill_min_argmax_margin %.6g\n" % pm)
        f.write("greedy_min_argmax_margin %.6g\n" % gm)
        f.write("f32_vs_f64_max_abs_diff %.6g\n" % err64)
        for k, v in abl.items():
            f.write("ablation_%s_max_abs_diff %.6g\n" % (k, v))
    for x in os.listdir(d):
        os.chmod(os.path.join(d, x), 0o644)  # save_pretrained writes 0600
    size = sum(os.path.getsize(os.path.join(d, x)) for x in os.listdir(d))
    print("%-8s seed %d  |logits|max %.3g  margins %.3g/%.3g  f32-f64 %.3g  %s  %d bytes" %
          (spec["name"], seed, float(lg.abs().max()), pm, gm, err64,
           " ".join("%s=%.3g" % kv for kv in abl.items()), size))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    here = os.path.dirname(os.path.abspath(__file__))
    ap.add_argument("--out", default=os.path.join(here, "..", "tests", "data", "hf"))
    a = ap.parse_args()
    torch.set_num_threads(1)  # fixed reduction order on CPU
    root = os.path.abspath(a.out)
    os.makedirs(root, exist_ok=True)
    ver = ("python %s\ntorch %s\ntransformers %s\nsafetensors %s\nnumpy %s\n" %
           (sys.version.split()[0], torch.__version__, transformers.__version__,
            safetensors.__version__, np.__version__))
    print(ver, end="")
    with open(os.path.join(root, "VERSIONS.txt"), "w") as f:
        f.write(ver)
    for s in specs():
        build(s, root)


if __name__ == "__main__":
    main()
