/* settings.h - site settings from llmlab.ini (inih): defaults, lookup, overrides.
 *
 * Settings are the site-wide defaults an installation wants for every run: the
 * backend and device, thread count, plugin search path, results directory, KV
 * block size, determinism, and Slurm submission defaults.  They come from one INI
 * file (see llmlab_settings_find for where it is looked up), then command-line
 * options, then Lua, each applied in that order through llmlab_settings_set, so
 * the last writer wins:  defaults < llmlab.ini < command line < Lua.
 *
 * Every value is validated when it is stored; errors name the key, the bad value
 * and the allowed values, and errors from a file start with "path:LINE: ".
 * docs/settings.md lists every key.
 *
 * Ownership: string fields are owned by the struct (free with
 * llmlab_settings_free).  Do not copy a loaded struct by value and free both
 * copies; treat the strings as read-only and change them with llmlab_settings_set.
 */
#ifndef LLMLAB_SETTINGS_H
#define LLMLAB_SETTINGS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#include "llmlab/llmlab.h"

/* The file name looked up in the working directory and the config directory. */
#define LLMLAB_SETTINGS_FILE "llmlab.ini"
/* Environment variable whose directories are appended to plugin_path. */
#define LLMLAB_SETTINGS_ENV_PLUGIN_PATH "LLMLAB_PLUGIN_PATH"

/* [slurm]: defaults for `sbatch` submissions.  "" means "not set: leave it to the
 * cluster's default" (the option is not passed to sbatch). */
typedef struct {
    const char *partition;  /* --partition, default "" */
    const char *account;    /* --account, default "" */
    const char *time;       /* --time, Slurm time string, default "01:00:00" */
    int gpus;               /* --gpus, >= 0, default 0 */
    int cpus_per_task;      /* --cpus-per-task, >= 1, default 1 */
    const char *mem;        /* --mem, e.g. "16G"; default "" */
    int max_parallel;       /* jobs of one sweep running at once (array %N), >= 1, default 1 */
    const char *qos;        /* --qos, default "" */
    const char *extra;      /* extra sbatch options, passed verbatim, default "" */
} llmlab_slurm_settings;

/* [llmlab]: the main section. */
typedef struct {
    const char *backend;     /* "cpu" or "cuda" (a static string), default "cpu" */
    int device;              /* GPU ordinal for backend cuda, >= 0, default 0 */
    int threads;             /* CPU worker threads, 0 = all cores, default 0 */
    const char *plugin_path; /* colon-separated plugin directories, default "" */
    const char *results_dir; /* where result files go, default "results" */
    int kv_block_size;       /* token slots per KV-cache block, default 16 */
    bool deterministic;      /* batch-invariant / deterministic kernels, default false */
    llmlab_slurm_settings slurm;
    unsigned owned_;         /* private: bit per string field that is heap-owned */
} llmlab_settings;

/* Fills s with the built-in defaults.  Never fails and allocates nothing; call it
 * (once) before any other function on a fresh struct. */
void llmlab_settings_defaults(llmlab_settings *s);

/* Frees the strings s owns and resets s to the defaults (safe to call twice). */
void llmlab_settings_free(llmlab_settings *s);

/* Reads the INI file at path on top of the current values of s.  On error the
 * message reads "path:LINE: ..." (EINVAL for an unknown section/key, a bad value or
 * an INI syntax error) or names the path (EIO when it cannot be opened).  Values
 * stored before the error stay stored; callers normally give up on error. */
llmlab_status llmlab_settings_load_file(llmlab_settings *s, const char *path, llmlab_err *err);

/* Finds and loads the settings file:
 *   1. explicit_path (from `--config FILE`) when non-NULL and non-empty: must exist;
 *   2. ./llmlab.ini;
 *   3. $XDG_CONFIG_HOME/llmlab/llmlab.ini (when XDG_CONFIG_HOME is set and non-empty);
 *      otherwise $HOME/.config/llmlab/llmlab.ini;
 *   4. none: s keeps its current values (the defaults).
 * The first file that exists is loaded (only that one).  Its path is copied to
 * used_path ("" when none) when used_path is non-NULL; a path longer than cap is
 * EINVAL. */
llmlab_status llmlab_settings_find(llmlab_settings *s, const char *explicit_path,
                                   char *used_path, size_t cap, llmlab_err *err);

/* Sets one key from its text form with the same validation as the file.  Keys are
 * "threads" (or "llmlab.threads") and "slurm.partition".  Used for command-line
 * options and Lua; on error s is unchanged. */
llmlab_status llmlab_settings_set(llmlab_settings *s, const char *key, const char *value,
                                  llmlab_err *err);

/* Appends the directories of $LLMLAB_PLUGIN_PATH (if set and non-empty) to
 * plugin_path, after the INI/command-line directories. */
llmlab_status llmlab_settings_apply_env(llmlab_settings *s, llmlab_err *err);

/* Writes every setting as an INI file that llmlab_settings_load_file reads back to
 * the same values.  Returns EIO when the stream reports a write error, EINVAL when
 * a string cannot be written faithfully (a newline, or a " ;" that would read as a
 * comment). */
llmlab_status llmlab_settings_to_ini(const llmlab_settings *s, FILE *f, llmlab_err *err);

#endif
