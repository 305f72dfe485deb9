// TestAgentsPlugin: agent types for the runtime's tests. Plugin "test-agents" 1.0.0.
//
// Every JSON payload below is content type application/json; a request payload that is not a
// JSON object with the named string members is refused with fail(AGENTD_INVALID_ARGUMENT, why).
//
//   failing      RPC `Boom` -> fail(AGENTD_FAILED, "boom: the handler failed on purpose"),
//                returns AGENTD_FAILED. (An event `Boom` just returns AGENTD_FAILED.)
//   silent-fail  any message type ("*") -> returns AGENTD_FAILED without calling fail().
//   none         any message type ("*") -> returns AGENTD_OK without replying (AutoGen's None).
//   deferred     RPC `Later` -> returns AGENTD_PENDING; a plugin thread replies ~50 ms later with
//                `Done` {"done": true}. Each instance counts its handlers in flight (from the
//                handler's start until just before the reply) with an atomic; once it has seen two
//                at the same time, that call and every later one on the instance fail with
//                AGENTD_FAILED "concurrent handlers: ...".
//   counter      subscribed to topic type "count" (type subscription) and topic prefix
//                "count-prefix:" (prefix subscription). Any event, whatever its message type,
//                adds 1 to the instance's counter. RPC `Get` -> `Count`
//                {"count": N, "key": "<agent key>"}; any other RPC type -> fail
//                AGENTD_UNKNOWN_MESSAGE_TYPE. snapshot/restore carry the counter (state: the byte
//                1, then the count as 8 bytes little-endian).
//   relay        RPC `Relay` {"to_type": T, "to_key": K, "text": X} -> host->send(`Echo`
//                {"text": X}) to agent T/K as this agent, returns AGENTD_PENDING; the send
//                completion replies to the original call with the answer as it came (message type,
//                content type, payload), or fails it with the answer's status and error (when the
//                error text is empty: "relay: T/K answered with status N"). If send() itself
//                refuses, the call fails at once with send's status.
//   publisher    RPC `Publish` {"topic": T, "source": S, "text": X} -> host->publish(`Note`
//                {"text": X}) to topic (T, S) as this agent, then reply `Published` {"ok": true};
//                if publish refuses: fail with its status.
//   settings     RPC `Setting` {"key": K} -> host->setting(K): reply `SettingValue`
//                {"value": V}, or fail AGENTD_NOT_FOUND "settings: no setting 'K' in
//                [plugin.test-agents]" (another status: fail with it).
// nanosleep and pthreads under -std=c11.
#define _POSIX_C_SOURCE 200809L

#include <agent_plugin.h>

#include <errno.h>
#include <stdarg.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const agentd_host_api *g_host;
static agentd_plugin_ref *g_self;

// --- A small JSON scanner ---------------------------------------------------------------------
//
// Validates a whole JSON document and extracts one top-level string member of an object.
// Strict RFC 8259: no trailing commas, no comments, no leading zeros, UTF-8 validated,
// control characters must be escaped, unpaired surrogate escapes are refused (they have no UTF-8
// form). Nesting is limited so that a hostile payload cannot exhaust the stack.

enum { JSON_MAX_DEPTH = 128 };

typedef struct json_scanner {
    const uint8_t *p;
    const uint8_t *end;
    const char *error;      // static text: why the document is malformed
    size_t error_offset;    // where
    const uint8_t *start;
} json_scanner;

typedef struct json_buffer {
    char *data;
    size_t length;
    size_t capacity;
    bool out_of_memory;
} json_buffer;

static void buffer_free(json_buffer *b) {
    free(b->data);
    b->data = NULL;
    b->length = b->capacity = 0;
}

static void buffer_append(json_buffer *b, const void *bytes, size_t n) {
    if (b->out_of_memory) return;
    if (b->length + n + 1 > b->capacity) {
        size_t capacity = b->capacity ? b->capacity : 64;
        while (b->length + n + 1 > capacity) capacity *= 2;
        char *grown = realloc(b->data, capacity);
        if (!grown) {
            b->out_of_memory = true;
            return;
        }
        b->data = grown;
        b->capacity = capacity;
    }
    memcpy(b->data + b->length, bytes, n);
    b->length += n;
    b->data[b->length] = '\0';
}

static void buffer_append_str(json_buffer *b, const char *text) { buffer_append(b, text, strlen(text)); }

static bool json_error(json_scanner *s, const char *why) {
    if (!s->error) {
        s->error = why;
        s->error_offset = (size_t)(s->p - s->start);
    }
    return false;
}

static void json_skip_space(json_scanner *s) {
    while (s->p < s->end && (*s->p == ' ' || *s->p == '\t' || *s->p == '\n' || *s->p == '\r')) s->p++;
}

