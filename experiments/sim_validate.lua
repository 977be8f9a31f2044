-- sim_validate.lua - the simulated executor against the real CPU engine near
-- saturation (docs/serving.md "Simulator and cost model", validation).
--
--   llmlab run experiments/sim_validate.lua [--set model=DIR] [--set threads=1]
--     [--set profile=FILE] [--set n=80] [--set sched=continuous] [--set reps=5] [--set fastest=1]
--     [--set out=results/sim_validate.h5]
--
-- 1. Profile the model on this machine (llmlab.profile: a grid of forwards plus a
--    short engine run for the overhead around them), unless profile=FILE is given.
-- 2. Find saturation on the simulator: Poisson workloads of n requests at rising
--    rates; the achieved request throughput (completed / duration) flattens at the
--    capacity.  Check it on the real engine at 0.5x, 0.9x and 1.5x of that rate.
-- 3. At 0.9x: the same request list on the real engine (twice, for the noise floor
--    of the real clock) and on the simulator; compare p50/p99 TTFT and TPOT, mean
--    E2E and the run's duration, and the cost model's per-iteration error on the
--    real run's steps (llmlab.step_error).  Every run goes to the HDF5 file.
--
-- Timing on a shared machine is noisy: run it on an otherwise idle one.

local A = llmlab.args
local out = A.out or "results/sim_validate.h5"
local n, sched = tonumber(A.n or 80), A.sched or "continuous"
local model = llmlab.model{path = A.model or "models/zoo/target", threads = tonumber(A.threads or 1)}
local eng = {kv_tokens = 16384, max_seqs = 16, token_budget = 256}
local results = llmlab.results(out)

local profile = A.profile
if not profile then
  profile = out:gsub("%.h5$", "") .. "_profile.json"
  local p = llmlab.profile{model = model, out = profile, reps = tonumber(A.reps or 5), fastest = A.fastest ~= nil}
  print(string.format("profile: %d points, fit error %.1f%% (R^2 %.3f); c0 %.3g s, prefill %.3g s/token, "
                      .. "decode %.3g s/seq, kv %.3g s/token, attn %.3g s/pair; engine overhead %.3g s + %.3g s/seq "
                      .. "-> %s", #p.samples, 100 * p.fit_mape, p.fit_r2, p.c0_s, p.prefill_token_s, p.decode_seq_s,
                      p.decode_kv_token_s, p.prefill_attn_pair_s, p.overhead_c0_s, p.overhead_decode_s, profile))
end

local function workload(rate)
  return llmlab.workload{model = model, n = n, seed = 7, arrival = "poisson", rate = rate,
                         prompt_len = {"uniform", 32, 256}, output_len = {"uniform", 16, 128}}
end

local function simulate(w)
  return llmlab.simulate{model = model, profile = profile, sched = sched, workload = w, kv_tokens = eng.kv_tokens,
                         max_seqs = eng.max_seqs, token_budget = eng.token_budget, requests = false}
end

local engine = llmlab.engine{model = model, sched = sched, kv_tokens = eng.kv_tokens, max_seqs = eng.max_seqs,
                             token_budget = eng.token_budget}

-- 2. saturation
print(string.format("\n%-10s %-9s %12s %12s", "executor", "rate/s", "achieved/s", "output tok/s"))
local cap, rate = 0, 0.25
while rate < 1e4 do
  local s = simulate(workload(rate))
  print(string.format("%-10s %-9.3g %12.3f %12.1f", "sim", rate, s.serving.req_per_s, s.serving.output_tok_per_s))
  if s.serving.req_per_s > cap then cap = s.serving.req_per_s end
  if s.serving.req_per_s < 0.7 * rate then break end
  rate = rate * 1.5
end
print(string.format("simulated capacity: %.3f requests/s", cap))
for _, f in ipairs{0.5, 1.5} do
  local r = engine:run(workload(f * cap))
  print(string.format("%-10s %-9.3g %12.3f %12.1f", "real", f * cap, r.serving.req_per_s, r.serving.output_tok_per_s))
  results:write(string.format("real_%.1fx", f), r)
end

-- 3. near saturation
local w = workload(0.9 * cap)
local real = engine:run(w)
local real2 = engine:run(w)
local sim = simulate(w)
results:write("real_0.9x", real)
results:write("real_0.9x_again", real2)
results:write("sim_0.9x", sim)
local se = llmlab.step_error{result = real, model = model, profile = profile}

local function row(name, key, stat)
  local a, b, c = real.serving[key][stat], real2.serving[key][stat], sim.serving[key][stat]
  print(string.format("%-14s %12.4f %12.4f %12.4f %9.1f%% %9.1f%%", name, a, b, c, 100 * (c - a) / a,
                      100 * (b - a) / a))
end
print(string.format("\nat %.3f requests/s (0.9x capacity), %d requests, sched %s", 0.9 * cap, n, sched))
print(string.format("%-14s %12s %12s %12s %10s %10s", "metric (s)", "real", "real again", "sim", "sim err",
                    "real noise"))
row("TTFT p50", "ttft", "p50")
row("TTFT p99", "ttft", "p99")
row("TPOT p50", "tpot", "p50")
row("TPOT p99", "tpot", "p99")
row("ITL p99", "itl", "p99")
row("E2E mean", "e2e", "mean")
local d1, d2, ds = real.serving.duration_s, real2.serving.duration_s, sim.serving.duration_s
print(string.format("%-14s %12.4f %12.4f %12.4f %9.1f%% %9.1f%%", "duration", d1, d2, ds, 100 * (ds - d1) / d1,
                    100 * (d2 - d1) / d1))
print(string.format("per-iteration: mean abs error %.1f%%, bias %+.1f%%, time-weighted abs error %.1f%% over %d "
                    .. "iterations (real %.3f ms, predicted %.3f ms)", 100 * se.mape, 100 * se.bias, 100 * se.wape,
                    se.n, 1e3 * se.real_mean_s, 1e3 * se.pred_mean_s))
print("-> " .. out)
