// core-pingpong: the baseline for transport-bench, written directly against gRPC's C core.
//
// One process, two completion queues (CQ_NEXT), two poller threads:
//   - the server thread polls the server queue and serves the bidirectional streaming method
//     /bench.Bench/PingPong, echoing every message it receives;
//   - the client thread polls the client queue; the client side of the benchmark runs inside
//     its completion handlers (a completion starts the next operation directly), so the
//     figures are the C core's own cost with no extra thread hop on the hot path.
// The main thread sets things up, starts each phase, waits for it to finish, and tears down.
//
// Phases (one stream, 100-byte messages):
//   pingpong: WARMUP unrecorded rounds, then `rounds` recorded rounds of
//             "send one message, wait for its echo" (round-trip time, CLOCK_MONOTONIC);
//   stream:   `stream_count` messages sent back to back (the next send starts when the
//             previous send completes) while the echoes are read; messages/s from the first
//             send to the last echo.
//
// Usage: core-pingpong [rounds] [stream_count]      (defaults 20000, 100000)
// Output: one `name=value` line per figure on stdout.
//
// The same exchange across two processes (the echo server in one, the client in another):
//   core-pingpong --serve               the echo server alone on 127.0.0.1:0: prints
//                                       `listening on 127.0.0.1:PORT`, serves one call after
//                                       another until stdin reaches EOF or SIGTERM arrives
//   core-pingpong --connect PORT [rounds]
//                                       the client alone against 127.0.0.1:PORT: the ping-pong
//                                       phase only; prints the pingpong_* figures
//
// Build by hand: gcc -O2 -Wall -Wextra -o core-pingpong main.c -lgrpc -lgpr -lpthread

#include <grpc/byte_buffer.h>
#include <grpc/byte_buffer_reader.h>
#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <grpc/slice.h>
#include <grpc/status.h>
#include <grpc/support/alloc.h>
#include <grpc/support/time.h>

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <time.h>
#include <unistd.h>

enum { WARMUP = 1000, MESSAGE_SIZE = 100 };
enum { DEFAULT_ROUNDS = 20000, DEFAULT_STREAM_COUNT = 100000 };

static const char kMethod[] = "/bench.Bench/PingPong";

// ---------------------------------------------------------------------------------------------
// Tags: every batch's tag points at one of these static structs, which names the operation.

enum op_kind {
    // Server queue.
    SRV_NEW_CALL,      // grpc_server_request_call matched the client's call
    SRV_SEND_MD,       // initial metadata sent
    SRV_RECV_MSG,      // a message (or the client's half-close) arrived
    SRV_SEND_MSG,      // an echo was sent
    SRV_SEND_STATUS,   // the status was sent
    SRV_RECV_CLOSE,    // the call closed on the server
    SRV_SHUTDOWN,      // grpc_server_shutdown_and_notify finished
    // Client queue.
    CLI_SEND_MD,       // initial metadata sent
    CLI_RECV_MD,       // the server's initial metadata arrived
    CLI_SEND_MSG,      // a message was sent
    CLI_RECV_MSG,      // an echo arrived
    CLI_HALF_CLOSE,    // the half-close was sent
    CLI_RECV_STATUS,   // the call's status arrived
    OP_KIND_COUNT
};

struct op_tag {
    enum op_kind kind;
    const char *name;
};

#define TAG(k) [k] = {k, #k}
static struct op_tag g_tags[OP_KIND_COUNT] = {
    TAG(SRV_NEW_CALL),  TAG(SRV_SEND_MD),    TAG(SRV_RECV_MSG),    TAG(SRV_SEND_MSG),
    TAG(SRV_SEND_STATUS), TAG(SRV_RECV_CLOSE), TAG(SRV_SHUTDOWN),  TAG(CLI_SEND_MD),
    TAG(CLI_RECV_MD),   TAG(CLI_SEND_MSG),   TAG(CLI_RECV_MSG),    TAG(CLI_HALF_CLOSE),
    TAG(CLI_RECV_STATUS),
};
#undef TAG