static void utf8_encode(json_buffer *out, uint32_t cp) {
    uint8_t b[4];
    size_t n;
    if (cp < 0x80) {
        b[0] = (uint8_t)cp;
        n = 1;
    } else if (cp < 0x800) {
        b[0] = (uint8_t)(0xC0 | (cp >> 6));
        b[1] = (uint8_t)(0x80 | (cp & 0x3F));
        n = 2;
    } else if (cp < 0x10000) {
        b[0] = (uint8_t)(0xE0 | (cp >> 12));
        b[1] = (uint8_t)(0x80 | ((cp >> 6) & 0x3F));
        b[2] = (uint8_t)(0x80 | (cp & 0x3F));
        n = 3;
    } else {
        b[0] = (uint8_t)(0xF0 | (cp >> 18));
        b[1] = (uint8_t)(0x80 | ((cp >> 12) & 0x3F));
        b[2] = (uint8_t)(0x80 | ((cp >> 6) & 0x3F));
        b[3] = (uint8_t)(0x80 | (cp & 0x3F));
        n = 4;
    }
    buffer_append(out, b, n);
}

// Length of the well-formed UTF-8 sequence at p (1..4), or 0 if it is not one.
static size_t utf8_sequence_length(const uint8_t *p, const uint8_t *end) {
    uint8_t c = p[0];
    if (c < 0x80) return 1;
    size_t n;
    uint32_t cp;
    if (c >= 0xC2 && c <= 0xDF) {
        n = 2;
        cp = c & 0x1F;
    } else if (c >= 0xE0 && c <= 0xEF) {
        n = 3;
        cp = c & 0x0F;
    } else if (c >= 0xF0 && c <= 0xF4) {
        n = 4;
        cp = c & 0x07;
    } else {
        return 0;
    }
    if ((size_t)(end - p) < n) return 0;
    for (size_t i = 1; i < n; i++) {
        if ((p[i] & 0xC0) != 0x80) return 0;
        cp = (cp << 6) | (p[i] & 0x3F);
    }
    if ((n == 3 && cp < 0x800) || (n == 4 && cp < 0x10000) || cp > 0x10FFFF ||
        (cp >= 0xD800 && cp <= 0xDFFF))
        return 0;
    return n;
}

static bool json_hex4(json_scanner *s, uint32_t *value) {
    if (s->end - s->p < 4) return json_error(s, "truncated \\u escape");
    uint32_t v = 0;
    for (int i = 0; i < 4; i++) {
        uint8_t c = s->p[i];
        v <<= 4;
        if (c >= '0' && c <= '9') v |= (uint32_t)(c - '0');
        else if (c >= 'a' && c <= 'f') v |= (uint32_t)(c - 'a' + 10);
        else if (c >= 'A' && c <= 'F') v |= (uint32_t)(c - 'A' + 10);
        else return json_error(s, "bad hex digit in \\u escape");
    }
    s->p += 4;
    *value = v;
    return true;
}

// Scans a string starting at its opening quote; decodes it into `out` when `out` is not NULL.
static bool json_string(json_scanner *s, json_buffer *out) {
    s->p++;  // the opening quote
    for (;;) {
        if (s->p >= s->end) return json_error(s, "unterminated string");
        uint8_t c = *s->p;
        if (c == '"') {
            s->p++;
            return true;
        }
        if (c < 0x20) return json_error(s, "unescaped control character in string");
        if (c == '\\') {
            s->p++;
            if (s->p >= s->end) return json_error(s, "unterminated escape");
            uint8_t e = *s->p++;
            char simple = 0;
            switch (e) {
            case '"': simple = '"'; break;
            case '\\': simple = '\\'; break;
            case '/': simple = '/'; break;
            case 'b': simple = '\b'; break;
            case 'f': simple = '\f'; break;
            case 'n': simple = '\n'; break;
            case 'r': simple = '\r'; break;
            case 't': simple = '\t'; break;
            case 'u': {
                uint32_t cp;
                if (!json_hex4(s, &cp)) return false;
                if (cp >= 0xDC00 && cp <= 0xDFFF) return json_error(s, "unpaired low surrogate escape");
                if (cp >= 0xD800 && cp <= 0xDBFF) {
                    uint32_t low;
                    if (s->end - s->p < 2 || s->p[0] != '\\' || s->p[1] != 'u')
                        return json_error(s, "unpaired high surrogate escape");
                    s->p += 2;
                    if (!json_hex4(s, &low)) return false;
                    if (low < 0xDC00 || low > 0xDFFF) return json_error(s, "unpaired high surrogate escape");
                    cp = 0x10000 + ((cp - 0xD800) << 10) + (low - 0xDC00);
                }
                if (out) utf8_encode(out, cp);
                continue;
            }
            default:
                s->p--;
                return json_error(s, "invalid escape in string");
            }
            if (out) buffer_append(out, &simple, 1);
            continue;
        }
        size_t n = utf8_sequence_length(s->p, s->end);
        if (n == 0) return json_error(s, "invalid UTF-8 in string");
        if (out) buffer_append(out, s->p, n);
        s->p += n;
    }
}

static bool json_digits(json_scanner *s) {
    if (s->p >= s->end || *s->p < '0' || *s->p > '9') return json_error(s, "malformed number");
    while (s->p < s->end && *s->p >= '0' && *s->p <= '9') s->p++;
    return true;
}

