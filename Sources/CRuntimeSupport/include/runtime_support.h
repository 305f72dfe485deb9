// Small C helpers for the runtime that Swift's Glibc module does not offer.
#ifndef AGENTD_RUNTIME_SUPPORT_H
#define AGENTD_RUNTIME_SUPPORT_H

/// The base address of the loaded image (executable or shared library) containing `address`,
/// or NULL if it is in none (dladdr's dli_fbase).
const void *agentd_image_base(const void *address);

/// Hands memory malloc keeps in its free lists back to the system (glibc's malloc_trim(0));
/// a no-op elsewhere.
void agentd_release_free_memory(void);

#endif
