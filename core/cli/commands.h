/* commands.h - the subcommands of the `llmlab` binary.  Each returns the process
 * exit status (0 success, 1 runtime error, 2 usage error). */
#ifndef LLMLAB_CLI_COMMANDS_H
#define LLMLAB_CLI_COMMANDS_H

int llmlab_cmd_generate(int argc, char **argv);
int llmlab_cmd_tokenize(int argc, char **argv);
int llmlab_cmd_ppl(int argc, char **argv);
int llmlab_cmd_synth(int argc, char **argv);
int llmlab_cmd_train_medusa(int argc, char **argv);
int llmlab_cmd_derive(int argc, char **argv);
int llmlab_cmd_convert(int argc, char **argv);
int llmlab_cmd_bench(int argc, char **argv);
int llmlab_cmd_bench_policy(int argc, char **argv);
int llmlab_cmd_bench_tokenizer(int argc, char **argv);
int llmlab_cmd_bench_quant(int argc, char **argv);
int llmlab_cmd_bench_cuda_quant(int argc, char **argv);
int llmlab_cmd_bench_forward(int argc, char **argv);
int llmlab_cmd_run(int argc, char **argv);
int llmlab_cmd_plugins(int argc, char **argv);
int llmlab_cmd_sweep(int argc, char **argv);
int llmlab_cmd_merge(int argc, char **argv);
int llmlab_cmd_report(int argc, char **argv);
int llmlab_cmd_profile(int argc, char **argv);
int llmlab_cmd_capacity(int argc, char **argv);

#endif
