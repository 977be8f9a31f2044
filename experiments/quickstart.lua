-- quickstart.lua - the tour: make a small synthetic model, generate from it, run a
-- small workload through the plugin engine, and write every metric to HDF5.
--
--   llmlab run experiments/quickstart.lua [--set out=results/quickstart.h5 --set max_new=24]

local out = llmlab.args.out or "results/quickstart.h5"
local max_new = llmlab.args.max_new or 24

-- 1. A seeded random-weight model in Hugging Face layout (config.json + safetensors).
local dir = llmlab.synth{dir = "models-synth/quickstart", preset = "tiny", seed = 1}
local m = llmlab.model{path = dir, backend = "cpu"}
print(string.format("model %s: %d layers, dim %d, vocab %d, %d parameters",
                    dir, m.layers, m.dim, m.vocab, m.params))

-- 2. One plugin of each kind; every parameter not given takes its default.
local e = llmlab.engine{
  model = m,
  decoding = {"autoregressive", temperature = 0},
  attention = {"dense"},
  quant = {"none"},
  sched = {"fcfs", max_batch = 4},
  seed = 42,
}

-- 3. Generation: greedy, then sampled (per-call settings override the plugin's).
local g = e:generate("Hello, llmlab", {max_new = 16, stop_at_eos = false})
print("greedy ids:  " .. table.concat(g.tokens, " "))
local s = e:generate("Hello, llmlab", {max_new = 16, temperature = 0.8, top_p = 0.9, stop_at_eos = false})
print("sampled ids: " .. table.concat(s.tokens, " "))

-- 4. A workload: 8 requests with prompt lengths 8..64, batched 4 at a time.
local w = llmlab.workload{lengths = {8, 16, 24, 32, 40, 48, 56, 64}, max_new = max_new, seed = 7, vocab = m.vocab}
local r = e:run(w)

-- 5. Everything lands in one HDF5 group per run (docs/results-format.md).
os.remove(out)
llmlab.results(out):write("quickstart", r)

print(string.format("\n%-4s %8s %8s %10s %10s", "req", "prompt", "output", "ttft_s", "latency_s"))
for _, q in ipairs(r.requests) do
  print(string.format("%-4d %8d %8d %10.4f %10.4f", q.id, q.prompt_len, q.output_len, q.ttft_s, q.latency_s))
end
local sm = r.summary
print(string.format("\n%d requests, %d output tokens in %.3f s: %.1f tok/s, %d steps, mean accepted %.2f",
                    sm.requests, sm.output_tokens, sm.wall_s, sm.output_tok_per_s, sm.steps, sm.mean_accepted))
print("results written to " .. out)
