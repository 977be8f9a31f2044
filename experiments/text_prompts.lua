-- text_prompts.lua - a text workload: prompts read from a file, run through the
-- engine as text (encoded with the model's tokenizer), plain and wrapped in a chat
-- template, with the generated text printed and every metric written to HDF5;
-- then the perplexity of the same file.  Runs on the quickstart's synthetic model
-- (byte-level tokenizer: no tokenizer.json), or on any model directory via --set model=DIR.
--
--   llmlab run experiments/text_prompts.lua [--set model=DIR --set prompts=FILE
--                                            --set chat=llama-3 --set max_new=24 --set out=FILE.h5]

local prompts = llmlab.args.prompts or "experiments/data/prompts.txt"
local out = llmlab.args.out or "results/text_prompts.h5"
local max_new = llmlab.args.max_new or 24
local chat = llmlab.args.chat or "chatml"

-- 1. The model: the quickstart's synthetic one unless a directory is given.
local dir = llmlab.args.model or llmlab.synth{dir = "models-synth/quickstart", preset = "tiny", seed = 1}
local m = llmlab.model{path = dir}
local tk = m:tokenizer()
print(string.format("model %s: vocab %d; tokenizer %s, %d tokens, bos %s", dir, m.vocab, tk.kind,
                    tk.vocab_size, tostring(tk.bos)))

local e = llmlab.engine{model = m, sched = {"continuous", max_batch = 8}, seed = 1}

-- 2. The prompt file as requests {prompt = "text", max_new = n}; e:run takes the list.
local plain = llmlab.prompts{file = prompts, max_new = max_new}
local r = e:run(plain)
print(string.format("\n%d plain prompts, %d output tokens in %.3f s", r.summary.requests,
                    r.summary.output_tokens, r.summary.wall_s))
for i, q in ipairs(r.requests) do
  print(string.format("[%d] %q -> %q", i, plain[i].prompt, q.text))
end

-- 3. The same prompts as user turns of a chat (the template's text carries the BOS,
--    so these requests are encoded without special tokens: special = false).
local chats = llmlab.prompts{file = prompts, max_new = max_new, chat = chat, system = "Answer in one sentence."}
local rc = e:run(chats)
print(string.format("\nchat template %s: the first prompt is %d tokens:\n%s", chat, rc.requests[1].prompt_len,
                    chats[1].prompt))

-- 4. Perplexity of the prompt file itself (strided windows, docs/perplexity.md).
local f = assert(io.open(prompts, "rb"))
local text = f:read("a")
f:close()
local p = e:perplexity(text, {ctx = 128, stride = 64})
print(string.format("\nperplexity of %s: %.3f (mean NLL %.4f nats over %d tokens, %d windows, %.0f tok/s)",
                    prompts, p.ppl, p.nll, p.tokens, p.windows, p.tok_per_s))

os.remove(out)
llmlab.results(out):write("plain", r)
llmlab.results(out):write("chat", rc)
print("results written to " .. out)
