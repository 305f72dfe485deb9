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
