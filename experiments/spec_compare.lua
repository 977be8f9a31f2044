-- spec_compare.lua - decoding methods x settings on one fixed prompt set, the way
-- Spec-Bench compares them: mean accepted tokens per target forward and speedup
-- over autoregressive decoding measured in the same run on the same prompts.
--
--   llmlab run experiments/spec_compare.lua [--set out=results/spec_compare.h5]
--     [--set reps=3 --set max_new=48 --set batch=1 --set dim=1024 --set layers=8]
--     [--set medusa_heads=FILE]
--   llmlab run experiments/spec_compare.lua --set zoo=models/zoo   # the trained zoo
--
-- Models (made here, seeded):
--   target       a synthetic Llama (dim x layers, vocab 32000, f32)
--   draft_bf16   `llmlab derive`: the whole target rounded to bf16 - half the bytes,
--                agrees often
--   draft_trunc  `llmlab derive`: the target's first layer in bf16 - cheap; with
--                random weights every layer moves the argmax, so it rarely agrees
--   draft_rand   an unrelated 1-layer random model - almost never agrees
-- Prompts: half random tokens, half repetitive (a phrase repeated with small
-- changes), so n-gram methods have something to find.
--
-- With --set zoo=DIR the models are the trained zoo instead (models/zoo/README.md):
-- target DIR/target, the draft DIR/draft, the target's trained Medusa heads, and
-- `prompts` (default 8) held-out prompts of 64 ids cut from DIR/target/heldout_ids.u16
-- (text the models never trained on) at evenly spaced offsets.
--
-- Speedup: each repetition runs every method once, in a rotating order
-- (interleaved, so machine noise hits all methods alike); the table reports the
-- median over repetitions of output tokens/s divided by autoregressive's median.
-- Theory: with measured per-token acceptance a = accepted / (accepted +
-- rejections), a draft of k tokens yields (1 - a^(k+1)) / (1 - a) tokens per
-- target forward (Leviathan et al.), shown beside the measured mean.

local A = llmlab.args
local out = A.out or "results/spec_compare.h5"
local reps = A.reps or 3
local max_new = A.max_new or 48
local batch = A.batch or 1
local dim, layers = A.dim or 1024, A.layers or 8
local root = A.models or "models-synth/spec_compare"

local function synth_once(dir, opts)
  local f = io.open(dir .. "/config.json")
  if f then f:close() return dir end
  opts.dir = dir
  return llmlab.synth(opts)
end