static bool json_number(json_scanner *s) {
    if (*s->p == '-') s->p++;
    if (s->p < s->end && *s->p == '0') {
        s->p++;
    } else if (!json_digits(s)) {
        return false;
    }
    if (s->p < s->end && *s->p == '.') {
        s->p++;
        if (!json_digits(s)) return false;
    }
    if (s->p < s->end && (*s->p == 'e' || *s->p == 'E')) {
        s->p++;
        if (s->p < s->end && (*s->p == '+' || *s->p == '-')) s->p++;
        if (!json_digits(s)) return false;
    }
    return true;
}

static bool json_literal(json_scanner *s, const char *word) {
    size_t n = strlen(word);
    if ((size_t)(s->end - s->p) < n || memcmp(s->p, word, n) != 0) return json_error(s, "unexpected character");
    s->p += n;
    return true;
}

typedef enum json_kind { JSON_STRING, JSON_OTHER } json_kind;

static bool json_value(json_scanner *s, int depth, json_kind *kind);

static bool json_container(json_scanner *s, int depth, bool object) {
    if (depth >= JSON_MAX_DEPTH) return json_error(s, "nested too deeply");
    s->p++;  // '{' or '['
    json_skip_space(s);
    uint8_t close = object ? '}' : ']';
    if (s->p < s->end && *s->p == close) {
        s->p++;
        return true;
    }
    for (;;) {
        json_kind kind;
        if (object) {
            json_skip_space(s);
            if (s->p >= s->end || *s->p != '"') return json_error(s, "expected a member name");
            if (!json_string(s, NULL)) return false;
            json_skip_space(s);
            if (s->p >= s->end || *s->p != ':') return json_error(s, "expected ':'");
            s->p++;
        }
        if (!json_value(s, depth + 1, &kind)) return false;
        json_skip_space(s);
        if (s->p < s->end && *s->p == ',') {
            s->p++;
            continue;
        }
        if (s->p < s->end && *s->p == close) {
            s->p++;
            return true;
        }
        return json_error(s, object ? "expected ',' or '}'" : "expected ',' or ']'");
    }
}

static bool json_value(json_scanner *s, int depth, json_kind *kind) {
    json_skip_space(s);
    if (s->p >= s->end) return json_error(s, "unexpected end of input");
    *kind = JSON_OTHER;
    switch (*s->p) {
    case '{': return json_container(s, depth, true);
    case '[': return json_container(s, depth, false);
    case '"': *kind = JSON_STRING; return json_string(s, NULL);
    case 't': return json_literal(s, "true");
    case 'f': return json_literal(s, "false");
    case 'n': return json_literal(s, "null");
    default:
        if (*s->p == '-' || (*s->p >= '0' && *s->p <= '9')) return json_number(s);
        return json_error(s, "unexpected character");
    }
}

typedef enum json_member_result {
    MEMBER_FOUND,       // `value` holds the decoded string
    MEMBER_MISSING,
    MEMBER_NOT_STRING,
    MEMBER_MALFORMED,   // the document is not valid JSON, or not an object (see scanner.error)
    MEMBER_NO_MEMORY,
} json_member_result;

// Validates `json` as a whole and finds the top-level object member `name` (the last one if it
// is repeated). On MEMBER_FOUND `value` holds the decoded, NUL-terminated string (free it with
// buffer_free); on MEMBER_MALFORMED `s->error` and `s->error_offset` say why.
static json_member_result json_find_string_member(json_scanner *s, agentd_bytes json, const char *name,
                                                  json_buffer *value) {
    static const uint8_t empty[1];
    memset(value, 0, sizeof *value);
    s->start = s->p = json.data ? json.data : empty;
    s->end = s->p + json.length;
    s->error = NULL;
    s->error_offset = 0;

    json_skip_space(s);
    if (s->p >= s->end) {
        json_error(s, "empty payload");
        return MEMBER_MALFORMED;
    }
    if (*s->p != '{') {
        json_kind kind;
        if (json_value(s, 0, &kind)) {
            json_skip_space(s);
            if (s->p != s->end) json_error(s, "trailing characters after the JSON value");
            else json_error(s, "the top-level value is not an object");
        }
        return MEMBER_MALFORMED;
    }

    json_member_result result = MEMBER_MISSING;
    s->p++;
    json_skip_space(s);
    if (s->p < s->end && *s->p == '}') {
        s->p++;
    } else {
        json_buffer key = {0};
        for (;;) {
            json_skip_space(s);
            if (s->p >= s->end || *s->p != '"') {
                json_error(s, "expected a member name");
                goto malformed;
            }
            key.length = 0;
            if (!json_string(s, &key)) goto malformed;
            if (key.out_of_memory) goto no_memory;
            json_skip_space(s);
            if (s->p >= s->end || *s->p != ':') {
                json_error(s, "expected ':'");
                goto malformed;
            }
            s->p++;
            json_skip_space(s);
            bool wanted = key.length == strlen(name) && memcmp(key.data, name, key.length) == 0;
            if (wanted && s->p < s->end && *s->p == '"') {
                value->length = 0;
                if (!json_string(s, value)) goto malformed;
                if (value->out_of_memory) goto no_memory;
                if (!value->data) buffer_append(value, "", 0);  // an empty string still gets a buffer
                if (value->out_of_memory) goto no_memory;
                result = MEMBER_FOUND;
            } else {
                json_kind kind;
                if (!json_value(s, 1, &kind)) goto malformed;
                if (wanted) result = MEMBER_NOT_STRING;
            }
            json_skip_space(s);
            if (s->p < s->end && *s->p == ',') {
                s->p++;
                continue;
            }
            if (s->p < s->end && *s->p == '}') {
                s->p++;
                break;
            }
            json_error(s, "expected ',' or '}'");
            goto malformed;
        }
        buffer_free(&key);
        goto done;
    malformed:
        buffer_free(&key);
        buffer_free(value);
        return MEMBER_MALFORMED;
    no_memory:
        buffer_free(&key);
        buffer_free(value);
        return MEMBER_NO_MEMORY;
    }
done:
    json_skip_space(s);
    if (s->p != s->end) {
        buffer_free(value);
        json_error(s, "trailing characters after the JSON value");
        return MEMBER_MALFORMED;
    }
    if (result != MEMBER_FOUND) buffer_free(value);
    return result;
}