static void *tag_for(enum op_kind kind) { return &g_tags[kind]; }

// ---------------------------------------------------------------------------------------------
// Small helpers.

static void die(const char *what) {
    fprintf(stderr, "core-pingpong: %s\n", what);
    exit(2);
}

static uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void start_batch(grpc_call *call, const grpc_op *ops, size_t count, enum op_kind kind) {
    grpc_call_error error = grpc_call_start_batch(call, ops, count, tag_for(kind), NULL);
    if (error != GRPC_CALL_OK) {
        fprintf(stderr, "core-pingpong: grpc_call_start_batch(%s) failed: %d\n",
                g_tags[kind].name, (int)error);
        exit(2);
    }
}

static void lock(pthread_mutex_t *mutex) {
    if (pthread_mutex_lock(mutex) != 0) die("pthread_mutex_lock failed");
}

static void unlock(pthread_mutex_t *mutex) {
    if (pthread_mutex_unlock(mutex) != 0) die("pthread_mutex_unlock failed");
}

// Reads a received message into one slice (the caller unrefs it) and destroys the buffer.
static grpc_slice take_payload(grpc_byte_buffer *buffer) {
    grpc_byte_buffer_reader reader;
    if (!grpc_byte_buffer_reader_init(&reader, buffer)) die("grpc_byte_buffer_reader_init failed");
    grpc_slice payload = grpc_byte_buffer_reader_readall(&reader);
    grpc_byte_buffer_reader_destroy(&reader);
    grpc_byte_buffer_destroy(buffer);
    return payload;
}

// ---------------------------------------------------------------------------------------------
// Server: everything after grpc_server_start runs on the server poller thread, so the server
// call's batches are started from one thread only.

// Echoes waiting for the previous send to complete (only one send batch may be in flight).
struct echo_queue {
    grpc_byte_buffer **items;
    size_t capacity, head, count;
};

static struct {
    grpc_server *server;
    grpc_completion_queue *cq;
    pthread_t thread;

    // Out-parameters of grpc_server_request_call and of the call's batches; they live here
    // until the operations that fill them have completed.
    grpc_call *call;
    grpc_call_details details;
    grpc_metadata_array request_metadata;
    grpc_byte_buffer *recv_buffer;
    int cancelled;

    grpc_byte_buffer *sending;  // the echo in flight, destroyed when its send completes
    struct echo_queue pending;
    int client_done;            // the client half-closed
    enum { STATUS_UNSENT, STATUS_SENDING, STATUS_SENT } status;
    int md_sent, closed;  // initial metadata sent; RECV_CLOSE_ON_SERVER completed

    int serve_many;  // --serve: after a call finishes, wait for the next one

    pthread_mutex_t mutex;  // guards the flags below, for the main thread
    pthread_cond_t cond;
    int call_finished, shutdown_done;
} srv = {.mutex = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER};

static void echo_queue_push(struct echo_queue *queue, grpc_byte_buffer *buffer) {
    if (queue->count == queue->capacity) {
        size_t capacity = queue->capacity ? queue->capacity * 2 : 64;
        grpc_byte_buffer **items = malloc(capacity * sizeof *items);
        if (items == NULL) die("out of memory");
        for (size_t i = 0; i < queue->count; i++) {
            items[i] = queue->items[(queue->head + i) % queue->capacity];
        }
        free(queue->items);
        queue->items = items;
        queue->capacity = capacity;
        queue->head = 0;
    }
    queue->items[(queue->head + queue->count) % queue->capacity] = buffer;
    queue->count++;
}

static grpc_byte_buffer *echo_queue_pop(struct echo_queue *queue) {
    if (queue->count == 0) return NULL;
    grpc_byte_buffer *buffer = queue->items[queue->head];
    queue->head = (queue->head + 1) % queue->capacity;
    queue->count--;
    return buffer;
}

