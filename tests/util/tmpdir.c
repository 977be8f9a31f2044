/* tmpdir.c - per-suite temporary directories for the tests. */
#include "tmpdir.h"

#include <criterion/criterion.h>
#include <stdlib.h>

#include "fsutil.h"

char *tmpdir_make(void) {
    char *dir = fsu_mkdtemp();
    cr_assert(dir, "mkdtemp failed");
    return dir;
}

void tmpdir_remove(char *dir) {
    fsu_rmtree(dir);
    free(dir);
}