// Appends `length` bytes of `text` as a JSON string literal, quotes included. Bytes that are not
// well-formed UTF-8 become U+FFFD, so the output is valid JSON whatever the input.
static void json_append_string(json_buffer *out, const char *text, size_t length) {
    static const char hex[] = "0123456789abcdef";
    const uint8_t *p = (const uint8_t *)text, *end = p + length;
    buffer_append(out, "\"", 1);
    while (p < end) {
        uint8_t c = *p;
        char escape[7];
        size_t n = 0;
        switch (c) {
        case '"': n = 2; memcpy(escape, "\\\"", 2); break;
        case '\\': n = 2; memcpy(escape, "\\\\", 2); break;
        case '\b': n = 2; memcpy(escape, "\\b", 2); break;
        case '\f': n = 2; memcpy(escape, "\\f", 2); break;
        case '\n': n = 2; memcpy(escape, "\\n", 2); break;
        case '\r': n = 2; memcpy(escape, "\\r", 2); break;
        case '\t': n = 2; memcpy(escape, "\\t", 2); break;
        default:
            if (c < 0x20) {
                memcpy(escape, "\\u00", 4);
                escape[4] = hex[c >> 4];
                escape[5] = hex[c & 0xF];
                n = 6;
            }
        }
        if (n) {
            buffer_append(out, escape, n);
            p++;
            continue;
        }
        size_t run = utf8_sequence_length(p, end);
        if (run == 0) {
            buffer_append(out, "\\ufffd", 6);
            p++;
            continue;
        }
        buffer_append(out, p, run);
        p += run;
    }
    buffer_append(out, "\"", 1);
}

// --- Helpers ------------------------------------------------------------------------------------

static agentd_str str_of(const char *data, size_t length) {
    agentd_str s = {data, length};
    return s;
}

static agentd_bytes bytes_of(const json_buffer *b) {
    agentd_bytes bytes = {(const uint8_t *)b->data, b->length};
    return bytes;
}

static int clip(size_t length) { return (int)(length > 200 ? 200 : length); }

// Answers the RPC with an error (when it is one) and returns `status`.
#if defined(__GNUC__) || defined(__clang__)
__attribute__((format(printf, 3, 4)))
#endif
static agentd_status fail_with(const agentd_message *m, agentd_status status, const char *format, ...) {
    char reason[512];
    va_list args;
    va_start(args, format);
    int n = vsnprintf(reason, sizeof reason, format, args);
    va_end(args);
    size_t length = n < 0 ? 0 : (size_t)n < sizeof reason ? (size_t)n : sizeof reason - 1;
    if (m->is_rpc) {
        m->host->fail(m->call, status, str_of(reason, length));
    } else {
        m->host->log(g_self, m->agent, AGENTD_LOG_WARNING, str_of(reason, length));
    }
    return status;
}

static bool is_json_content_type(agentd_str ct) {
    static const char json[] = "application/json";
    size_t n = sizeof json - 1;
    if (ct.length < n) return false;
    for (size_t i = 0; i < n; i++) {
        char c = ct.data[i];
        if (c >= 'A' && c <= 'Z') c = (char)(c - 'A' + 'a');
        if (c != json[i]) return false;
    }
    return ct.length == n || ct.data[n] == ';' || ct.data[n] == ' ';
}

// Reads the string member `name` of the request's JSON object into `value`; on failure fails the
// call (AGENTD_INVALID_ARGUMENT) and returns false with *status set.
static bool require_string(const agentd_message *m, const char *agent, const char *name, json_buffer *value,
                           agentd_status *status) {
    if (!is_json_content_type(m->content_type)) {
        *status = fail_with(m, AGENTD_INVALID_ARGUMENT, "%s: expected content type application/json, got '%.*s'",
                            agent, clip(m->content_type.length), m->content_type.data ? m->content_type.data : "");
        return false;
    }
    json_scanner scanner;
    switch (json_find_string_member(&scanner, m->payload, name, value)) {
    case MEMBER_FOUND:
        return true;
    case MEMBER_MISSING:
        *status = fail_with(m, AGENTD_INVALID_ARGUMENT, "%s: the payload has no \"%s\" member", agent, name);
        return false;
    case MEMBER_NOT_STRING:
        *status = fail_with(m, AGENTD_INVALID_ARGUMENT, "%s: the \"%s\" member is not a string", agent, name);
        return false;
    case MEMBER_MALFORMED:
        *status = fail_with(m, AGENTD_INVALID_ARGUMENT, "%s: malformed JSON payload: %s (at byte %zu)", agent,
                            scanner.error, scanner.error_offset);
        return false;
    case MEMBER_NO_MEMORY:
        break;
    }
    *status = fail_with(m, AGENTD_FAILED, "%s: out of memory", agent);
    return false;
}

