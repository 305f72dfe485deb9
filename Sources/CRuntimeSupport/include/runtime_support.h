// Small C helpers for the runtime that Swift's Glibc module does not offer.
#ifndef AGENTD_RUNTIME_SUPPORT_H
#define AGENTD_RUNTIME_SUPPORT_H

/// The base address of the loaded image (executable or shared library) containing `address`,
/// or NULL if it is in none (dladdr's dli_fbase).
const void *agentd_image_base(const void *address);

/// Hands memory malloc keeps in its free lists back to the system (glibc's malloc_trim(0));
/// a no-op elsewhere.
void agentd_release_free_memory(void);

/// Asks the kernel to SIGKILL this process when its parent thread ends (PR_SET_PDEATHSIG): the
/// supervisor of `agentd run` spawns its runtime from a thread that lives as long as it does,
/// so the runtime ends with it, even when it is SIGKILLed. Returns 0, or -1 when the parent is
/// not `expected_parent` any more (it died before the call) or prctl failed.
int agentd_die_with_parent(int expected_parent);

#include "crash_record.h"

#endif
