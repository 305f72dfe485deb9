#define _GNU_SOURCE
#include <dlfcn.h>
#include <stddef.h>
#include "runtime_support.h"

const void *agentd_image_base(const void *address) {
    Dl_info info;
    if (dladdr(address, &info) == 0) return NULL;
    return info.dli_fbase;
}