-- Zoo prompts: `n` held-out prompts of 64 ids at evenly spaced offsets.
local function zoo_prompts(file, n)
  local f = assert(io.open(file, "rb"))
  local raw = f:read("a")
  f:close()
  local n_ids, len, out = #raw // 2, 64, {}
  for i = 1, n do
    local at = (i - 1) * ((n_ids - len) // n)
    local p = {}
    for t = 1, len do p[t] = string.unpack("<I2", raw, 2 * (at + t - 1) + 1) end
    out[i] = p
  end
  return out
end

-- Synthetic prompts: 4 random, 4 repetitive.
local function synthetic_prompts()
  local out, seed = {}, 12345
  local function rnd(n) seed = (seed * 1103515245 + 12345) % 2147483648 return seed % n end
  for i = 1, 8 do
    local p, len = {}, 24 + 8 * i
    for t = 1, len do
      if i > 4 and t > 8 and rnd(10) ~= 0 then p[t] = p[t - 8] else p[t] = rnd(32000) end
    end
    out[i] = p
  end
  return out
end

local target_dir, prompts, methods
if A.zoo then
  target_dir = A.zoo .. "/target"
  local draft_dir, heads = A.zoo .. "/draft", A.zoo .. "/target/medusa_lm_head.safetensors"
  prompts = zoo_prompts(target_dir .. "/heldout_ids.u16", A.prompts or 8)
  methods = {
    {"autoregressive", {"autoregressive"}},
    {"spec draft k=2", {"speculative", draft = draft_dir, k = 2}, 2},
    {"spec draft k=4", {"speculative", draft = draft_dir, k = 4}, 4},
    {"spec draft adaptive", {"speculative", draft = draft_dir, k = 2, adaptive = true, k_max = 8}},
    {"self exit=2 k=4", {"self_speculative", exit_layer = 2, k = 4}, 4},
    {"medusa", {"medusa", heads = heads}},
    {"medusa typical", {"medusa", heads = heads, acceptance = "typical"}},
  }
else
  target_dir = synth_once(root .. "/target", {vocab = 32000, dim = dim, layers = layers, heads = dim // 64,
                                               kv_heads = dim // 256, ffn = dim * 11 // 4, seed = 1})
  local trunc_dir = root .. "/draft_trunc"
  if not io.open(trunc_dir .. "/config.json") then llmlab.derive{src = target_dir, dir = trunc_dir, layers = 1, dtype = "bf16"} end
  local bf16_dir = root .. "/draft_bf16"
  if not io.open(bf16_dir .. "/config.json") then llmlab.derive{src = target_dir, dir = bf16_dir, dtype = "bf16"} end
  local rand_dir = synth_once(root .. "/draft_rand", {vocab = 32000, dim = 256, layers = 1, heads = 4, kv_heads = 1,
                                                      ffn = 512, seed = 9})
  prompts = synthetic_prompts()
  methods = {
    {"autoregressive", {"autoregressive"}},
    {"spec bf16 k=2", {"speculative", draft = bf16_dir, k = 2}, 2},
    {"spec bf16 k=4", {"speculative", draft = bf16_dir, k = 4}, 4},
    {"spec bf16 adaptive", {"speculative", draft = bf16_dir, k = 2, adaptive = true, k_max = 8}},
    {"spec trunc k=2", {"speculative", draft = trunc_dir, k = 2}, 2},
    {"spec random k=4", {"speculative", draft = rand_dir, k = 4}, 4},
    {"self exit=2 k=4", {"self_speculative", exit_layer = 2, k = 4}, 4},
    {"self skip k=4", {"self_speculative", skip = "2-" .. (layers - 2), k = 4}, 4},
  }
end
local target = llmlab.model{path = target_dir}
local w = llmlab.workload{prompts = prompts, max_new = max_new}

local registered = {}
for _, p in ipairs(llmlab.plugins()) do registered[p.name] = true end
if registered.prompt_lookup then table.insert(methods, {"prompt_lookup", {"prompt_lookup"}}) end
if registered.lookahead then
  table.insert(methods, {"lookahead 4/4/4", {"lookahead", window = 4, ngram = 4, guess = 4, prompt_ngrams = true}})
end
-- Medusa needs heads for this target: `llmlab synth ... --medusa K` (random) or
-- `llmlab train-medusa -m TARGET --out FILE`; pass --set medusa_heads=FILE.
if A.medusa_heads and not A.zoo then table.insert(methods, {"medusa", {"medusa", heads = A.medusa_heads}}) end

local rf = llmlab.results(out)
os.remove(out)
local tps, acc, stats = {}, {}, {}
for rep = 1, reps do
  for j = 0, #methods - 1 do
    local m = methods[(j + rep - 1) % #methods + 1]      -- rotate the order per repetition
    local e = llmlab.engine{model = target, decoding = m[2], sched = {"continuous", max_batch = batch}, seed = 7}
    local r = e:run(w)
    rf:write(string.format("%s_rep%d", (m[1]:gsub("[^%w]+", "_")), rep), r)
    tps[m[1]] = tps[m[1]] or {}
    table.insert(tps[m[1]], r.summary.output_tok_per_s)
    acc[m[1]] = r.summary.mean_accepted
    stats[m[1]] = r.summary.metrics
  end
end

local function median(t)
  table.sort(t)
  local n = #t
  return n % 2 == 1 and t[(n + 1) // 2] or (t[n // 2] + t[n // 2 + 1]) / 2
end

local base = median(tps["autoregressive"])
print(string.format("\ntarget %s: %d layers, dim %d; batch %d, %d prompts x %d new tokens, %d interleaved reps",
                    target_dir, target.layers, target.dim, batch, #prompts, max_new, reps))
print(string.format("%-22s %9s %9s %9s %8s %9s", "method", "accepted", "theory", "a", "tok/s", "speedup"))
for _, m in ipairs(methods) do
  local s, a_str, th_str = stats[m[1]], "", ""
  if s and s.drafted and s.drafted > 0 and s.rejections then
    local a = s.accepted / math.max(1, s.accepted + s.rejections)
    a_str = string.format("%.3f", a)
    if m[3] then th_str = string.format("%.2f", a < 1 and (1 - a ^ (m[3] + 1)) / (1 - a) or m[3] + 1) end
  end
  local t = median(tps[m[1]])
  print(string.format("%-22s %9.2f %9s %9s %8.1f %8.2fx", m[1], acc[m[1]], th_str, a_str, t, t / base))
end
print("results written to " .. out)
