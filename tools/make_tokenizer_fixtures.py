#!/usr/bin/env python3
"""make_tokenizer_fixtures.py - tokenizer fixtures from the Hugging Face `tokenizers` library.

Trains small BPE tokenizers with the library on a local text corpus, saves their
tokenizer.json files in the layouts the Llama family ships, and records what the
library itself encodes and decodes for a list of hard strings.  llmlab's own
tokenizer must reproduce every id (tests/test_tokenizer.c) and its GGUF vocabulary
conversion must too (tests/test_gguf_vocab.c).

    tests/data/tokenizers/<name>/tokenizer.json
    tests/data/tokenizers/<name>/cases.jsonl     one JSON object per hard string:
        text          the input (valid Unicode; JSON-escaped)
        ids           encode(text, add_special_tokens=False)
        ids_special   encode(text, add_special_tokens=True)
        decoded       decode(ids_special, skip_special_tokens=False)
        decoded_skip  decode(ids_special, skip_special_tokens=True)
    tests/data/tokenizers/VERSIONS.txt           library version, corpus size and hash

The four layouts (each one a place where an implementation can go wrong):

  bytelevel_gpt2    GPT-2: ByteLevel pre-tokenizer with its built-in regex, ByteLevel
                    decoder, no post-processor; added tokens with lstrip, single_word
                    and a non-special normalized one.
  bytelevel_llama3  Llama-3: Split(Llama-3 regex, isolated) + ByteLevel(use_regex=false),
                    ignore_merges, TemplateProcessing with <|begin_of_text|>, chat special
                    tokens.
  bytelevel_qwen2   Qwen2: NFC normalizer, Split(Qwen2 regex: single digits) +
                    ByteLevel(use_regex=false), no BOS, ChatML special tokens.
  sp_llama2         Llama-2 / TinyLlama: SentencePiece-style BPE with byte fallback
                    (<0x00>..<0xFF> in the model vocabulary), fuse_unk, normalizer
                    Prepend("\u2581") + Replace(" ", "\u2581"), no pre-tokenizer, decoder
                    Replace + ByteFallback + Fuse + Strip, TemplateProcessing "<s> $A".
  sp_metaspace      Mistral's newer files: the same model with a Metaspace pre-tokenizer
                    (prepend_scheme "first", split false) instead of the normalizer, and
                    [INST] [/INST] as special added tokens.

The SentencePiece-style merges are not the trainer's: they are regenerated from the
vocabulary the way transformers' converter does for sentencepiece models (and the way
llmlab converts a GGUF "llama" vocabulary): tokens in score order (here: id order,
score = -id), for each token every split into two vocabulary tokens at a character
boundary, the splits of one token ordered by (left id, right id).  Control and byte
tokens are never merge results.  So a GGUF file written from these vocabularies must
encode exactly like the tokenizer.json.

Corpus: Debian's python3.11 standard library .py sources (/usr/lib/python3.11,
sorted, first CORPUS_BYTES bytes; not the running interpreter's own library, which
may live under a user's home and would put that path into the vocabulary) plus
Debian's license texts; its size and SHA-256 go to VERSIONS.txt.  Other Python
or library versions may train differently: regenerate and commit all files together.

    python3 tools/make_tokenizer_fixtures.py [--out DIR] [--merges N]
"""
import argparse
import hashlib
import json
import os

import tokenizers
from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

CORPUS_BYTES = 3_000_000
LLAMA3_PATTERN = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
                  r"|\s*[\r\n]+|\s+(?!\S)|\s+")
QWEN2_PATTERN = LLAMA3_PATTERN.replace(r"\p{N}{1,3}", r"\p{N}")
SPACE = "\u2581"