static void server_signal(int *flag) {
    lock(&srv.mutex);
    *flag = 1;
    pthread_cond_broadcast(&srv.cond);
    unlock(&srv.mutex);
}

static void server_recv_message(void) {
    grpc_op op;
    memset(&op, 0, sizeof op);
    op.op = GRPC_OP_RECV_MESSAGE;
    op.data.recv_message.recv_message = &srv.recv_buffer;
    start_batch(srv.call, &op, 1, SRV_RECV_MSG);
}

static void server_send_message(grpc_byte_buffer *buffer) {
    srv.sending = buffer;
    grpc_op op;
    memset(&op, 0, sizeof op);
    op.op = GRPC_OP_SEND_MESSAGE;
    op.data.send_message.send_message = buffer;
    start_batch(srv.call, &op, 1, SRV_SEND_MSG);
}

static void server_send_status(void) {
    grpc_op op;
    memset(&op, 0, sizeof op);
    op.op = GRPC_OP_SEND_STATUS_FROM_SERVER;
    op.data.send_status_from_server.trailing_metadata_count = 0;
    op.data.send_status_from_server.status = GRPC_STATUS_OK;
    op.data.send_status_from_server.status_details = NULL;
    start_batch(srv.call, &op, 1, SRV_SEND_STATUS);
}

// Sends the next queued echo, or the status once the client half-closed and all is echoed.
static void server_pump(void) {
    if (srv.sending != NULL || srv.status != STATUS_UNSENT) return;
    grpc_byte_buffer *next = echo_queue_pop(&srv.pending);
    if (next != NULL) {
        server_send_message(next);
    } else if (srv.client_done && srv.md_sent) {
        srv.status = STATUS_SENDING;
        server_send_status();
    }
}

static void server_request_call(void) {
    grpc_call_details_init(&srv.details);
    grpc_metadata_array_init(&srv.request_metadata);
    if (grpc_server_request_call(srv.server, &srv.call, &srv.details, &srv.request_metadata,
                                 srv.cq, srv.cq, tag_for(SRV_NEW_CALL)) != GRPC_CALL_OK) {
        die("grpc_server_request_call failed");
    }
}

static void server_maybe_finish(void) {
    if (srv.status == STATUS_SENT && srv.closed && srv.md_sent && srv.call != NULL) {
        grpc_call_unref(srv.call);
        srv.call = NULL;
        if (srv.serve_many) {
            // Ready for the next call (on this poller thread; the main thread only waits).
            grpc_call_details_destroy(&srv.details);
            grpc_metadata_array_destroy(&srv.request_metadata);
            srv.cancelled = 0;
            srv.client_done = 0;
            srv.status = STATUS_UNSENT;
            srv.md_sent = srv.closed = 0;
            server_request_call();
        } else {
            server_signal(&srv.call_finished);
        }
    }
}

