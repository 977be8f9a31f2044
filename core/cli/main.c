/* main.c - the `llmlab` binary: dispatches to one subcommand. */
#include <stdio.h>
#include <string.h>

#include "commands.h"
#include "kernels/cpu/kernels.h"
#include "llmlab/llmlab.h"

typedef struct {
    const char *name;
    int (*fn)(int argc, char **argv);
    const char *doc;
} command;

static const command commands[] = {
    {"run", llmlab_cmd_run, "run an experiment script (Lua)"},
    {"sweep", llmlab_cmd_sweep, "run a script's llmlab.sweep grid: local processes (-j N) or Slurm arrays"},
    {"merge", llmlab_cmd_merge, "combine a sweep's per-task result files into one file with a sweep table"},
    {"report", llmlab_cmd_report, "tables and plots of summary metrics grouped by sweep parameters"},
    {"plugins", llmlab_cmd_plugins, "list registered plugins with their parameters"},
    {"generate", llmlab_cmd_generate, "generate text or token ids from a model directory"},
    {"tokenize", llmlab_cmd_tokenize, "text to token ids and back (tokenizer.json, GGUF vocabulary)"},
    {"ppl", llmlab_cmd_ppl, "perplexity of a text file (strided windows, through the engine's plugins)"},
    {"synth", llmlab_cmd_synth, "write a seeded random-weight model in Hugging Face layout"},
    {"train-medusa", llmlab_cmd_train_medusa, "train Medusa heads for a model (CPU), for the medusa plugin"},
    {"derive", llmlab_cmd_derive, "copy a model keeping its first layers and/or in another dtype (drafts)"},
    {"convert", llmlab_cmd_convert, "write a model as a GGUF file (f32, f16, bf16, q8_0, q4_0, q4_k) for llama.cpp"},
    {"bench", llmlab_cmd_bench, "measure prefill/decode speed against memory bandwidth"},
    {"bench-policy", llmlab_cmd_bench_policy, "cost of attention/KV policies per decode step vs dense"},
    {"bench-tokenizer", llmlab_cmd_bench_tokenizer, "encode/decode speed of a tokenizer on a text file (MB/s)"},
    {"bench-quant", llmlab_cmd_bench_quant, "packed-weight matmul speed per format vs f16/f32 dense and bandwidth"},
    {"bench-cuda-quant", llmlab_cmd_bench_cuda_quant, "CUDA GEMV/GEMM speed per packed format vs bf16 and copy bandwidth"},
    {"bench-forward", llmlab_cmd_bench_forward, "decode/prefill speed of the whole forward (CPU or CUDA) vs measured ceilings"},
    {"profile", llmlab_cmd_profile, "time iteration compositions and fit the simulator's cost model"},
    {"capacity", llmlab_cmd_capacity, "largest request rate meeting SLOs (simulated or real executor)"},
};

static void usage(FILE *f) {
    fprintf(f, "usage: llmlab COMMAND [ARGS...]\n\ncommands:\n");
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        fprintf(f, "  %-13s %s\n", commands[i].name, commands[i].doc);
    fprintf(f, "\n`llmlab COMMAND --help` describes a command.  `llmlab --version` prints the version.\n");
}

int main(int argc, char **argv) {
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
        usage(stdout);
        return 0;
    }
    if (!strcmp(argv[1], "--version")) {
        printf("llmlab %s (commit %s, cpu kernels %s)\n", LLMLAB_VERSION_STRING, LLMLAB_GIT_COMMIT,
               llmlab_cpu_simd_name());
        return 0;
    }
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (!strcmp(argv[1], commands[i].name)) return commands[i].fn(argc - 1, argv + 1);
    fprintf(stderr, "llmlab: unknown command '%s'\n\n", argv[1]);
    usage(stderr);
    return 2;
}
