#define _GNU_SOURCE
#include <dlfcn.h>
#include <stddef.h>
#if defined(__GLIBC__)
#include <malloc.h>
#endif
#include "runtime_support.h"

const void *agentd_image_base(const void *address) {
    Dl_info info;
    if (dladdr(address, &info) == 0) return NULL;
    return info.dli_fbase;
}

void agentd_release_free_memory(void) {
#if defined(__GLIBC__)
    malloc_trim(0);
#endif
}

#include <signal.h>
#include <sys/prctl.h>
#include <unistd.h>

int agentd_die_with_parent(int expected_parent) {
    if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0) return -1;
    // The parent may have died before the call: then nothing would ever be sent.
    return getppid() == expected_parent ? 0 : -1;
}