static agentd_status reply_json(const agentd_message *m, const char *message_type, json_buffer *json) {
    if (json->out_of_memory) {
        buffer_free(json);
        return fail_with(m, AGENTD_FAILED, "%.*s: out of memory", clip(m->agent_type.length), m->agent_type.data);
    }
    agentd_status status = m->host->reply(m->call, agentd_cstr(message_type), agentd_cstr("application/json"),
                                          bytes_of(json));
    buffer_free(json);
    return status;
}

// A counter's state: the byte 1, then the count as 8 bytes little-endian.
enum { COUNTER_STATE_VERSION = 1, COUNTER_STATE_SIZE = 9 };

static void encode_counter(uint64_t count, uint8_t state[COUNTER_STATE_SIZE]) {
    state[0] = COUNTER_STATE_VERSION;
    for (int i = 0; i < 8; i++) state[1 + i] = (uint8_t)(count >> (8 * i));
}

static bool decode_counter(agentd_bytes state, uint64_t *count) {
    if (state.length != COUNTER_STATE_SIZE || state.data[0] != COUNTER_STATE_VERSION) return false;
    uint64_t value = 0;
    for (int i = 0; i < 8; i++) value |= (uint64_t)state.data[1 + i] << (8 * i);
    *count = value;
    return true;
}

// --- failing, silent-fail, none -----------------------------------------------------------------

static agentd_status on_boom(void *instance, const agentd_message *m) {
    (void)instance;
    if (m->is_rpc) m->host->fail(m->call, AGENTD_FAILED, agentd_cstr("boom: the handler failed on purpose"));
    return AGENTD_FAILED;
}

static agentd_status on_silent_fail(void *instance, const agentd_message *m) {
    (void)instance;
    (void)m;
    return AGENTD_FAILED;
}

static agentd_status on_none(void *instance, const agentd_message *m) {
    (void)instance;
    (void)m;
    return AGENTD_OK;
}

// --- deferred -----------------------------------------------------------------------------------

typedef struct deferred_instance {
    atomic_int active;           // handlers in flight: from the handler's start to just before the reply
    atomic_bool saw_concurrent;  // once two were in flight together, every call fails
    atomic_int threads;          // reply threads that may still touch this instance
} deferred_instance;

// Every reply thread, joined when finished (on the next Later) or at unload, so that no plugin
// code runs after unload() returns.
typedef struct reply_thread {
    pthread_t thread;
    atomic_bool finished;
    struct reply_thread *next;
} reply_thread;

static pthread_mutex_t g_threads_lock = PTHREAD_MUTEX_INITIALIZER;
static reply_thread *g_threads;

typedef struct deferred_job {
    const agentd_host_api *host;
    agentd_call *call;
    deferred_instance *instance;
    reply_thread *record;
} deferred_job;

static void reap_finished_threads_locked(void) {
    reply_thread **link = &g_threads;
    while (*link) {
        reply_thread *record = *link;
        if (atomic_load(&record->finished)) {
            pthread_join(record->thread, NULL);
            *link = record->next;
            free(record);
        } else {
            link = &record->next;
        }
    }
}

static void *deferred_reply(void *argument) {
    deferred_job *job = argument;
    struct timespec delay = {0, 50 * 1000 * 1000};
    while (nanosleep(&delay, &delay) != 0 && errno == EINTR) {
    }
    // Leave the "in flight" count before replying: the reply lets the runtime deliver the next
    // message, whose handler must not see this one as still running.
    atomic_fetch_sub(&job->instance->active, 1);
    static const char done[] = "{\"done\": true}";
    agentd_bytes payload = {(const uint8_t *)done, sizeof done - 1};
    job->host->reply(job->call, agentd_cstr("Done"), agentd_cstr("application/json"), payload);
    atomic_fetch_sub(&job->instance->threads, 1);  // the last touch of the instance
    reply_thread *record = job->record;
    free(job);
    atomic_store(&record->finished, true);
    return NULL;
}

