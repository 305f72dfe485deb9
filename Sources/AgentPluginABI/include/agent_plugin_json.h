// agent_plugin_json.h — a small, strict JSON scanner and writer for C plugins, and a helper that
// answers an RPC with the JSON it built. Installed beside agent_plugin.h; optional.
//
// Not part of the plugin ABI (that is agent_plugin.h alone): a convenience the C plugins in this
// repository share, so that each reads its JSON payloads the same way. Include it in ONE .c file
// of a plugin (`#include <agent_plugin_json.h>`, with -I the directory of agent_plugin.h):
// everything here is `static`, so each plugin .so keeps its own copy and plugins stay
// self-contained (the finders are `static inline`, so a plugin that uses only one of them compiles
// without unused-function warnings). C99, libc only.
//
//     json_scanner scanner;
//     json_buffer name;                                         // decoded, NUL-terminated
//     if (json_find_string_member(&scanner, m->payload, "name", &name) != MEMBER_FOUND) ...
//     json_buffer reply = {0};
//     buffer_append_str(&reply, "{\"text\": ");
//     json_append_string(&reply, name.data, name.length);     // escaped, quoted
//     buffer_append_str(&reply, "}");
//     buffer_free(&name);
//     return agentd_reply_json(m, "Greeting", &reply);         // answers, frees the buffer
#ifndef AGENTD_PLUGIN_JSON_H
#define AGENTD_PLUGIN_JSON_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent_plugin.h"

// --- A small JSON scanner ---------------------------------------------------------------------
//
// Validates a whole JSON document and extracts one top-level member of an object: a string
// (json_find_string_member) or an integer (json_find_integer_member).
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

// --- Every member of an object -------------------------------------------------------------------

// Called with each top-level member's name (decoded, NUL-terminated) and the scanner at its
// value, which the callback must scan past (or fail with json_error). Returns false to stop.
typedef bool (*json_member_visitor)(json_scanner *s, const json_buffer *name, void *context);