static void server_handle(enum op_kind kind, int success) {
    switch (kind) {
    case SRV_NEW_CALL: {
        if (!success && srv.serve_many) break;  // the server is shutting down
        if (!success) die("grpc_server_request_call failed");
        if (!grpc_slice_eq(srv.details.method, grpc_slice_from_static_string(kMethod))) {
            die("unexpected method");
        }
        grpc_op ops[2];
        memset(ops, 0, sizeof ops);
        ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
        ops[0].data.send_initial_metadata.count = 0;
        start_batch(srv.call, &ops[0], 1, SRV_SEND_MD);
        ops[1].op = GRPC_OP_RECV_CLOSE_ON_SERVER;
        ops[1].data.recv_close_on_server.cancelled = &srv.cancelled;
        start_batch(srv.call, &ops[1], 1, SRV_RECV_CLOSE);
        server_recv_message();
        break;
    }
    case SRV_SEND_MD:
        if (!success) die("server: sending initial metadata failed");
        srv.md_sent = 1;
        server_pump();
        server_maybe_finish();
        break;
    case SRV_RECV_MSG:
        if (!success) die("server: receiving a message failed");
        if (srv.recv_buffer == NULL) {
            srv.client_done = 1;  // half-close: no further receive
        } else {
            grpc_slice payload = take_payload(srv.recv_buffer);
            srv.recv_buffer = NULL;
            grpc_byte_buffer *echo = grpc_raw_byte_buffer_create(&payload, 1);
            grpc_slice_unref(payload);
            echo_queue_push(&srv.pending, echo);
            // The echo's send first, then the next receive: as GRPCTransport does, so that the
            // stream's window update rides in the echo's write (1 write per message, not 2).
            server_pump();
            server_recv_message();
            break;
        }
        server_pump();
        break;
    case SRV_SEND_MSG:
        if (!success) die("server: sending a message failed");
        grpc_byte_buffer_destroy(srv.sending);
        srv.sending = NULL;
        server_pump();
        break;
    case SRV_SEND_STATUS:
        if (!success) die("server: sending the status failed");
        srv.status = STATUS_SENT;
        server_maybe_finish();
        break;
    case SRV_RECV_CLOSE:
        if (!success) die("server: receiving close failed");
        if (srv.cancelled) die("server: the call was cancelled");
        srv.closed = 1;
        server_maybe_finish();
        break;
    case SRV_SHUTDOWN:
        server_signal(&srv.shutdown_done);
        break;
    default:
        die("server: unexpected tag");
    }
}

