-- sched_capacity.lua - schedulers x request rates on the simulated executor:
-- goodput, latency percentiles and capacity under SLOs, and whether two known
-- orderings show (docs/serving.md "Capacity search"):
--   Sarathi-Serve: chunked prefill lowers p99 time between tokens (ITL) compared
--     with whole-prompt continuous batching at equal load;
--   FastServe: skip-join MLFQ lowers mean completion time under heavy-tailed
--     output lengths compared with first-come-first-served continuous batching.
--
--   llmlab run experiments/sched_capacity.lua [--set out=results/sched_capacity.h5]
--     [--set n=2000] [--set rates=5,10,20,30,40] [--set real=1 --set model=DIR]
--
-- The big grid runs on the simulator with a Llama-3-8B shape on an H200 roofline
-- (60% of the bf16 matmul peak, 80% of HBM bandwidth reachable); real=1 adds a
-- small check of both orderings on the CPU engine with a small model.  Missing
-- sched plugins are skipped with a message.  Every run goes to the HDF5 file.

local A = llmlab.args
local out = A.out or "results/sched_capacity.h5"
local n = tonumber(A.n or 2000)
local rates = {}
for r in tostring(A.rates or "5,10,20,30,40"):gmatch("[^,]+") do rates[#rates + 1] = tonumber(r) end
local results = llmlab.results(out)

local shape = {dim = 4096, layers = 32, heads = 32, kv_heads = 8, ffn = 14336, vocab = 128256, max_pos = 8192}
local hw = {name = "h200", compute_eff = 0.6, memory_eff = 0.8}
local slo = {ttft = 2.0, tpot = 0.1}

local available = {}
for _, p in ipairs(llmlab.plugins()) do if p.kind == "sched" then available[p.name] = true end end
local scheds = {
  {"fcfs", {"fcfs", max_batch = 64}},
  {"static", {"static", max_batch = 64}},
  {"continuous", {"continuous", max_batch = 256}},
  {"chunked_prefill", {"chunked_prefill", chunk = 512}},
  {"priority", {"priority"}},
  {"mlfq", {"mlfq"}},
  {"sjf", {"sjf"}},
}
local present = {}
for _, s in ipairs(scheds) do
  if available[s[1]] then present[#present + 1] = s
  else print("sched plugin '" .. s[1] .. "' is not registered: skipped") end
end

local function sim_opts(sched, extra)
  local o = {shape = shape, hardware = hw, sched = sched, kv_tokens = 400000, token_budget = 8192, max_seqs = 256,
             requests = false, slo = slo}
  for k, v in pairs(extra or {}) do o[k] = v end
  return o
end

-- Long prompts and moderate outputs: whole-prompt prefills stall running decodes.
local function chat(rate, seed)
  return llmlab.workload{n = n, seed = seed or 1, arrival = "poisson", rate = rate, tokens = false,
                         prompt_len = {"lognormal", 1500, 0.6}, output_len = {"lognormal", 200, 0.8},
                         priorities = {0.2, 0.8}}
end

local function fmt(x) return x ~= x and "    nan" or string.format("%7.3f", x) end

-- ---- the grid ---------------------------------------------------------------------------
print(string.format("\n%-16s %6s %8s %8s %8s %8s %8s %8s %8s", "sched", "rate", "goodput", "attain", "ttft50",
                    "ttft99", "tpot50", "itl99", "e2e"))
local grid = {}
for _, s in ipairs(present) do
  grid[s[1]] = {}
  for _, rate in ipairs(rates) do
    local o = sim_opts(s[2])
    o.workload = chat(rate)
    local r = llmlab.simulate(o)
    local m = r.serving
    grid[s[1]][rate] = m
    print(string.format("%-16s %6.2f %8.3f %8.3f %s %s %s %s %s", s[1], rate, m.goodput, m.slo_attainment,
                        fmt(m.ttft.p50), fmt(m.ttft.p99), fmt(m.tpot.p50), fmt(m.itl.p99), fmt(m.e2e.mean)))
    results:write(string.format("%s_rate%g", s[1], rate), r, {rate = rate, sched = s[1], workload = "chat"})
  end
end

-- ---- capacity under the SLOs (90% of requests meeting TTFT <= 2 s and TPOT <= 100 ms) ----
print(string.format("\n%-16s %12s   (90%% of requests with TTFT <= %g s and TPOT <= %g s)", "sched", "capacity/s",
                    slo.ttft, slo.tpot))
for _, s in ipairs(present) do
  local o = sim_opts(s[2])
  o.requests, o.slo = nil, nil
  local c = llmlab.capacity{simulate = o, workload = function(rate) return chat(rate) end, slo = slo, lo = 1,
                            tol = 0.03}
  print(string.format("%-16s %12.3f   (%d evaluations)", s[1], c.rate, #c.evals))
end

-- ---- ordering 1: chunked prefill vs continuous, p99 ITL at equal load --------------------
if grid.continuous and grid.chunked_prefill then
  print("\nchunked_prefill vs continuous, p99 ITL (s):")
  local holds = 0
  for _, rate in ipairs(rates) do
    local a, b = grid.continuous[rate].itl.p99, grid.chunked_prefill[rate].itl.p99
    holds = holds + (b < a and 1 or 0)
    print(string.format("  rate %6.2f: continuous %s  chunked %s  -> %s", rate, fmt(a), fmt(b),
                        b < a and "lower" or "NOT lower"))
  end
  print(string.format("  chunked prefill lowers p99 ITL at %d of %d rates", holds, #rates))
end

-- ---- ordering 2: MLFQ vs FCFS continuous, mean completion time, heavy-tailed outputs ---------
-- A batch limit of 16 makes requests queue, where head-of-line blocking shows.  MLFQ
-- preempts long jobs for new short ones; FastServe swaps their KV to host memory
-- (here 1M tokens of swap over a 25 GB/s link) instead of recomputing it.
local function heavy(rate, seed)
  return llmlab.workload{n = n, seed = seed or 2, arrival = "poisson", rate = rate, tokens = false,
                         prompt_len = {"uniform", 64, 512}, output_len = {"zipf", 1.1, 4000}}
end
if available.mlfq and available.continuous then
  print("\nheavy-tailed outputs (zipf s = 1.1 on 1..4000), max_seqs 16: mean completion time (s)")
  print(string.format("  %-6s %12s %16s %12s %12s", "rate", "continuous", "mlfq recompute", "mlfq swap", "sjf"))
  local holds, tried = 0, 0
  for _, rate in ipairs{8, 12, 16, 20} do
    local e = {}
    for _, v in ipairs{{"continuous", {}}, {"mlfq", {}, "mlfq_recompute"},
                       {"mlfq", {swap_space = 1000000, swap_bw = 25e9}, "mlfq_swap"}, {"sjf", {}}} do
      local s, key = v[1], v[3] or v[1]
      if available[s] then
        local extra = {max_seqs = 16}
        for k, x in pairs(v[2]) do extra[k] = x end
        local o = sim_opts(s, extra)
        o.workload = heavy(rate)
        local r = llmlab.simulate(o)
        e[key] = r.serving.e2e.mean
        results:write(string.format("heavy_%s_rate%g", key, rate), r, {rate = rate, sched = key, workload = "heavy"})
      end
    end
    tried = tried + 1
    holds = holds + (e.mlfq_swap < e.continuous and 1 or 0)
    print(string.format("  %-6g %12.3f %16.3f %12.3f %12s", rate, e.continuous, e.mlfq_recompute, e.mlfq_swap,
                        e.sjf and string.format("%.3f", e.sjf) or "-"))
  end
  print(string.format("  MLFQ (swap) lowers mean completion time at %d of %d rates", holds, tried))
end

-- ---- a small check on the real engine -------------------------------------------------------
if A.real then
  local model = llmlab.model{path = A.model or "models/zoo/target", threads = tonumber(A.threads or 1)}
  local function run(sched, w, max_seqs)
    local e = llmlab.engine{model = model, sched = sched, kv_tokens = 16384, max_seqs = max_seqs or 16,
                            token_budget = 512}
    return e:run(w)
  end
  local w = llmlab.workload{model = model, n = 40, seed = 3, arrival = "poisson", rate = tonumber(A.real_rate or 4),
                            prompt_len = {"uniform", 256, 480}, output_len = {"uniform", 32, 96}}
  local c = run({"continuous"}, w)
  local k = run({"chunked_prefill", chunk = 64}, w)
  results:write("real_continuous", c, {sched = "continuous", workload = "real"})
  results:write("real_chunked_prefill", k, {sched = "chunked_prefill", workload = "real"})
  print(string.format("\nreal engine (%s): p99 ITL continuous %.4f s, chunked_prefill (chunk 64) %.4f s -> %s",
                      A.model or "models/zoo/target", c.serving.itl.p99, k.serving.itl.p99,
                      k.serving.itl.p99 < c.serving.itl.p99 and "lower" or "NOT lower"))
  local h = llmlab.workload{model = model, n = 40, seed = 4, arrival = "poisson", rate = tonumber(A.real_rate or 4) * 2,
                            prompt_len = {"uniform", 16, 64}, output_len = {"zipf", 1.1, 400}}
  local hc, hm = run({"continuous"}, h, 4), run({"mlfq"}, h, 4)
  results:write("real_heavy_continuous", hc, {sched = "continuous", workload = "real_heavy"})
  results:write("real_heavy_mlfq", hm, {sched = "mlfq", workload = "real_heavy"})
  print(string.format("real engine, heavy-tailed outputs, max_seqs 4: mean completion continuous %.3f s, mlfq %.3f s "
                      .. "-> %s", hc.serving.e2e.mean, hm.serving.e2e.mean,
                      hm.serving.e2e.mean < hc.serving.e2e.mean and "lower" or "NOT lower"))
end
print("-> " .. out)