// Validates `json` as one object and calls `visit` for each member in order. False (with
// `s->error`) when the document is malformed, is not an object, or `visit` failed.
static inline bool json_each_member(json_scanner *s, agentd_bytes json, json_member_visitor visit, void *context) {
    static const uint8_t empty[1];
    s->start = s->p = json.data ? json.data : empty;
    s->end = s->p + json.length;
    s->error = NULL;
    s->error_offset = 0;

    json_skip_space(s);
    if (s->p >= s->end) return json_error(s, "empty payload");
    if (*s->p != '{') {
        json_kind kind;
        if (json_value(s, 0, &kind)) {
            json_skip_space(s);
            if (s->p != s->end) json_error(s, "trailing characters after the JSON value");
            else json_error(s, "the top-level value is not an object");
        }
        return false;
    }
    json_buffer key = {0};
    s->p++;
    json_skip_space(s);
    if (s->p < s->end && *s->p == '}') {
        s->p++;
    } else {
        for (;;) {
            json_skip_space(s);
            if (s->p >= s->end || *s->p != '"') {
                json_error(s, "expected a member name");
                goto fail;
            }
            key.length = 0;
            if (!json_string(s, &key)) goto fail;
            if (!key.data) buffer_append(&key, "", 0);
            if (key.out_of_memory) {
                json_error(s, "out of memory");
                goto fail;
            }
            json_skip_space(s);
            if (s->p >= s->end || *s->p != ':') {
                json_error(s, "expected ':'");
                goto fail;
            }
            s->p++;
            json_skip_space(s);
            if (s->p >= s->end) {
                json_error(s, "unexpected end of input");
                goto fail;
            }
            if (!visit(s, &key, context)) {
                json_error(s, "malformed member");  // kept if the visitor said why
                goto fail;
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
            goto fail;
        }
    }
    buffer_free(&key);
    json_skip_space(s);
    if (s->p != s->end) return json_error(s, "trailing characters after the JSON value");
    return true;
fail:
    buffer_free(&key);
    return false;
}


typedef enum json_member_result {
    MEMBER_FOUND,       // `value` holds the decoded string
    MEMBER_MISSING,
    MEMBER_NOT_STRING,
    MEMBER_MALFORMED,   // the document is not valid JSON, or not an object (see scanner.error)
    MEMBER_NO_MEMORY,
} json_member_result;

typedef struct json_string_search {
    const char *name;
    json_buffer *value;
    json_member_result result;
    bool no_memory;
} json_string_search;

static inline bool json_string_search_visit(json_scanner *s, const json_buffer *key, void *context) {
    json_string_search *search = context;
    bool wanted = key->length == strlen(search->name) && memcmp(key->data, search->name, key->length) == 0;
    if (wanted && *s->p == '"') {
        search->value->length = 0;
        if (!json_string(s, search->value)) return false;
        if (!search->value->data) buffer_append(search->value, "", 0);  // an empty string still gets a buffer
        if (search->value->out_of_memory) return !(search->no_memory = true);
        search->result = MEMBER_FOUND;
        return true;
    }
    json_kind kind;
    if (!json_value(s, 1, &kind)) return false;
    if (wanted) search->result = MEMBER_NOT_STRING;
    return true;
}

// Validates `json` as a whole and finds the top-level object member `name` (the last one if it
// is repeated). On MEMBER_FOUND `value` holds the decoded, NUL-terminated string (free it with
// buffer_free); on MEMBER_MALFORMED `s->error` and `s->error_offset` say why.
static inline json_member_result json_find_string_member(json_scanner *s, agentd_bytes json, const char *name,
                                                         json_buffer *value) {
    memset(value, 0, sizeof *value);
    json_string_search search = {name, value, MEMBER_MISSING, false};
    if (!json_each_member(s, json, json_string_search_visit, &search)) {
        buffer_free(value);
        return search.no_memory ? MEMBER_NO_MEMORY : MEMBER_MALFORMED;
    }
    if (search.result != MEMBER_FOUND) buffer_free(value);
    return search.result;
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

// --- Integers ---------------------------------------------------------------------------------

typedef enum json_integer_result {
    INTEGER_FOUND,        // `*value` holds the member's value
    INTEGER_MISSING,
    INTEGER_NOT_INTEGER,  // the member is not a number, has a fraction or exponent, or is outside int64
    INTEGER_MALFORMED,    // the document is not valid JSON, or not an object (see scanner.error)
    INTEGER_NO_MEMORY,
} json_integer_result;

// The integer a number token [start, end) spells, if it has no fraction or exponent and fits
// in int64 (the token is valid JSON already).
static inline bool json_token_integer(const uint8_t *start, const uint8_t *end, int64_t *value) {
    bool negative = start < end && *start == '-';
    const uint8_t *p = negative ? start + 1 : start;
    uint64_t limit = negative ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX;
    uint64_t magnitude = 0;
    if (p >= end) return false;
    for (; p < end; p++) {
        if (*p < '0' || *p > '9') return false;  // '.', 'e', 'E': not an integer
        uint64_t digit = (uint64_t)(*p - '0');
        if (magnitude > (limit - digit) / 10) return false;
        magnitude = magnitude * 10 + digit;
    }
    *value = negative ? (int64_t)(0 - magnitude) : (int64_t)magnitude;
    return true;
}

typedef struct json_integer_search {
    const char *name;
    int64_t *value;
    size_t *members;
    json_integer_result result;
} json_integer_search;

static inline bool json_integer_search_visit(json_scanner *s, const json_buffer *key, void *context) {
    json_integer_search *search = context;
    if (search->members) (*search->members)++;
    bool wanted = key->length == strlen(search->name) && memcmp(key->data, search->name, key->length) == 0;
    const uint8_t *token = s->p;
    json_kind kind;
    if (!json_value(s, 1, &kind)) return false;
    if (wanted) {
        bool number = *token == '-' || (*token >= '0' && *token <= '9');
        search->result = number && json_token_integer(token, s->p, search->value) ? INTEGER_FOUND : INTEGER_NOT_INTEGER;
    }
    return true;
}

// Validates `json` as a whole and finds the top-level object member `name` (the last one if it
// is repeated): an integer written without fraction or exponent, within int64 ("3", "-12"; not
// "3.0", "1e3" or "\"3\""). `*members`, when not NULL, receives how many members the object
// has (so that a caller can refuse unknown ones). On INTEGER_MALFORMED `s->error` and
// `s->error_offset` say why.
static inline json_integer_result json_find_integer_member(json_scanner *s, agentd_bytes json, const char *name,
                                                           int64_t *value, size_t *members) {
    if (members) *members = 0;
    json_integer_search search = {name, value, members, INTEGER_MISSING};
    if (!json_each_member(s, json, json_integer_search_visit, &search))
        return s->error && strcmp(s->error, "out of memory") == 0 ? INTEGER_NO_MEMORY : INTEGER_MALFORMED;
    return search.result;
}

// --- Answering with JSON ---------------------------------------------------------------------

// Answers the RPC `m` with the JSON in `json` as a `message_type` (application/json), and frees
// the buffer (the runtime copies the payload before reply() returns). A buffer that ran out of
// memory answers with AGENTD_FAILED instead. Returns what reply() or fail() returned.
static inline agentd_status agentd_reply_json(const agentd_message *m, const char *message_type, json_buffer *json) {
    agentd_status status;
    if (json->out_of_memory) {
        status = m->host->fail(m->call, AGENTD_FAILED, agentd_cstr("out of memory while writing the answer"));
    } else {
        agentd_bytes payload = {(const uint8_t *)json->data, json->length};
        status = m->host->reply(m->call, agentd_cstr(message_type), agentd_cstr("application/json"), payload);
    }
    buffer_free(json);
    return status;
}

#endif
