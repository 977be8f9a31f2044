-- kv_budget_sweep.lua - attention/KV policies x KV budgets, measured against dense
-- attention on the same tokens, teacher-forced (docs/attention/fidelity.md), the
-- way kvpress compares presses by score against compression ratio.
--
--   llmlab run experiments/kv_budget_sweep.lua [--set out=results/kv_budget_sweep.h5]
--     [--set len=512 --set texts=4 --set prefix=256 --set budgets=0.1,0.2,0.5]
--     [--set model=DIR]  (default: a synthetic Llama made here, seeded)
--
-- Every text has `len` tokens; the first `prefix` are the prompt (prefilled), the
-- rest are scored one token per step, so policies evict between tokens exactly as
-- in decoding.  A budget b is a fraction of the context `len`: each policy keeps
-- about b * len tokens per KV head (SnapKV compresses the prompt only: b * prefix).
-- Figures per (policy, budget): mean KL(dense || policy) in nats, top-1 agreement,
-- perplexity of the text under the policy (and dense), scored tokens/s, and the
-- mean/max resident KV bytes over the steps; each run also goes to the HDF5 file.
--
-- Synthetic weights: random models have no learned attention sinks or heavy
-- hitters, so this shows the machinery and memory, not the StreamingLLM finding;
-- run it with --set model=DIR on a trained model for that.

local A = llmlab.args
local out = A.out or "results/kv_budget_sweep.h5"
local len, n_texts = A.len or 512, A.texts or 4
local prefix = A.prefix or len // 2
local budgets = {}
for b in tostring(A.budgets or "0.1,0.2,0.5"):gmatch("[^,]+") do budgets[#budgets + 1] = tonumber(b) end

local model_dir = A.model
if not model_dir then
  model_dir = "models-synth/kv_budget_sweep"
  local f = io.open(model_dir .. "/config.json")
  if f then f:close()
  else llmlab.synth{dir = model_dir, vocab = 4096, dim = 256, layers = 4, heads = 8, kv_heads = 4, ffn = 704,
                    seed = 5} end
end
local model = llmlab.model{path = model_dir}
local workload = llmlab.workload{lengths = (function() local t = {} for i = 1, n_texts do t[i] = len end return t end)(),
                                 max_new = 1, seed = 11, vocab = model.vocab}

-- Each policy as a function of the per-head token budget k (and the prompt length).
local policies = {
  {"window", function(k) return {"window", window = k} end},
  {"sinks original", function(k) return {"sinks", sinks = 4, window = k - 4, positions = "original"} end},
  {"sinks shifted", function(k) return {"sinks", sinks = 4, window = k - 4, positions = "shifted"} end},
  {"h2o", function(k) return {"h2o", heavy = k // 2, recent = k - k // 2} end},
  {"tova", function(k) return {"tova", budget = k} end},
  {"snapkv", function(k, kp) return {"snapkv", window = math.min(16, kp // 2), budget = math.max(kp, math.min(16, kp // 2) + 1)} end},
  {"longformer", function(k) return {"sparse", pattern = "longformer", block = 16, global = 1,
                                     window = math.max(1, k // 16 - 1)} end},
  {"bigbird", function(k) return {"sparse", pattern = "bigbird", block = 16, global = 1,
                                  window = math.max(1, k // 16 - 3), random = 2, seed = 1} end},
}

local res = llmlab.results(out)
local stamp = os.date("!%Y%m%dT%H%M%S")
print(string.format("kv_budget_sweep: %s, %d texts x %d tokens, prefix %d", model_dir, n_texts, len, prefix))
print(string.format("%-16s %6s %10s %7s %9s %9s %9s %11s", "policy", "budget", "KL", "top-1", "ppl",
                    "ppl dense", "tok/s", "KV MB mean"))
for _, b in ipairs(budgets) do
  local k = math.max(8, math.floor(b * len + 0.5))
  local kp = math.max(2, math.floor(b * prefix + 0.5))
  for _, p in ipairs(policies) do
    local r = llmlab.fidelity{model = model, attention = p[2](k, kp), workload = workload, prefix = prefix,
                              kv_tokens = n_texts * (len + 64), token_budget = math.max(512, prefix),
                              per_token = false}
    print(string.format("%-16s %6.2f %10.5f %7.3f %9.2f %9.2f %9.1f %11.2f", p[1], b, r.kl, r.top1, r.ppl,
                        r.ppl_dense, r.tok_per_s, r.kv_bytes_mean / 1e6))
    res:write(string.format("%s-%s-b%.2f", stamp, p[1]:gsub(" ", "_"), b), r)
  end
end
print("written to " .. out)
