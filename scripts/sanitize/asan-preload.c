/*
 * Preloaded into the stock nginx with the gcc sanitizer runtimes by
 * scripts/test-asan.sh (LD_PRELOAD: libasan, this, libubsan, in that order).
 *
 * 1. nginx unloads its modules (dlclose) when a process exits, before
 *    LeakSanitizer looks for leaks: the module's frames could no longer be
 *    named.  dlclose() here does nothing; libasan's dlclose interceptor
 *    calls the next one, this one.
 *
 * 2. libasan and libubsan are two runtimes in one process.  libubsan reads
 *    its options lazily, at its first report, and from /proc/self/environ,
 *    which nginx has overwritten with the process title by then (master
 *    and workers): it would find no UBSAN_OPTIONS, and its initialization
 *    would point libasan's report path (an interposed call) back at stderr.
 *    __ubsan_default_options() hands it the options read here, at startup;
 *    libubsan's own report path (RL_UBSAN_LOG_PATH) is set here too, so
 *    that its reports land in files rather than in nginx's error log.
 */

#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>


const char *__ubsan_default_options(void);
int dlclose(void *handle);


static char  rl_ubsan_options[4096];


const char *
__ubsan_default_options(void)
{
    return rl_ubsan_options;
}


int
dlclose(void *handle)
{
    (void) handle;
    return 0;
}


__attribute__((constructor)) static void
rl_asan_preload_init(void)
{
    void        *ubsan;
    const char  *s;
    void       (*set_path)(const char *);

    s = getenv("UBSAN_OPTIONS");
    if (s) {
        snprintf(rl_ubsan_options, sizeof(rl_ubsan_options), "%s", s);
    }

    s = getenv("RL_UBSAN_LOG_PATH");
    ubsan = dlopen("libubsan.so.1", RTLD_NOW | RTLD_NOLOAD);

    if (s == NULL || ubsan == NULL) {
        return;
    }

    /* libubsan's own, not the interposed libasan one */
    set_path = (void (*)(const char *)) dlsym(ubsan,
                                              "__sanitizer_set_report_path");
    if (set_path) {
        set_path(s);
    }
}
