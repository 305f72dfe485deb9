// A thin C shim over gRPC's C core (Debian libgrpc-dev 1.51) for the GRPCTransport module.
//
// The libraries are named in module.modulemap (`link "grpc"`, `link "gpr"`) instead of through
// pkg-config: grpc.pc pulls in ~25 abseil .pc files whose expanded flags overflow SwiftPM's
// argument list. The inline helpers below stand in for macros that do not import into Swift.
#ifndef AGENTD_CGRPC_SHIM_H
#define AGENTD_CGRPC_SHIM_H

#ifdef __linux__
#include <sys/prctl.h>
#endif
#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <grpc/byte_buffer.h>
#include <grpc/byte_buffer_reader.h>
#include <grpc/slice.h>
#include <grpc/status.h>
#include <grpc/support/alloc.h>
#include <grpc/support/time.h>
#include <stdint.h>
#include <string.h>

/// The first byte of a slice's payload (GRPC_SLICE_START_PTR).
static inline const uint8_t *cgrpc_slice_start(const grpc_slice *slice) {
    return GRPC_SLICE_START_PTR(*slice);
}

/// A slice's length in bytes (GRPC_SLICE_LENGTH).
static inline size_t cgrpc_slice_length(const grpc_slice *slice) {
    return GRPC_SLICE_LENGTH(*slice);
}

/// If `buffer` is an uncompressed raw buffer made of exactly one slice, points `*bytes` and
/// `*length` at that slice's payload and returns 1. Otherwise returns 0 and leaves them alone.
static inline int cgrpc_byte_buffer_single_slice(grpc_byte_buffer *buffer,
                                                 const uint8_t **bytes, size_t *length) {
    if (buffer->type != GRPC_BB_RAW || buffer->data.raw.compression != GRPC_COMPRESS_NONE ||
        buffer->data.raw.slice_buffer.count != 1) {
        return 0;
    }
    grpc_slice *slice = &buffer->data.raw.slice_buffer.slices[0];
    *bytes = GRPC_SLICE_START_PTR(*slice);
    *length = GRPC_SLICE_LENGTH(*slice);
    return 1;
}

/// Copies `length` bytes into a new single-slice byte buffer (owned by the caller).
static inline grpc_byte_buffer *cgrpc_byte_buffer_copying(const void *bytes, size_t length) {
    grpc_slice slice = grpc_slice_from_copied_buffer((const char *)bytes, length);
    grpc_byte_buffer *buffer = grpc_raw_byte_buffer_create(&slice, 1);
    grpc_slice_unref(slice);
    return buffer;
}

/// Flattens any byte buffer into a new single-slice raw buffer (owned by the caller).
static inline grpc_byte_buffer *cgrpc_byte_buffer_flatten(grpc_byte_buffer *buffer) {
    grpc_byte_buffer_reader reader;
    if (!grpc_byte_buffer_reader_init(&reader, buffer)) {
        return NULL;
    }
    grpc_slice slice = grpc_byte_buffer_reader_readall(&reader);
    grpc_byte_buffer_reader_destroy(&reader);
    grpc_byte_buffer *flat = grpc_raw_byte_buffer_create(&slice, 1);
    grpc_slice_unref(slice);
    return flat;
}

/// A deadline `milliseconds` from now on the monotonic clock.
static inline gpr_timespec cgrpc_deadline_after_ms(int64_t milliseconds) {
    return gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC),
                        gpr_time_from_millis(milliseconds, GPR_TIMESPAN));
}

/// The deadline that never comes.
static inline gpr_timespec cgrpc_infinite_future(void) {
    return gpr_inf_future(GPR_CLOCK_REALTIME);
}

/// Milliseconds left until `deadline` (negative if past; INT64_MAX if infinite).
static inline int64_t cgrpc_ms_until(gpr_timespec deadline) {
    if (gpr_time_cmp(deadline, gpr_inf_future(deadline.clock_type)) == 0) {
        return INT64_MAX;
    }
    gpr_timespec now = gpr_now(deadline.clock_type);
    gpr_timespec left = gpr_time_sub(deadline, now);
    return (int64_t)gpr_time_to_millis(left);
}

/// The default propagation mask for client calls (GRPC_PROPAGATE_DEFAULTS).
static inline uint32_t cgrpc_propagate_defaults(void) { return GRPC_PROPAGATE_DEFAULTS; }

/// Names the calling thread (the kernel keeps the first 15 bytes), as ps and debuggers show it.
static inline void cgrpc_set_thread_name(const char *name) {
#ifdef __linux__
    prctl(PR_SET_NAME, (unsigned long)name, 0, 0, 0);
#else
    (void)name;
#endif
}

/// Releases a string the C core allocated (for example `grpc_call_get_peer`'s answer).
static inline void cgrpc_free(void *pointer) { gpr_free(pointer); }

#endif