static agentd_status on_later(void *instance, const agentd_message *m) {
    deferred_instance *self = instance;
    if (atomic_fetch_add(&self->active, 1) != 0) atomic_store(&self->saw_concurrent, true);
    if (atomic_load(&self->saw_concurrent)) {
        atomic_fetch_sub(&self->active, 1);
        return fail_with(m, AGENTD_FAILED,
                         "concurrent handlers: deferred/%.*s ran two handlers at the same time",
                         clip(m->agent_key.length), m->agent_key.data);
    }
    if (!m->is_rpc) {  // an event Later: nothing to answer
        atomic_fetch_sub(&self->active, 1);
        return AGENTD_OK;
    }

    deferred_job *job = malloc(sizeof *job);
    reply_thread *record = calloc(1, sizeof *record);
    if (!job || !record) {
        free(job);
        free(record);
        atomic_fetch_sub(&self->active, 1);
        return fail_with(m, AGENTD_FAILED, "deferred: out of memory");
    }
    job->host = m->host;
    job->call = m->call;
    job->instance = self;
    job->record = record;
    atomic_init(&record->finished, false);

    atomic_fetch_add(&self->threads, 1);
    pthread_mutex_lock(&g_threads_lock);
    reap_finished_threads_locked();
    int error = pthread_create(&record->thread, NULL, deferred_reply, job);
    if (error == 0) {
        record->next = g_threads;
        g_threads = record;
    }
    pthread_mutex_unlock(&g_threads_lock);
    if (error != 0) {
        free(job);
        free(record);
        atomic_fetch_sub(&self->threads, 1);
        atomic_fetch_sub(&self->active, 1);
        return fail_with(m, AGENTD_FAILED, "deferred: cannot start the reply thread (error %d)", error);
    }
    return AGENTD_PENDING;
}

static agentd_status deferred_create(agentd_plugin_ref *plugin, const agentd_agent_type *type,
                                     agentd_agent_ref *agent, agentd_str key, void **instance) {
    (void)plugin;
    (void)type;
    (void)agent;
    (void)key;
    deferred_instance *self = malloc(sizeof *self);
    if (!self) return AGENTD_FAILED;
    atomic_init(&self->active, 0);
    atomic_init(&self->saw_concurrent, false);
    atomic_init(&self->threads, 0);
    *instance = self;
    return AGENTD_OK;
}

static void deferred_destroy(void *instance) {
    deferred_instance *self = instance;
    // A reply may still be on its way (the runtime may retire an instance with a call pending):
    // wait for it rather than free what its thread still uses.
    struct timespec tick = {0, 1000 * 1000};
    while (atomic_load(&self->threads) != 0) nanosleep(&tick, NULL);
    free(self);
}

// --- counter ------------------------------------------------------------------------------------

typedef struct counter_instance {
    uint64_t count;  // events received
} counter_instance;

static agentd_status on_count_event(void *instance, const agentd_message *m) {
    counter_instance *self = instance;
    if (m->is_rpc) {
        return fail_with(m, AGENTD_UNKNOWN_MESSAGE_TYPE, "counter: no RPC '%.*s' (only Get)",
                         clip(m->message_type.length), m->message_type.data);
    }
    self->count++;
    return AGENTD_OK;
}

static agentd_status on_get(void *instance, const agentd_message *m) {
    counter_instance *self = instance;
    if (!m->is_rpc) {  // an event that happens to be named Get: counted like any other
        self->count++;
        return AGENTD_OK;
    }
    char number[32];
    snprintf(number, sizeof number, "%llu", (unsigned long long)self->count);
    json_buffer reply = {0};
    buffer_append_str(&reply, "{\"count\": ");
    buffer_append_str(&reply, number);
    buffer_append_str(&reply, ", \"key\": ");
    json_append_string(&reply, m->agent_key.data, m->agent_key.length);
    buffer_append_str(&reply, "}");
    return reply_json(m, "Count", &reply);
}

static agentd_status counter_create(agentd_plugin_ref *plugin, const agentd_agent_type *type,
                                    agentd_agent_ref *agent, agentd_str key, void **instance) {
    (void)plugin;
    (void)type;
    (void)agent;
    (void)key;
    counter_instance *self = calloc(1, sizeof *self);
    if (!self) return AGENTD_FAILED;
    *instance = self;
    return AGENTD_OK;
}

static void free_instance(void *instance) { free(instance); }

static agentd_status counter_snapshot(void *instance, agentd_write_fn write, void *sink) {
    const counter_instance *self = instance;
    uint8_t state[COUNTER_STATE_SIZE];
    encode_counter(self->count, state);
    agentd_bytes bytes = {state, sizeof state};
    write(sink, bytes);
    return AGENTD_OK;
}

static agentd_status counter_restore(void *instance, agentd_bytes state) {
    counter_instance *self = instance;
    if (!decode_counter(state, &self->count)) {
        g_host->log(g_self, NULL, AGENTD_LOG_WARNING,
                    agentd_cstr("counter: refusing a state that is not 9 bytes starting with version 1"));
        return AGENTD_INVALID_ARGUMENT;
    }
    return AGENTD_OK;
}

// --- relay --------------------------------------------------------------------------------------

typedef struct relay_job {
    const agentd_host_api *host;
    agentd_call *call;
    json_buffer target;  // "T/K", for error messages
} relay_job;

static void on_relay_response(void *context, const agentd_response *response) {
    relay_job *job = context;
    if (response->status == AGENTD_OK) {
        job->host->reply(job->call, response->message_type, response->content_type, response->payload);
    } else if (response->error.length > 0) {
        job->host->fail(job->call, response->status, response->error);
    } else {
        char reason[300];
        int n = snprintf(reason, sizeof reason, "relay: %.*s answered with status %d", clip(job->target.length),
                         job->target.data, (int)response->status);
        job->host->fail(job->call, response->status,
                        str_of(reason, n < 0 ? 0 : (size_t)n < sizeof reason ? (size_t)n : sizeof reason - 1));
    }
    buffer_free(&job->target);
    free(job);
}