static void *server_poller(void *unused) {
    (void)unused;
    for (;;) {
        grpc_event event =
            grpc_completion_queue_next(srv.cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
        if (event.type == GRPC_QUEUE_SHUTDOWN) break;
        if (event.type != GRPC_OP_COMPLETE) continue;
        const struct op_tag *tag = event.tag;
        server_handle(tag->kind, event.success);
    }
    return NULL;
}

// ---------------------------------------------------------------------------------------------
// Client: one call; its batches are started under `mutex`, both by the main thread (to start a
// phase, while the poller is idle) and by the client poller thread (inside completions).

enum phase { PHASE_SETUP, PHASE_PINGPONG, PHASE_STREAM, PHASE_CLOSE };

static struct {
    grpc_channel *channel;
    grpc_completion_queue *cq;
    grpc_call *call;
    pthread_t thread;
    grpc_slice message;  // the 100-byte payload; each send refs it

    // Out-parameters, alive until the operations that fill them complete.
    grpc_metadata_array initial_metadata;
    grpc_metadata_array trailing_metadata;
    grpc_status_code status;
    grpc_slice status_details;
    grpc_byte_buffer *send_buffer;
    grpc_byte_buffer *recv_buffer;

    pthread_mutex_t mutex;
    pthread_cond_t cond;
    enum phase phase;
    int setup_pending;     // setup completions still to come
    int phase_done;
    int send_in_flight, recv_in_flight;

    // pingpong
    long rounds_total, rounds_started, rounds_done;
    uint64_t round_start_ns;
    uint64_t *rtt_ns;  // recorded round trips (after warmup)
    // stream
    long stream_count, sent, received;
    uint64_t stream_end_ns;
    // close
    int status_received, half_closed;
} cli = {.mutex = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER};

static void client_signal_done(void) {  // with cli.mutex held
    cli.phase_done = 1;
    pthread_cond_broadcast(&cli.cond);
}

static void client_wait_done(void) {  // with cli.mutex held
    while (!cli.phase_done) pthread_cond_wait(&cli.cond, &cli.mutex);
    cli.phase_done = 0;
}

static void client_send_message(void) {
    cli.send_buffer = grpc_raw_byte_buffer_create(&cli.message, 1);
    cli.send_in_flight = 1;
    grpc_op op;
    memset(&op, 0, sizeof op);
    op.op = GRPC_OP_SEND_MESSAGE;
    op.data.send_message.send_message = cli.send_buffer;
    start_batch(cli.call, &op, 1, CLI_SEND_MSG);
}

static void client_recv_message(void) {
    cli.recv_in_flight = 1;
    grpc_op op;
    memset(&op, 0, sizeof op);
    op.op = GRPC_OP_RECV_MESSAGE;
    op.data.recv_message.recv_message = &cli.recv_buffer;
    start_batch(cli.call, &op, 1, CLI_RECV_MSG);
}

// Reads and checks an echo, then destroys it.
static void client_check_echo(void) {
    if (cli.recv_buffer == NULL) die("client: the stream ended early");
    grpc_slice payload = take_payload(cli.recv_buffer);
    cli.recv_buffer = NULL;
    if (GRPC_SLICE_LENGTH(payload) != MESSAGE_SIZE ||
        memcmp(GRPC_SLICE_START_PTR(payload), GRPC_SLICE_START_PTR(cli.message), MESSAGE_SIZE) != 0) {
        die("client: the echo differs from the message");
    }
    grpc_slice_unref(payload);
}

static void client_start_round(void) {
    cli.rounds_started++;
    cli.round_start_ns = now_ns();
    client_send_message();  // the send before the receive (see SRV_RECV_MSG)
    client_recv_message();
}

// A ping-pong round ends when both its send and its receive completed.
static void client_round_step(void) {
    if (cli.send_in_flight || cli.recv_in_flight) return;
    if (cli.rounds_started < cli.rounds_total) {
        client_start_round();
    } else {
        client_signal_done();
    }
}

static void client_handle(enum op_kind kind, int success) {
    switch (kind) {
    case CLI_SEND_MD:
    case CLI_RECV_MD:
        if (!success) die("client: initial metadata failed");
        if (--cli.setup_pending == 0) client_signal_done();
        break;
    case CLI_SEND_MSG:
        if (!success) die("client: sending a message failed");
        grpc_byte_buffer_destroy(cli.send_buffer);
        cli.send_buffer = NULL;
        cli.send_in_flight = 0;
        if (cli.phase == PHASE_PINGPONG) {
            client_round_step();
        } else if (cli.phase == PHASE_STREAM) {
            if (cli.sent < cli.stream_count) {
                cli.sent++;
                client_send_message();
            } else if (cli.received == cli.stream_count) {
                client_signal_done();  // the last send's completion came after the last echo
            }
        }
        break;
    case CLI_RECV_MSG: {
        uint64_t end = now_ns();
        if (!success) die("client: receiving a message failed");
        client_check_echo();
        cli.recv_in_flight = 0;
        if (cli.phase == PHASE_PINGPONG) {
            long recorded = cli.rounds_done - WARMUP;
            if (recorded >= 0) cli.rtt_ns[recorded] = end - cli.round_start_ns;
            cli.rounds_done++;
            client_round_step();
        } else if (cli.phase == PHASE_STREAM) {
            if (++cli.received < cli.stream_count) {
                client_recv_message();
            } else {
                cli.stream_end_ns = end;
                if (!cli.send_in_flight) client_signal_done();
            }
        } else {
            die("client: unexpected message");
        }
        break;
    }
    case CLI_HALF_CLOSE:
        if (!success) die("client: half-close failed");
        cli.half_closed = 1;
        if (cli.status_received) client_signal_done();
        break;
    case CLI_RECV_STATUS:
        if (!success) die("client: receiving the status failed");
        if (cli.phase != PHASE_CLOSE) {
            char *details = grpc_slice_to_c_string(cli.status_details);
            fprintf(stderr, "core-pingpong: the call ended early: status %d: %s\n",
                    (int)cli.status, details);
            exit(2);
        }
        cli.status_received = 1;
        if (cli.half_closed) client_signal_done();
        break;
    default:
        die("client: unexpected tag");
    }
}

static void *client_poller(void *unused) {
    (void)unused;
    for (;;) {
        grpc_event event =
            grpc_completion_queue_next(cli.cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
        if (event.type == GRPC_QUEUE_SHUTDOWN) break;
        if (event.type != GRPC_OP_COMPLETE) continue;
        const struct op_tag *tag = event.tag;
        lock(&cli.mutex);
        client_handle(tag->kind, event.success);
        unlock(&cli.mutex);
    }
    return NULL;
}

// ---------------------------------------------------------------------------------------------
// Main thread.

static long parse_count(const char *text, const char *name) {
    char *end = NULL;
    errno = 0;
    long value = strtol(text, &end, 10);
    if (errno != 0 || end == text || *end != '\0' || value < 1 || value > 100000000) {
        fprintf(stderr, "core-pingpong: bad %s '%s' (want 1...100000000)\n", name, text);
        fprintf(stderr, "usage: core-pingpong [rounds] [stream_count] | --serve | --connect PORT [rounds]\n");
        exit(64);
    }
    return value;
}

static int compare_u64(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

// Nearest-rank percentile (rank = ceil(percent/100 * count)) of a sorted array, in µs.
static double percentile_us(const uint64_t *sorted, long count, long percent) {
    long rank = (percent * count + 99) / 100;
    if (rank < 1) rank = 1;
    return (double)sorted[rank - 1] / 1000.0;
}

static void start_thread(pthread_t *thread, void *(*body)(void *)) {
    if (pthread_create(thread, NULL, body, NULL) != 0) die("pthread_create failed");
}

// Starts the echo server on 127.0.0.1 (port picked by the kernel) and its poller thread.
static int server_start(void) {
    srv.cq = grpc_completion_queue_create_for_next(NULL);
    srv.server = grpc_server_create(NULL, NULL);
    grpc_server_register_completion_queue(srv.server, srv.cq, NULL);
    grpc_server_credentials *server_creds = grpc_insecure_server_credentials_create();
    int port = grpc_server_add_http2_port(srv.server, "127.0.0.1:0", server_creds);
    grpc_server_credentials_release(server_creds);
    if (port == 0) die("grpc_server_add_http2_port failed");
    grpc_server_start(srv.server);
    server_request_call();
    start_thread(&srv.thread, server_poller);
    return port;
}

// Shuts the server down (cancelling what is left) and joins its poller thread.
static void server_stop(void) {
    grpc_server_shutdown_and_notify(srv.server, srv.cq, tag_for(SRV_SHUTDOWN));
    grpc_server_cancel_all_calls(srv.server);
    lock(&srv.mutex);
    while (!srv.shutdown_done) pthread_cond_wait(&srv.cond, &srv.mutex);
    unlock(&srv.mutex);
    grpc_server_destroy(srv.server);
    grpc_completion_queue_shutdown(srv.cq);
    pthread_join(srv.thread, NULL);
    grpc_completion_queue_destroy(srv.cq);
    grpc_call_details_destroy(&srv.details);
    grpc_metadata_array_destroy(&srv.request_metadata);
    free(srv.pending.items);
}

// The client's whole run against `port`: open the stream, ping-pong, stream (unless
// stream_count is 0), half-close and wait for the status, tear down. Returns the stream
// phase's duration in ns (0 when skipped); the round trips are left in cli.rtt_ns.
static uint64_t client_run(int port, long rounds, long stream_count) {
    char target[64];
    snprintf(target, sizeof target, "127.0.0.1:%d", port);
    grpc_channel_credentials *channel_creds = grpc_insecure_credentials_create();
    cli.channel = grpc_channel_create(target, channel_creds, NULL);
    grpc_channel_credentials_release(channel_creds);
    cli.cq = grpc_completion_queue_create_for_next(NULL);
    start_thread(&cli.thread, client_poller);

    uint8_t bytes[MESSAGE_SIZE];
    for (int i = 0; i < MESSAGE_SIZE; i++) bytes[i] = (uint8_t)('a' + i % 26);
    cli.message = grpc_slice_from_copied_buffer((const char *)bytes, MESSAGE_SIZE);
    grpc_metadata_array_init(&cli.initial_metadata);
    grpc_metadata_array_init(&cli.trailing_metadata);
    cli.status_details = grpc_empty_slice();
    cli.rtt_ns = malloc((size_t)rounds * sizeof *cli.rtt_ns);
    if (cli.rtt_ns == NULL) die("out of memory");

    // Open the stream: send and receive initial metadata; ask for the status up front.
    lock(&cli.mutex);
    cli.call = grpc_channel_create_call(cli.channel, NULL, GRPC_PROPAGATE_DEFAULTS, cli.cq,
                                        grpc_slice_from_static_string(kMethod), NULL,
                                        gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
    if (cli.call == NULL) die("grpc_channel_create_call failed");
    {
        grpc_op ops[3];
        memset(ops, 0, sizeof ops);
        ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
        ops[0].flags = GRPC_INITIAL_METADATA_WAIT_FOR_READY;
        ops[0].data.send_initial_metadata.count = 0;
        ops[1].op = GRPC_OP_RECV_INITIAL_METADATA;
        ops[1].data.recv_initial_metadata.recv_initial_metadata = &cli.initial_metadata;
        ops[2].op = GRPC_OP_RECV_STATUS_ON_CLIENT;
        ops[2].data.recv_status_on_client.trailing_metadata = &cli.trailing_metadata;
        ops[2].data.recv_status_on_client.status = &cli.status;
        ops[2].data.recv_status_on_client.status_details = &cli.status_details;
        cli.phase = PHASE_SETUP;
        cli.setup_pending = 2;
        start_batch(cli.call, &ops[0], 1, CLI_SEND_MD);
        start_batch(cli.call, &ops[1], 1, CLI_RECV_MD);
        start_batch(cli.call, &ops[2], 1, CLI_RECV_STATUS);
    }
    client_wait_done();

    // Ping-pong: WARMUP unrecorded rounds, then `rounds` recorded ones.
    cli.phase = PHASE_PINGPONG;
    cli.rounds_total = WARMUP + rounds;
    cli.rounds_started = cli.rounds_done = 0;
    client_start_round();
    client_wait_done();

    // Stream: back-to-back sends (one in flight), echoes read as they come.
    uint64_t stream_ns = 0;
    if (stream_count > 0) {
        cli.phase = PHASE_STREAM;
        cli.stream_count = stream_count;
        cli.received = 0;
        cli.sent = 1;
        uint64_t stream_start_ns = now_ns();
        client_recv_message();
        client_send_message();
        client_wait_done();
        stream_ns = cli.stream_end_ns - stream_start_ns;
    }

    // Close: half-close, then wait for it and for the status.
    cli.phase = PHASE_CLOSE;
    {
        grpc_op op;
        memset(&op, 0, sizeof op);
        op.op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
        start_batch(cli.call, &op, 1, CLI_HALF_CLOSE);
    }
    client_wait_done();
    unlock(&cli.mutex);
    if (cli.status != GRPC_STATUS_OK) {
        char *details = grpc_slice_to_c_string(cli.status_details);
        fprintf(stderr, "core-pingpong: status %d: %s\n", (int)cli.status, details);
        gpr_free(details);
        exit(2);
    }

    // Tear down the client.
    grpc_call_unref(cli.call);
    grpc_channel_destroy(cli.channel);
    grpc_completion_queue_shutdown(cli.cq);
    pthread_join(cli.thread, NULL);
    grpc_completion_queue_destroy(cli.cq);
    grpc_metadata_array_destroy(&cli.initial_metadata);
    grpc_metadata_array_destroy(&cli.trailing_metadata);
    grpc_slice_unref(cli.status_details);
    grpc_slice_unref(cli.message);
    return stream_ns;
}

static void print_pingpong_figures(long rounds) {
    qsort(cli.rtt_ns, (size_t)rounds, sizeof *cli.rtt_ns, compare_u64);
    double sum = 0;
    for (long i = 0; i < rounds; i++) sum += (double)cli.rtt_ns[i];
    printf("pingpong_p50_us=%.1f\n", percentile_us(cli.rtt_ns, rounds, 50));
    printf("pingpong_p99_us=%.1f\n", percentile_us(cli.rtt_ns, rounds, 99));
    printf("pingpong_mean_us=%.1f\n", sum / (double)rounds / 1000.0);
}

// --serve: the echo server until stdin reaches EOF or SIGTERM arrives.
static int serve(void) {
    // SIGTERM is blocked before grpc_init, so every thread inherits the mask and the signal
    // is only seen through the signalfd.
    sigset_t signals;
    sigemptyset(&signals);
    sigaddset(&signals, SIGTERM);
    if (pthread_sigmask(SIG_BLOCK, &signals, NULL) != 0) die("pthread_sigmask failed");
    int signal_fd = signalfd(-1, &signals, SFD_CLOEXEC);
    if (signal_fd < 0) die("signalfd failed");

    grpc_init();
    srv.serve_many = 1;
    int port = server_start();
    printf("listening on 127.0.0.1:%d\n", port);
    fflush(stdout);

    struct pollfd fds[2] = {{.fd = 0, .events = POLLIN}, {.fd = signal_fd, .events = POLLIN}};
    for (;;) {
        if (poll(fds, 2, -1) < 0) {
            if (errno == EINTR) continue;
            die("poll failed");
        }
        if (fds[1].revents != 0) break;
        if (fds[0].revents != 0) {
            char buffer[256];
            ssize_t n = read(0, buffer, sizeof buffer);
            if (n == 0 || (n < 0 && errno != EINTR && errno != EAGAIN)) break;
        }
    }
    server_stop();
    close(signal_fd);
    grpc_shutdown();
    return 0;
}

static void usage(void) {
    fprintf(stderr, "usage: core-pingpong [rounds] [stream_count]\n"
                    "       core-pingpong --serve\n"
                    "       core-pingpong --connect PORT [rounds]\n");
}

int main(int argc, char **argv) {
    if (argc > 1 && strcmp(argv[1], "--serve") == 0) {
        if (argc != 2) {
            usage();
            return 64;
        }
        return serve();
    }
    if (argc > 1 && strcmp(argv[1], "--connect") == 0) {
        if (argc < 3 || argc > 4) {
            usage();
            return 64;
        }
        int port = (int)parse_count(argv[2], "port");
        long rounds = argc > 3 ? parse_count(argv[3], "rounds") : DEFAULT_ROUNDS;
        grpc_init();
        client_run(port, rounds, 0);
        grpc_shutdown();
        print_pingpong_figures(rounds);
        free(cli.rtt_ns);
        return 0;
    }
    if (argc > 3) {
        usage();
        return 64;
    }
    long rounds = argc > 1 ? parse_count(argv[1], "rounds") : DEFAULT_ROUNDS;
    long stream_count = argc > 2 ? parse_count(argv[2], "stream_count") : DEFAULT_STREAM_COUNT;

    grpc_init();
    int port = server_start();
    uint64_t stream_ns = client_run(port, rounds, stream_count);

    // The server call finishes once its status is sent and the call closed.
    lock(&srv.mutex);
    while (!srv.call_finished) pthread_cond_wait(&srv.cond, &srv.mutex);
    unlock(&srv.mutex);
    server_stop();

    grpc_shutdown();

    // Figures.
    print_pingpong_figures(rounds);
    printf("stream_msgs_per_s=%.0f\n", (double)stream_count / ((double)stream_ns / 1e9));
    free(cli.rtt_ns);
    return 0;
}
