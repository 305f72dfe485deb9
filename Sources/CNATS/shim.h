// nats.c, the NATS C client, from Debian's libnats-dev 3.4.1 (scripts/bootstrap installs it), for
// the AgentCluster module. Debian installs the header as <nats/nats.h> (the bare <nats.h> is a
// deprecated forwarder that warns). The inline helper below stands in for a variadic
// call that does not import into Swift.
#ifndef AGENTD_CNATS_SHIM_H
#define AGENTD_CNATS_SHIM_H

#ifdef __linux__
#include <sys/prctl.h>
#endif
#include <nats/nats.h>

/// Names the calling thread (the kernel keeps the first 15 bytes), as ps and debuggers show it.
static inline void cnats_set_thread_name(const char *name) {
#ifdef __linux__
    prctl(PR_SET_NAME, (unsigned long)name, 0, 0, 0);
#else
    (void)name;
#endif
}

#endif