static agentd_status on_relay(void *instance, const agentd_message *m) {
    (void)instance;
    agentd_status status = AGENTD_OK;
    json_buffer to_type = {0}, to_key = {0}, text = {0};
    if (!require_string(m, "relay", "to_type", &to_type, &status)) return status;
    if (!require_string(m, "relay", "to_key", &to_key, &status)) {
        buffer_free(&to_type);
        return status;
    }
    if (!require_string(m, "relay", "text", &text, &status)) {
        buffer_free(&to_type);
        buffer_free(&to_key);
        return status;
    }
    if (!m->is_rpc) {
        buffer_free(&to_type);
        buffer_free(&to_key);
        buffer_free(&text);
        return AGENTD_OK;
    }

    json_buffer echo = {0};
    buffer_append_str(&echo, "{\"text\": ");
    json_append_string(&echo, text.data, text.length);
    buffer_append_str(&echo, "}");
    buffer_free(&text);

    relay_job *job = calloc(1, sizeof *job);
    if (job) {
        job->host = m->host;
        job->call = m->call;
        buffer_append(&job->target, to_type.data, to_type.length);
        buffer_append_str(&job->target, "/");
        buffer_append(&job->target, to_key.data, to_key.length);
    }
    if (!job || job->target.out_of_memory || echo.out_of_memory) {
        if (job) buffer_free(&job->target);
        free(job);
        buffer_free(&echo);
        buffer_free(&to_type);
        buffer_free(&to_key);
        return fail_with(m, AGENTD_FAILED, "relay: out of memory");
    }

    // After send() accepts the request, `job` belongs to the completion, which may already have
    // run (and freed it) by the time send() returns: do not touch it then.
    status = m->host->send(m->agent, str_of(to_type.data, to_type.length), str_of(to_key.data, to_key.length),
                           agentd_cstr("Echo"), agentd_cstr("application/json"), bytes_of(&echo), on_relay_response,
                           job);
    buffer_free(&echo);
    buffer_free(&to_type);
    buffer_free(&to_key);
    if (status != AGENTD_OK) {
        // send() refused: its completion is not called (the request is not on its way).
        agentd_status refused = fail_with(m, status, "relay: send to %.*s refused (status %d)",
                                          clip(job->target.length), job->target.data, (int)status);
        buffer_free(&job->target);
        free(job);
        return refused;
    }
    return AGENTD_PENDING;
}

// --- publisher ----------------------------------------------------------------------------------

static agentd_status on_publish(void *instance, const agentd_message *m) {
    (void)instance;
    agentd_status status = AGENTD_OK;
    json_buffer topic = {0}, source = {0}, text = {0};
    if (!require_string(m, "publisher", "topic", &topic, &status)) return status;
    if (!require_string(m, "publisher", "source", &source, &status)) {
        buffer_free(&topic);
        return status;
    }
    if (!require_string(m, "publisher", "text", &text, &status)) {
        buffer_free(&topic);
        buffer_free(&source);
        return status;
    }
    json_buffer note = {0};
    buffer_append_str(&note, "{\"text\": ");
    json_append_string(&note, text.data, text.length);
    buffer_append_str(&note, "}");
    buffer_free(&text);
    if (note.out_of_memory) {
        status = fail_with(m, AGENTD_FAILED, "publisher: out of memory");
    } else {
        status = m->host->publish(m->agent, str_of(topic.data, topic.length), str_of(source.data, source.length),
                                  agentd_cstr("Note"), agentd_cstr("application/json"), bytes_of(&note));
        if (status != AGENTD_OK) {
            status = fail_with(m, status, "publisher: publish to (%.*s, %.*s) refused (status %d)", clip(topic.length),
                               topic.data, clip(source.length), source.data, (int)status);
        }
    }
    buffer_free(&note);
    buffer_free(&topic);
    buffer_free(&source);
    if (status != AGENTD_OK || !m->is_rpc) return status;
    json_buffer reply = {0};
    buffer_append_str(&reply, "{\"ok\": true}");
    return reply_json(m, "Published", &reply);
}

// --- settings -----------------------------------------------------------------------------------

static agentd_status on_setting(void *instance, const agentd_message *m) {
    (void)instance;
    agentd_status status = AGENTD_OK;
    json_buffer key = {0};
    if (!require_string(m, "settings", "key", &key, &status)) return status;
    if (!m->is_rpc) {
        buffer_free(&key);
        return AGENTD_OK;
    }
    agentd_str value = {NULL, 0};
    status = m->host->setting(g_self, str_of(key.data, key.length), &value);
    if (status == AGENTD_NOT_FOUND) {
        status = fail_with(m, AGENTD_NOT_FOUND, "settings: no setting '%.*s' in [plugin.test-agents]",
                           clip(key.length), key.data);
        buffer_free(&key);
        return status;
    }
    if (status != AGENTD_OK) {
        status = fail_with(m, status, "settings: reading '%.*s' failed (status %d)", clip(key.length), key.data,
                           (int)status);
        buffer_free(&key);
        return status;
    }
    buffer_free(&key);
    json_buffer reply = {0};
    buffer_append_str(&reply, "{\"value\": ");
    json_append_string(&reply, value.data, value.length);
    buffer_append_str(&reply, "}");
    return reply_json(m, "SettingValue", &reply);
}

