/* sweep.h - ablation sweeps: a grid of settings expanded into numbered tasks, one
 * results file per task (docs/sweeps.md).
 *
 * A sweep is a name, a grid (parameter name -> list of values) and a repeat count.
 * Task indices are fixed by the grid alone: parameters sorted by name (bytewise),
 * the cartesian product with the last parameter changing fastest, and the repeat
 * index outermost, so task = repeat * grid_points + grid_index.  Adding repeats
 * later keeps the numbers of the tasks already run.
 *
 * Each task's outcome is one HDF5 results file DIR/task-00007.h5 holding one run
 * named task-00007 whose sweep/... attributes record the sweep name, the task
 * index, the point and the status ("ok" or "failed", with the error).  The file is
 * written whole or not at all (llmlab_results_write to a temporary, then rename),
 * so a task file that exists is a finished task.
 */
#ifndef LLMLAB_SWEEP_H
#define LLMLAB_SWEEP_H

#include <stddef.h>
#include <stdint.h>

#include "results.h"

/* Type of one grid value. */
typedef enum {
    LLMLAB_SWEEP_INT = 0,  /* i */
    LLMLAB_SWEEP_NUM = 1,  /* d (a non-integer number) */
    LLMLAB_SWEEP_STR = 2,  /* s */
    LLMLAB_SWEEP_BOOL = 3  /* i: 0 or 1 */
} llmlab_sweep_vtype;

typedef struct {
    llmlab_sweep_vtype type;
    int64_t i;  /* INT and BOOL */
    double d;   /* NUM */
    char *s;    /* STR (owned) */
} llmlab_sweep_value;

/* One grid parameter and its values, in the order the script listed them. */
typedef struct {
    char *name;                 /* owned; [A-Za-z_][A-Za-z0-9_]*, not "repeat" or "task" */
    llmlab_sweep_value *values; /* [n_values] */
    int n_values;
} llmlab_sweep_param;

typedef struct {
    char *name;                 /* sweep name (owned): [A-Za-z0-9._-]+, the default directory name */
    llmlab_sweep_param *params; /* [n_params], sorted by name after llmlab_sweep_finish */
    int n_params;
    int repeats;                /* >= 1 */
    int64_t grid_points;        /* product of n_values (1 for an empty grid) */
    int64_t n_tasks;            /* grid_points * repeats */
} llmlab_sweep_spec;

/* Most tasks of one sweep (keeps indices in int and file names short). */
#define LLMLAB_SWEEP_MAX_TASKS 1000000
/* Most grid keys of one sweep. */
#define LLMLAB_SWEEP_MAX_PARAMS 256

/* An empty spec called name; EINVAL for a bad name. */
llmlab_status llmlab_sweep_init(llmlab_sweep_spec *s, const char *name, int repeats, llmlab_err *err);
void llmlab_sweep_free(llmlab_sweep_spec *s);
/* Adds a parameter (values added next with llmlab_sweep_add_value). */
llmlab_status llmlab_sweep_add_param(llmlab_sweep_spec *s, const char *name, llmlab_err *err);
/* Adds a value to the last parameter added (a STR value is copied). */
llmlab_status llmlab_sweep_add_value(llmlab_sweep_spec *s, const llmlab_sweep_value *v, llmlab_err *err);
/* Sorts the parameters, checks them (no duplicates, none empty) and counts tasks. */
llmlab_status llmlab_sweep_finish(llmlab_sweep_spec *s, llmlab_err *err);

/* The point of task: value index per parameter (idx[n_params]) and the repeat. */
llmlab_status llmlab_sweep_point(const llmlab_sweep_spec *s, int64_t task, int *idx, int *repeat,
                                 llmlab_err *err);
/* Writes a value as text ("4", "0.5", "abc", "true") into buf. */
void llmlab_sweep_value_str(const llmlab_sweep_value *v, char *buf, size_t cap);
/* "k=4 budget=128 repeat=0" for task into buf. */
void llmlab_sweep_point_str(const llmlab_sweep_spec *s, int64_t task, char *buf, size_t cap);

/* ---- the sweep directory ---------------------------------------------------------- */

/* The directory of a sweep: out when non-empty, else results_dir/sweeps/<name>. */
void llmlab_sweep_dir(const char *results_dir, const char *out, const char *name, char *buf, size_t cap);
/* mkdir -p dir (and dir/logs); EIO naming the path on failure. */
llmlab_status llmlab_sweep_mkdirs(const char *dir, llmlab_err *err);
/* The run name of a task: "task-00007" (at least 5 digits). */
void llmlab_sweep_task_name(int64_t task, char *buf, size_t cap);
/* dir + "/task-00007.h5". */
void llmlab_sweep_task_path(const char *dir, int64_t task, char *buf, size_t cap);

typedef enum {
    LLMLAB_TASK_MISSING = 0, /* no task file */
    LLMLAB_TASK_OK = 1,      /* finished, result recorded */
    LLMLAB_TASK_FAILED = 2   /* finished with an error (message recorded) */
} llmlab_task_state;

/* State of task in dir; for FAILED, error (malloc'd, may be NULL) is the message.
 * A task file that cannot be read counts as FAILED with the reason. */
llmlab_task_state llmlab_sweep_task_state(const char *dir, int64_t task, char **error);

/* Adds the sweep attributes (sweep/name, sweep/task, sweep/tasks, sweep/repeat,
 * sweep/params, sweep/point/<param>, sweep/grid, sweep/status, sweep/error) to run, whose name
 * must be the task's run name, and writes it as dir/task-NNNNN.h5, replacing an
 * older file of that task atomically.  error is NULL for status "ok". */
llmlab_status llmlab_sweep_write_task(const char *dir, const llmlab_sweep_spec *s, int64_t task,
                                      llmlab_run *run, const char *error, llmlab_err *err);

/* The spec as JSON text (malloc'd, NULL when out of memory):
 *   {"name": "...", "repeats": 2, "tasks": 12, "grid_points": 6,
 *    "params": [{"name": "k", "types": ["int", ...], "values": [2, ...]}, ...]}
 * Every task file carries it (attribute sweep/grid), so merge can name the point
 * of a missing task and tell task files of different sweeps apart. */
char *llmlab_sweep_to_json(const llmlab_sweep_spec *s);
/* Reads that JSON back into s (fresh; free with llmlab_sweep_free). */
llmlab_status llmlab_sweep_from_json(const char *text, llmlab_sweep_spec *s, llmlab_err *err);

/* Writes llmlab_sweep_to_json to dir/sweep.json (for people and tools). */
llmlab_status llmlab_sweep_write_json(const char *dir, const llmlab_sweep_spec *s, llmlab_err *err);

#endif
