-- sweep_example.lua - an ablation grid as a sweep: speculative decoding's draft
-- length k x a sliding attention window, on a tiny synthetic model (docs/sweeps.md).
--
--   llmlab sweep experiments/sweep_example.lua -j 2            (local, resumable)
--   llmlab sweep experiments/sweep_example.lua --slurm --submit (a Slurm job array)
--   llmlab report results/sweeps/sweep_example/merged.h5 --by k,window --plot plots/
--   llmlab run experiments/sweep_example.lua                   (every task in one process)
--
--   --set repeats=N   repetitions of every grid point (default 2)
--   --set requests=N  requests per task (default 4), --set max_new=N (default 24)
--   --set model=DIR   the target model (default: models-synth/sweep_example, made here)
--
-- Everything before llmlab.sweep runs once when the sweep is planned and again in
-- every task, so it should be cheap when repeated: the models are made only when
-- missing.  Each task builds its engine from its point and returns e:run's result,
-- which lands in the task's HDF5 file with the point attached.

local A = llmlab.args
local root = A.models or "models-synth/sweep_example"
local target = A.model or (root .. "/target")
local draft = root .. "/draft"

local function exists(dir)
  local f = io.open(dir .. "/config.json")
  if f then f:close() end
  return f ~= nil
end

if not exists(target) then llmlab.synth{dir = target, preset = "tiny", seed = 17} end
if not exists(draft) then llmlab.derive{src = target, dir = draft, dtype = "bf16"} end

llmlab.sweep{
  name = A.name or "sweep_example",
  grid = {k = {1, 2, 4}, window = {16, 64}},
  repeats = A.repeats or 2,
  run = function(p)
    local m = llmlab.model{path = target, threads = 1}
    local e = llmlab.engine{model = m, seed = 7 + p.task,
                            decoding = {"speculative", draft = draft, k = p.k},
                            attention = {"window", window = p.window},
                            sched = {"continuous", max_batch = 4}}
    local lengths = {}
    for i = 1, (A.requests or 4) do lengths[i] = 8 + 6 * i end
    return e:run(llmlab.workload{lengths = lengths, max_new = A.max_new or 24, seed = 3 + p["repeat"],
                                 vocab = m.vocab})
  end,
}
