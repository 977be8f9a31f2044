#!/usr/bin/env python3
"""train_tokenizer.py - the zoo's tokenizer: byte-level BPE trained on the corpus.

Llama-3's layout (tests/data/tokenizers/bytelevel_llama3 is the same shape): the
Llama-3 split regex, the byte-to-unicode map, ignore_merges, and a post-processor
that puts <|begin_of_text|> first.  Special tokens: <|begin_of_text|> (BOS, id 0)
and <|end_of_text|> (EOS, id 1), which also separates documents in training.
Vocabulary VOCAB (4096: 256 bytes, 2 specials, the rest merges), seeded only by
the corpus (the trainer is deterministic).  Writes tokenizer.json and the corpus
as token ids (train.bin, heldout.bin: uint16, documents as BOS doc EOS).

    python3 tools/zoo/train_tokenizer.py [--data zoo-data] [--vocab 4096]
"""
import argparse
import json
import os

import numpy as np
from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, processors, trainers

LLAMA3_PATTERN = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
                  r"|\s*[\r\n]+|\s+(?!\S)|\s+")
BOS, EOS = "<|begin_of_text|>", "<|end_of_text|>"


def documents(path):
    with open(path, encoding="utf-8") as f:
        return [d for d in f.read().split("\n\f\n") if d.strip()]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default="zoo-data")
    ap.add_argument("--vocab", type=int, default=4096)
    a = ap.parse_args()
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(LLAMA3_PATTERN), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    tok.decoder = decoders.ByteLevel()
    train_docs = documents(os.path.join(a.data, "train.txt"))
    tok.train_from_iterator(train_docs, trainers.BpeTrainer(vocab_size=a.vocab, special_tokens=[BOS, EOS],
                                                            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                                            show_progress=False))
    tok.post_processor = processors.Sequence([
        processors.ByteLevel(trim_offsets=False),
        processors.TemplateProcessing(single=f"{BOS} $A", pair=f"{BOS} $A {BOS} $B",
                                      special_tokens=[(BOS, tok.token_to_id(BOS))])])
    data = json.loads(tok.to_str())
    data["model"]["ignore_merges"] = True
    tok = Tokenizer.from_str(json.dumps(data))
    tok.save(os.path.join(a.data, "tokenizer.json"), pretty=False)
    eos = tok.token_to_id(EOS)
    for split in ("train", "heldout"):
        docs = documents(os.path.join(a.data, split + ".txt"))
        ids = []
        for enc in tok.encode_batch(docs, add_special_tokens=True):
            ids += enc.ids + [eos]
        np.asarray(ids, dtype=np.uint16).tofile(os.path.join(a.data, split + ".bin"))
        print(f"{split}: {len(docs)} documents, {len(ids)} tokens, "
              f"{sum(len(d.encode()) for d in docs) / len(ids):.2f} bytes/token")


if __name__ == "__main__":
    main()