// --- The descriptor -----------------------------------------------------------------------------

#define HANDLER(type, fn) {sizeof(agentd_handler), type, fn}
#define COUNT(array) (sizeof(array) / sizeof((array)[0]))

static const agentd_handler failing_handlers[] = {HANDLER("Boom", on_boom)};
static const agentd_handler silent_fail_handlers[] = {HANDLER("*", on_silent_fail)};
static const agentd_handler none_handlers[] = {HANDLER("*", on_none)};
static const agentd_handler deferred_handlers[] = {HANDLER("Later", on_later)};
static const agentd_handler counter_handlers[] = {HANDLER("Get", on_get), HANDLER("*", on_count_event)};
static const agentd_handler relay_handlers[] = {HANDLER("Relay", on_relay)};
static const agentd_handler publisher_handlers[] = {HANDLER("Publish", on_publish)};
static const agentd_handler settings_handlers[] = {HANDLER("Setting", on_setting)};

static const agentd_subscription counter_subscriptions[] = {
    {sizeof(agentd_subscription), AGENTD_SUBSCRIBE_TOPIC_TYPE, "count"},
    {sizeof(agentd_subscription), AGENTD_SUBSCRIBE_TOPIC_PREFIX, "count-prefix:"},
};

static const agentd_agent_type test_types[] = {
    {
        .size = sizeof(agentd_agent_type),
        .name = "failing",
        .description = "Boom: fails with \"boom: the handler failed on purpose\"",
        .handlers = failing_handlers,
        .handler_count = COUNT(failing_handlers),
    },
    {
        .size = sizeof(agentd_agent_type),
        .name = "silent-fail",
        .description = "Any message: returns AGENTD_FAILED without calling fail()",
        .handlers = silent_fail_handlers,
        .handler_count = COUNT(silent_fail_handlers),
    },
    {
        .size = sizeof(agentd_agent_type),
        .name = "none",
        .description = "Any message: returns AGENTD_OK without replying",
        .handlers = none_handlers,
        .handler_count = COUNT(none_handlers),
    },
    {
        .size = sizeof(agentd_agent_type),
        .name = "deferred",
        .description = "Later: answers Done {\"done\": true} from a plugin thread after ~50 ms",
        .handlers = deferred_handlers,
        .handler_count = COUNT(deferred_handlers),
        .create = deferred_create,
        .destroy = deferred_destroy,
    },
    {
        .size = sizeof(agentd_agent_type),
        .name = "counter",
        .description = "Counts events on count / count-prefix:*; Get answers Count {\"count\", \"key\"}",
        .subscriptions = counter_subscriptions,
        .subscription_count = COUNT(counter_subscriptions),
        .handlers = counter_handlers,
        .handler_count = COUNT(counter_handlers),
        .create = counter_create,
        .destroy = free_instance,
        .snapshot = counter_snapshot,
        .restore = counter_restore,
    },
    {
        .size = sizeof(agentd_agent_type),
        .name = "relay",
        .description = "Relay {to_type, to_key, text}: sends Echo {text} to to_type/to_key, answers with its reply",
        .handlers = relay_handlers,
        .handler_count = COUNT(relay_handlers),
    },
    {
        .size = sizeof(agentd_agent_type),
        .name = "publisher",
        .description = "Publish {topic, source, text}: publishes Note {text} to (topic, source)",
        .handlers = publisher_handlers,
        .handler_count = COUNT(publisher_handlers),
    },
    {
        .size = sizeof(agentd_agent_type),
        .name = "settings",
        .description = "Setting {key}: answers SettingValue {value} from [plugin.test-agents]",
        .handlers = settings_handlers,
        .handler_count = COUNT(settings_handlers),
    },
};

static void test_agents_unload(void) {
    // Join every reply thread, so that none runs plugin code once the library is closed.
    pthread_mutex_lock(&g_threads_lock);
    while (g_threads) {
        reply_thread *record = g_threads;
        g_threads = record->next;
        pthread_join(record->thread, NULL);
        free(record);
    }
    pthread_mutex_unlock(&g_threads_lock);
}

static const agentd_plugin test_agents_plugin = {
    .size = sizeof(agentd_plugin),
    .abi_major = AGENTD_ABI_MAJOR,
    .abi_minor = AGENTD_ABI_MINOR,
    .name = "test-agents",
    .version = "1.0.0",
    .agent_types = test_types,
    .agent_type_count = COUNT(test_types),
    .unload = test_agents_unload,
};

AGENTD_EXPORT const agentd_plugin *agentd_plugin_entry(const agentd_host_api *host, agentd_plugin_ref *self) {
    g_host = host;
    g_self = self;
    return &test_agents_plugin;
}