HARD_STRINGS = [
    "", " ", "  ", "a", "Hello world", " Hello world", "Hello  world ", "hello\n\nworld\n",
    "don't I'LL we've they're she'd you'm THEY'RE",
    "The quick brown fox jumps over the lazy dog.",
    "tabs\tand\t\ttabs\r\nand CRLF\r\n\r\n", "trailing spaces   ", "   leading spaces",
    "\n", "\n\n\n", " \n ", "a\u00a0b\u3000c\u2009d",  # NBSP, ideographic space, thin space
    "1234567890", "3.14159 2,718 1,000,000 007 42nd 1e-9", "x1y22z333w4444",
    "def f(x):\n    return x ** 2  # square\n", "int main(void) { return a[i] != b->c; }",
    "if (a && b || !c) { x += 1; } // comment", "https://example.com/path?q=1&r=%20#frag",
    "\u65e5\u672c\u8a9e\u306e\u30c6\u30ad\u30b9\u30c8\u3067\u3059\u3002",  # Japanese
    "\u4e2d\u6587\u5b57\u7b26\u6d4b\u8bd5", "\ud55c\uad6d\uc5b4 \ud14d\uc2a4\ud2b8",
    "\u0645\u0631\u062d\u0628\u0627 \u0628\u0627\u0644\u0639\u0627\u0644\u0645",  # Arabic
    "\u0928\u092e\u0938\u094d\u0924\u0947 \u0926\u0941\u0928\u093f\u092f\u093e",  # Hindi
    "\u041f\u0440\u0438\u0432\u0435\u0442, \u043c\u0438\u0440! \u0395\u03bb\u03bb\u03b7\u03bd\u03b9\u03ba\u03ac",
    "\u0e2a\u0e27\u0e31\u0e2a\u0e14\u0e35\u0e04\u0e23\u0e31\u0e1a",  # Thai
    "emoji \U0001F600\U0001F680 \U0001F44D\U0001F3FD \U0001F468\u200d\U0001F469\u200d\U0001F467 \U0001F1EB\U0001F1F7",
    "cafe\u0301 caf\u00e9 n\u0303 A\u030a \u212b",  # combining marks, NFC/NFD pairs, Angstrom sign
    "\ufb01 \u2460 \uff21\uff22 \u00bd x\u00b2",  # compatibility characters (NFKC changes them)
    "zero\u200bwidth\u200cjoin\u200d", "\ufeffBOM at start", "a\u0000b", "ctrl\u0001\u0007\u001b[0m",
    "<|endoftext|>", "text<|endoftext|>more", "a <|endoftext|> b", "<|endoftext|><|endoftext|>",
    "<s>", "<s>inside</s> text <unk>", "[INST] question [/INST] answer",
    "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nHi!<|eot_id|>",
    "<|im_start|>system\nYou are helpful.<|im_end|>\n<|im_start|>user\nHi<|im_end|>",
    "x <|mask|> y", "word<|mask|>", "a hello world b", "say hello worlds", "<word> <word>x x<word>",
    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
    " " * 40 + "x", "-" * 64, "=" * 17 + "\n" + "=" * 17,
    "Mixed CASE and camelCaseWords and snake_case_words and SCREAMING_CASE",
    "\u00a9 \u00ae \u2122 \u20ac \u00a3 \u00a5 \u2211 \u222b \u221e \u2248 \u2260 \u2264 \u00b1 \u00d7 \u00f7",
    "\U0001D400\U0001D401 \U00010348 \U0001F9EA",  # 4-byte code points (math bold, Gothic)
]


def gather_corpus():
    stdlib = "/usr/lib/python3.11"
    files = []
    for root, dirs, names in os.walk(stdlib):
        dirs[:] = sorted(d for d in dirs if d not in ("site-packages", "test", "tests", "idlelib", "__pycache__"))
        files += [os.path.join(root, n) for n in sorted(names) if n.endswith(".py")]
    lic = "/usr/share/common-licenses"
    if os.path.isdir(lic):
        files += [os.path.join(lic, n) for n in sorted(os.listdir(lic)) if os.path.isfile(os.path.join(lic, n))]
    text, used = [], 0
    for f in files:
        if used >= CORPUS_BYTES:
            break
        with open(f, "rb") as fh:
            data = fh.read().decode("utf-8", "replace")
        data = data.replace("\x00", "")  # a literal U+0000 token: llmlab refuses such vocabularies
        text.append(data)
        used += len(data.encode("utf-8"))
    # A little non-Latin text so the tokenizers have merges beyond ASCII.
    text += [s for s in HARD_STRINGS[20:40] for _ in range(3)]
    return text


