#!/usr/bin/env python3
"""write_cards.py - the README card of each zoo model, from what training recorded.

    python3 tools/zoo/write_cards.py [--zoo models/zoo]

Reads config.json, eval.json, train_log.tsv (and medusa_eval.json where present)
of each model directory and writes its README.md: shape, corpus, training, held-out
perplexity, files, how to regenerate.  Figures measured elsewhere (e.g. the draft's
acceptance rate by llmlab) are in models/zoo/README.md, written by hand.
"""
import argparse
import json
import os

CARD = """# zoo/{name}

{what}

| | |
| --- | --- |
| architecture | Llama (LlamaForCausalLM), {layers} layers, dim {dim}, {heads} query / {kv} KV heads (head dim {hd}), FFN {ffn}, tied embeddings |
| vocabulary | {vocab} (byte-level BPE trained on the corpus: tokenizer.json) |
| context | {ctx} positions (RoPE theta {theta}) |
| parameters | {params:,} |
| weights | f16, model.safetensors ({size_mb:.1f} MB) |
| corpus | models/zoo/CORPUS.txt, manifest.tsv (Debian's python3.11 sources, licenses, /usr/share/doc, man pages) |
| training | {steps} steps x {batch} x {seq} tokens = {tokens:,} tokens, AdamW lr {lr} (warmup + cosine), seed {seed}, {device}, {train_min:.0f} min |
| held-out perplexity | **{ppl:.2f}** over {htok:,} held-out ids (windows {ctx_eval}, stride {stride}; heldout_ids.u16) |
| held-out perplexity, first {stok:,} ids | {sppl:.3f} (re-measured by llmlab in tests/test_zoo.c) |
{medusa}
Files: config.json, model.safetensors, tokenizer.json, train_log.tsv (loss curve),
eval.json, heldout_ids.u16, ref_logits.f32 + ref_tokens.txt (PyTorch's logits for
the llmlab comparison){medusa_files}.

Regenerate: `tools/zoo/make_zoo.sh` (all models), or
`python3 tools/zoo/train.py --role {name}` after the corpus and tokenizer steps.
"""

WHAT = {
    "target": "The zoo's target model: the one experiments decode, evict, quantize and serve.",
    "draft": "The zoo's draft model for speculative decoding of `target` (same tokenizer).",
}


def card(zoo, name):
    d = os.path.join(zoo, name)
    with open(os.path.join(d, "config.json")) as f:
        c = json.load(f)
    with open(os.path.join(d, "eval.json")) as f:
        e = json.load(f)
    medusa, medusa_files = "", ""
    mpath = os.path.join(d, "medusa_eval.json")
    if os.path.exists(mpath):
        with open(mpath) as f:
            m = json.load(f)
        acc = ", ".join(f"head {k}: {a:.3f}" for k, a in enumerate(m["heldout_top1"]))
        medusa = (f"| Medusa heads | {m['heads']} heads (1 ResBlock each), medusa_lm_head.safetensors, "
                  f"{m['steps']} steps x {m['batch']} x {m['seq']}, held-out top-1 {acc} |\n")
        medusa_files = ", medusa_lm_head.safetensors + medusa_eval.json + medusa_train_log.tsv"
    hd = c["hidden_size"] // c["num_attention_heads"]
    size = os.path.getsize(os.path.join(d, "model.safetensors")) / 1e6
    text = CARD.format(name=name, what=WHAT.get(name, ""), layers=c["num_hidden_layers"], dim=c["hidden_size"],
                       heads=c["num_attention_heads"], kv=c["num_key_value_heads"], hd=hd,
                       ffn=c["intermediate_size"], vocab=c["vocab_size"], ctx=c["max_position_embeddings"],
                       theta=c.get("rope_theta", 10000.0), params=e["parameters"], size_mb=size, steps=e["steps"],
                       batch=e["batch"], seq=e["seq"], tokens=e["train_tokens"], lr=e["lr"], seed=e["seed"],
                       device=e["device"], train_min=e["train_seconds"] / 60, ppl=e["heldout_ppl"],
                       htok=e["heldout_tokens"], ctx_eval=e["ctx"], stride=e["stride"], stok=e["short_tokens"],
                       sppl=e["short_ppl"], medusa=medusa, medusa_files=medusa_files)
    with open(os.path.join(d, "README.md"), "w") as f:
        f.write(text)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--zoo", default="models/zoo")
    a = ap.parse_args()
    for name in sorted(os.listdir(a.zoo)):
        if os.path.exists(os.path.join(a.zoo, name, "eval.json")):
            card(a.zoo, name)
            print(f"wrote {a.zoo}/{name}/README.md")


if __name__ == "__main__":
    main()
