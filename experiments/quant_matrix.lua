-- quant_matrix.lua - quantization schemes x group sizes, measured against the
-- unquantized model on the same held-out text (docs/quantization.md).
--
--   llmlab run experiments/quant_matrix.lua [--set out=results/quant_matrix.h5]
--     [--set model=DIR] [--set texts=4 --set len=256 --set prefix=32]
--     [--set reps=3 --set decode=48 --set prefill=192] [--set only=int4,awq]
--
-- Default model: the zoo's trained target (models/zoo/target, 5.8 M parameters),
-- scored on its held-out token ids (heldout_ids.u16), so the figures are about a
-- model that learned something; with --set model=DIR any model works (texts are
-- then seeded random tokens).
--
-- Per scheme: bits per weight (scales included), weight RMSE relative to the
-- weights' RMS, teacher-forced KL(unquantized || quantized) in nats, top-1
-- agreement, perplexity and its change, and the decode/prefill speed ratio
-- against the unquantized engine measured in this same run (reps interleaved
-- runs of each, medians), plus resident weight bytes.  Every scheme's fidelity
-- run goes into the HDF5 file with those figures as summary columns.

local A = llmlab.args
local out = A.out or "results/quant_matrix.h5"
local n_texts, len = A.texts or 4, A.len or 256
local prefix = A.prefix or 32
local reps, n_decode, n_prefill = A.reps or 3, A.decode or 48, A.prefill or 192

local model_dir = A.model or "models/zoo/target"
local model = llmlab.model{path = model_dir}

-- Texts: the zoo's held-out ids (little-endian u16), else seeded random tokens.
local function heldout_texts()
  local f = io.open(model_dir .. "/heldout_ids.u16", "rb")
  if not f then return nil end
  local bytes = f:read("a")
  f:close()
  local texts, pos = {}, 1
  for t = 1, n_texts do
    if pos + 2 * len - 1 > #bytes then break end
    local ids = {}
    for i = 1, len do ids[i] = string.unpack("<I2", bytes, pos + 2 * (i - 1)) end
    texts[t] = ids
    pos = pos + 2 * len
  end
  return #texts > 0 and texts or nil
end
local texts = heldout_texts()
if not texts then
  texts = {}
  local w = llmlab.workload{lengths = (function() local t = {} for i = 1, n_texts do t[i] = len end return t end)(),
                            max_new = 1, seed = 7, vocab = model.vocab}
  for i = 1, #w.requests do texts[i] = w.requests[i].prompt end
end

-- The schemes: {label, quant choice, kv_quant choice}.
local schemes = {
  {"none", "none"},
  {"int8 channel", {"int8", scheme = "channel"}},
  {"int8 q8_0", {"int8", scheme = "q8_0"}},
  {"fp8 tensor", {"fp8", scale = "tensor"}},
  {"fp8 channel", {"fp8", scale = "channel"}},
  {"smoothquant a0.5", {"smoothquant", alpha = 0.5}},
}
for _, g in ipairs{32, 64, 128} do
  schemes[#schemes + 1] = {"int4 sym g" .. g, {"int4", group = g, symmetric = true}}
  schemes[#schemes + 1] = {"int4 asym g" .. g, {"int4", group = g, symmetric = false}}
end
schemes[#schemes + 1] = {"awq g128", {"awq", group = 128}}
schemes[#schemes + 1] = {"gptq g128", {"gptq", group = 128}}
schemes[#schemes + 1] = {"kv_int8", "none", "kv_int8"}
schemes[#schemes + 1] = {"kv_int4", "none", {"kv_int4", residual = 32}}
schemes[#schemes + 1] = {"int4 g128 + kv_int4", {"int4", group = 128}, {"kv_int4", residual = 32}}

local wanted
if A.only then
  wanted = {}
  for s in tostring(A.only):gmatch("[^,]+") do wanted[s] = true end
end
local function selected(label)
  if not wanted or label == "none" then return true end
  for k in pairs(wanted) do if label:find(k, 1, true) then return true end end
  return false
end

-- Speed of one engine: prefill tok/s (prompt / TTFT of a lone request) and decode
-- tok/s ((output - 1) / (latency - TTFT)).
local speed_prompt = {}
for i = 1, n_prefill do speed_prompt[i] = texts[1][(i - 1) % #texts[1] + 1] end
local function speed(e)
  local r = e:run{{prompt = speed_prompt, max_new = n_decode}}.requests[1]
  return n_prefill / r.ttft_s, (r.output_len - 1) / (r.latency_s - r.ttft_s)
end
local function median(t)
  table.sort(t)
  local n = #t
  return n % 2 == 1 and t[(n + 1) // 2] or (t[n // 2] + t[n // 2 + 1]) / 2
end

local res = llmlab.results(out)
local stamp = os.date("!%Y%m%dT%H%M%S")
local base = llmlab.engine{model = model}
speed(base)
print(string.format("quant_matrix: %s, %d texts x %d tokens (prefix %d), speed: %d reps interleaved", model_dir,
                    #texts, len, prefix, reps))
print(string.format("%-22s %6s %9s %10s %7s %8s %8s %8s %8s %9s", "scheme", "bits", "w relRMS", "KL", "top-1", "ppl",
                    "d ppl", "decode x", "prefil x", "weight MB"))
for _, s in ipairs(schemes) do
  if selected(s[1]) then
    local e = llmlab.engine{model = model, quant = s[2], kv_quant = s[3]}
    local w = e:weights()
    local f = llmlab.fidelity{model = model, quant = s[2], kv_quant = s[3], texts = texts, prefix = prefix,
                              per_token = false}
    local pr, dr = {}, {}
    speed(e) -- warm-up: first-touch page faults of freshly packed weights
    for _ = 1, reps do
      local bp, bd = speed(base)
      local qp, qd = speed(e)
      pr[#pr + 1], dr[#dr + 1] = qp / bp, qd / bd
    end
    local row = {bits_per_weight = w.bits_per_weight, weight_rel_rmse = w.rel_rmse,
                 weight_resident_bytes = w.resident_bytes, ppl_delta = f.ppl - f.ppl_dense,
                 decode_speed_ratio = median(dr), prefill_speed_ratio = median(pr), scheme = s[1]}
    print(string.format("%-22s %6.3f %9.5f %10.6f %7.4f %8.3f %+8.3f %8.3f %8.3f %9.3f", s[1], w.bits_per_weight,
                        w.rel_rmse, f.kl, f.top1, f.ppl, row.ppl_delta, row.decode_speed_ratio,
                        row.prefill_speed_ratio, w.resident_bytes / 1e6))
    res:write(string.format("%s-%s", stamp, s[1]:gsub("[^%w]+", "_")), f, row)
  end
end
print("written to " .. out)