def train_bpe(corpus, pre, vocab_size, special, alphabet=None, limit_alphabet=None, normalizer=None):
    tok = Tokenizer(models.BPE())
    if normalizer is not None:
        tok.normalizer = normalizer
    tok.pre_tokenizer = pre
    kw = dict(vocab_size=vocab_size, special_tokens=special, show_progress=False)
    if alphabet is not None:
        kw["initial_alphabet"] = alphabet
    if limit_alphabet is not None:
        kw["limit_alphabet"] = limit_alphabet
    tok.train_from_iterator(corpus, trainers.BpeTrainer(**kw))
    return tok


def bytelevel_gpt2(corpus, n_merges):
    tok = train_bpe(corpus, pre_tokenizers.ByteLevel(add_prefix_space=False), 256 + 1 + n_merges,
                    ["<|endoftext|>"], alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.decoder = decoders.ByteLevel()
    tok.add_tokens([AddedToken("<|mask|>", lstrip=True, special=True, normalized=False),
                    AddedToken("<word>", single_word=True, special=False, normalized=False),
                    AddedToken("hello world", special=False, normalized=True)])
    return tok


def bytelevel_llama3(corpus, n_merges):
    pre = pre_tokenizers.Sequence([pre_tokenizers.Split(Regex(LLAMA3_PATTERN), behavior="isolated", invert=False),
                                   pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    special = ["<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>",
               "<|im_start|>", "<|im_end|>"]
    tok = train_bpe(corpus, pre, 256 + len(special) + n_merges, special,
                    alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.decoder = decoders.ByteLevel()
    bos = tok.token_to_id("<|begin_of_text|>")
    tok.post_processor = processors.Sequence([
        processors.ByteLevel(trim_offsets=False),
        processors.TemplateProcessing(single="<|begin_of_text|> $A", pair="<|begin_of_text|> $A <|begin_of_text|> $B",
                                      special_tokens=[("<|begin_of_text|>", bos)])])
    data = json.loads(tok.to_str())
    data["model"]["ignore_merges"] = True
    return Tokenizer.from_str(json.dumps(data))


def bytelevel_qwen2(corpus, n_merges):
    pre = pre_tokenizers.Sequence([pre_tokenizers.Split(Regex(QWEN2_PATTERN), behavior="isolated", invert=False),
                                   pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    special = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    tok = train_bpe(corpus, pre, 256 + len(special) + n_merges, special,
                    alphabet=pre_tokenizers.ByteLevel.alphabet(), normalizer=normalizers.NFC())
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    return tok


def spm_merges(vocab, first_mergeable):
    """Merges regenerated from the vocabulary in score (= id) order, as described above."""
    merges = []
    for piece, pid in sorted(vocab.items(), key=lambda kv: kv[1]):
        if pid < first_mergeable:
            continue
        local = []
        for i in range(1, len(piece)):
            left, right = piece[:i], piece[i:]
            if left in vocab and right in vocab:
                local.append((vocab[left], vocab[right], left, right))
        local.sort()
        merges += [[l, r] for _, _, l, r in local]
    return merges


def sentencepiece_model(corpus, n_merges):
    """Trains the shared SentencePiece-style vocabulary; returns (vocab, merges, n_control)."""
    control = ["<unk>", "<s>", "</s>"]
    byte_tokens = ["<0x%02X>" % b for b in range(256)]
    pre = pre_tokenizers.Metaspace(replacement=SPACE, prepend_scheme="first", split=True)
    # limit_alphabet keeps rare characters out of the vocabulary so byte fallback is exercised.
    tok = train_bpe(corpus, pre, len(control) + 256 + 120 + n_merges, control + byte_tokens, limit_alphabet=120)
    data = json.loads(tok.to_str())
    vocab = data["model"]["vocab"]
    for i, t in enumerate(control + byte_tokens):
        assert vocab[t] == i, (t, vocab[t])
    return vocab, spm_merges(vocab, len(control) + 256), control


def sp_tokenizer_json(vocab, merges, control, layout):
    added = [dict(id=vocab[t], content=t, single_word=False, lstrip=False, rstrip=False, normalized=False,
                  special=True) for t in control]
    if layout == "llama2":
        normalizer = {"type": "Sequence", "normalizers": [
            {"type": "Prepend", "prepend": SPACE},
            {"type": "Replace", "pattern": {"String": " "}, "content": SPACE}]}
        pre = None
    else:
        normalizer = None
        pre = {"type": "Metaspace", "replacement": SPACE, "prepend_scheme": "first", "split": False}
    return {
        "version": "1.0", "truncation": None, "padding": None, "added_tokens": added,
        "normalizer": normalizer, "pre_tokenizer": pre,
        "post_processor": {"type": "TemplateProcessing",
                           "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
                           "pair": [{"SpecialToken": {"id": "<s>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                                    {"SpecialToken": {"id": "<s>", "type_id": 1}}, {"Sequence": {"id": "B", "type_id": 1}}],
                           "special_tokens": {"<s>": {"id": "<s>", "ids": [vocab["<s>"]], "tokens": ["<s>"]}}},
        "decoder": {"type": "Sequence", "decoders": [
            {"type": "Replace", "pattern": {"String": SPACE}, "content": " "},
            {"type": "ByteFallback"}, {"type": "Fuse"},
            {"type": "Strip", "content": " ", "start": 1, "stop": 0}]},
        "model": {"type": "BPE", "dropout": None, "unk_token": "<unk>", "continuing_subword_prefix": None,
                  "end_of_word_suffix": None, "fuse_unk": True, "byte_fallback": True, "ignore_merges": False,
                  "vocab": vocab, "merges": merges},
    }


def write_fixture(out, name, tok):
    d = os.path.join(out, name)
    os.makedirs(d, exist_ok=True)
    tok.save(os.path.join(d, "tokenizer.json"), pretty=False)
    # Reload from the file so the cases come from exactly what was written.
    tok = Tokenizer.from_file(os.path.join(d, "tokenizer.json"))
    with open(os.path.join(d, "cases.jsonl"), "w", encoding="utf-8") as f:
        for s in HARD_STRINGS:
            ids = tok.encode(s, add_special_tokens=False).ids
            ids_sp = tok.encode(s, add_special_tokens=True).ids
            case = dict(text=s, ids=ids, ids_special=ids_sp,
                        decoded=tok.decode(ids_sp, skip_special_tokens=False),
                        decoded_skip=tok.decode(ids_sp, skip_special_tokens=True))
            f.write(json.dumps(case, ensure_ascii=True) + "\n")
    print(f"{name}: vocab {tok.get_vocab_size()}, {len(HARD_STRINGS)} cases")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default="tests/data/tokenizers")
    ap.add_argument("--merges", type=int, default=3000)
    a = ap.parse_args()
    corpus = gather_corpus()
    blob = "".join(corpus).encode("utf-8")
    write_fixture(a.out, "bytelevel_gpt2", bytelevel_gpt2(corpus, a.merges))
    write_fixture(a.out, "bytelevel_llama3", bytelevel_llama3(corpus, a.merges))
    write_fixture(a.out, "bytelevel_qwen2", bytelevel_qwen2(corpus, a.merges))
    vocab, merges, control = sentencepiece_model(corpus, a.merges)
    for layout, name in (("llama2", "sp_llama2"), ("metaspace", "sp_metaspace")):
        data = sp_tokenizer_json(vocab, merges, control, layout)
        tok = Tokenizer.from_str(json.dumps(data))
        if layout == "metaspace":
            tok.add_special_tokens([AddedToken("[INST]", special=True, normalized=False),
                                    AddedToken("[/INST]", special=True, normalized=False)])
        write_fixture(a.out, name, tok)
    with open(os.path.join(a.out, "VERSIONS.txt"), "w") as f:
        f.write(f"tokenizers {tokenizers.__version__}\n")
        f.write(f"corpus {len(blob)} bytes sha256 {hashlib.sha256(blob).hexdigest()}\n")


if __name__ == "__main__":
    main()
