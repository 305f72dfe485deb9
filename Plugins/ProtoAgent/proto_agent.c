// ProtoAgent: a C plugin that speaks protobuf (protobuf-c) with other agents, Python ones included.
//
// Plugin "proto-plugin" 1.0.0 offers one agent type, `orders`, subscribed to topic type "orders"
// (a type subscription: an event on topic ("orders", S) goes to agent orders/S). The schema is
// proto/sample.proto; generated/ holds its protobuf-c code (generate.sh, never edit it).
//
//   Event `agentd.samples.Order` on topic ("orders", S)
//     -> publishes `agentd.samples.OrderReceipt` to topic ("order-receipts", S), as this agent.
//   RPC `agentd.samples.Order`
//     -> replies `agentd.samples.OrderReceipt`.
//
// Both in either encoding, the answer in the encoding of the order:
//   - application/x-protobuf: the protobuf bytes (what AutoGen publishes with
//     payload_serialization_format = application/x-protobuf);
//   - application/json: protobuf's JSON mapping (proto3 JSON, as google.protobuf.json_format
//     writes it): {"id": "o-1", "items": ["a", "b"], "quantity": 4}; the receipt is written
//     {"orderId": ..., "totalItems": ..., "note": ...}. AutoGen's send_message always encodes an
//     RPC's payload as JSON, so this is how a Python agent calls this RPC (README.md, "Protobuf
//     from Python"). The reader follows proto3 JSON: field names as written in the .proto or in
//     lowerCamelCase, null for a default, an int32 as a number or a decimal string; unknown
//     members are refused, as json_format.Parse refuses them.
//
// The receipt: order_id = the order's id; total_items = quantity * number of items;
// note = "orders/<agent key>: <number of items> item(s) x <quantity>".
//
// Refused with AGENTD_INVALID_ARGUMENT (an RPC gets fail() with the reason; for an event the
// reason is logged and the handler returns the status): another content type, bytes that do not
// decode as agentd.samples.Order (string fields must be UTF-8, as proto3 says; a JSON string may
// not hold U+0000), a negative quantity, or a total_items that would overflow int32.
//
// Instances keep no state (no create()): the handler's instance is NULL.

#include <agent_plugin.h>

#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "generated/sample.pb-c.h"

#define ORDER_TYPE "agentd.samples.Order"
#define RECEIPT_TYPE "agentd.samples.OrderReceipt"
#define PROTOBUF_CONTENT_TYPE "application/x-protobuf"
#define JSON_CONTENT_TYPE "application/json"
#define RECEIPT_TOPIC "order-receipts"

static const agentd_host_api *g_host;
static agentd_plugin_ref *g_self;

// The JSON helper the example plugins share (it needs g_host and g_self declared before it).
#include <agent_plugin_json.h>

static bool is_content_type(agentd_str ct, const char *expected) {
    size_t n = strlen(expected);
    if (ct.length < n) return false;
    for (size_t i = 0; i < n; i++) {
        char c = ct.data[i];
        if (c >= 'A' && c <= 'Z') c = (char)(c - 'A' + 'a');
        if (c != expected[i]) return false;
    }
    return ct.length == n || ct.data[n] == ';' || ct.data[n] == ' ';
}

// Refuses the message: an RPC is answered with fail(status, reason); for an event the reason is
// logged (an event has no caller to tell). Returns `status` either way.
#if defined(__GNUC__) || defined(__clang__)
__attribute__((format(printf, 3, 4)))
#endif
static agentd_status refuse(const agentd_message *m, agentd_status status, const char *format, ...) {
    char reason[512];
    va_list args;
    va_start(args, format);
    int n = vsnprintf(reason, sizeof reason, format, args);
    va_end(args);
    size_t length = n < 0 ? 0 : (size_t)n < sizeof reason ? (size_t)n : sizeof reason - 1;
    agentd_str text = {reason, length};
    if (m->is_rpc) {
        m->host->fail(m->call, status, text);
    } else {
        m->host->log(g_self, m->agent, AGENTD_LOG_WARNING, text);
    }
    return status;
}

// proto3 requires string fields to be UTF-8 (Python's protobuf refuses to parse anything else),
// but protobuf-c 1.4.1 does not check it on unpack: do it here, so that a receipt never carries
// bytes its reader would reject.
static bool is_utf8(const char *text) {
    const uint8_t *p = (const uint8_t *)text;
    while (*p) {
        uint8_t c = *p;
        size_t n;
        uint32_t cp;
        if (c < 0x80) {
            p++;
            continue;
        } else if (c >= 0xC2 && c <= 0xDF) {
            n = 2;
            cp = c & 0x1F;
        } else if (c >= 0xE0 && c <= 0xEF) {
            n = 3;
            cp = c & 0x0F;
        } else if (c >= 0xF0 && c <= 0xF4) {
            n = 4;
            cp = c & 0x07;
        } else {
            return false;
        }
        for (size_t i = 1; i < n; i++) {  // a NUL ends the loop here too: it is not 10xxxxxx
            if ((p[i] & 0xC0) != 0x80) return false;
            cp = (cp << 6) | (p[i] & 0x3F);
        }
        if ((n == 3 && cp < 0x800) || (n == 4 && cp < 0x10000) || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
            return false;
        p += n;
    }
    return true;
}

static int clip(size_t length) { return (int)(length > 200 ? 200 : length); }

// --- Orders in protobuf's JSON mapping -------------------------------------------------------------

// An Order read from JSON: the same view protobuf-c gives, owned by this plugin.
static void free_json_order(Agentd__Samples__Order *order) {
    if (!order) return;
    if (order->id != protobuf_c_empty_string) free(order->id);
    for (size_t i = 0; i < order->n_items; i++) free(order->items[i]);
    free(order->items);
    free(order);
}

static bool json_name_is(const json_buffer *key, const char *name) {
    return key->length == strlen(name) && memcmp(key->data, name, key->length) == 0;
}

// A JSON string member's value as a malloc'ed C string (refusing U+0000, which a C string cannot hold).
static bool json_owned_string(json_scanner *s, char **out) {
    json_buffer value = {0};
    if (!json_string(s, &value)) {
        buffer_free(&value);
        return false;
    }
    if (value.out_of_memory) {
        buffer_free(&value);
        return json_error(s, "out of memory");
    }
    if (!value.data) buffer_append(&value, "", 0);
    if (value.out_of_memory || strlen(value.data) != value.length) {
        bool oom = value.out_of_memory;
        buffer_free(&value);
        return json_error(s, oom ? "out of memory" : "a string holds U+0000");
    }
    *out = value.data;
    return true;
}

// proto3 JSON's int32: a number without fraction or exponent, or the same in a string.
static bool json_int32(json_scanner *s, int32_t *out) {
    bool quoted = *s->p == '"';
    const uint8_t *start, *end;
    if (quoted) {
        s->p++;
        start = s->p;
        while (s->p < s->end && *s->p != '"') s->p++;
        end = s->p;
        if (s->p >= s->end) return json_error(s, "unterminated string");
        s->p++;
    } else {
        start = s->p;
        if (!json_number(s)) return false;
        end = s->p;
    }
    int64_t value;
    if (!json_token_integer(start, end, &value) || value < INT32_MIN || value > INT32_MAX) {
        s->p = start;
        return json_error(s, "\"quantity\" is not an int32");
    }
    *out = (int32_t)value;
    return true;
}

// One member of an Order's JSON (json_each_member's visitor).
static bool order_member(json_scanner *s, const json_buffer *key, void *context) {
    Agentd__Samples__Order *order = context;
    bool null = s->end - s->p >= 4 && memcmp(s->p, "null", 4) == 0;  // a default, in proto3 JSON
    if (null) s->p += 4;
    if (json_name_is(key, "id")) {
        if (order->id != protobuf_c_empty_string) free(order->id);
        order->id = (char *)protobuf_c_empty_string;
        if (null) return true;
        if (*s->p != '"') return json_error(s, "\"id\" is not a string");
        return json_owned_string(s, &order->id);
    }
    if (json_name_is(key, "items")) {
        for (size_t i = 0; i < order->n_items; i++) free(order->items[i]);
        order->n_items = 0;
        if (null) return true;
        if (*s->p != '[') return json_error(s, "\"items\" is not an array");
        s->p++;
        json_skip_space(s);
        for (bool first = true; !(s->p < s->end && *s->p == ']'); first = false) {
            if (!first) {
                if (s->p >= s->end || *s->p != ',') return json_error(s, "expected ',' or ']'");
                s->p++;
                json_skip_space(s);
            }
            if (s->p >= s->end || *s->p != '"') return json_error(s, "an element of \"items\" is not a string");
            char **grown = realloc(order->items, (order->n_items + 1) * sizeof *grown);
            if (!grown) return json_error(s, "out of memory");
            order->items = grown;
            if (!json_owned_string(s, &order->items[order->n_items])) return false;
            order->n_items++;
            json_skip_space(s);
        }
        s->p++;
        return true;
    }
    if (json_name_is(key, "quantity")) {
        order->quantity = 0;
        return null || json_int32(s, &order->quantity);
    }
    return json_error(s, "unknown member (agentd.samples.Order has id, items, quantity)");
}

// Parses `json` as an agentd.samples.Order in protobuf's JSON mapping. NULL (and s->error) if it
// is not one.
static Agentd__Samples__Order *parse_json_order(json_scanner *s, agentd_bytes json) {
    Agentd__Samples__Order *order = calloc(1, sizeof *order);
    if (!order) {
        s->error = "out of memory";
        s->error_offset = 0;
        return NULL;
    }
    agentd__samples__order__init(order);
    if (!json_each_member(s, json, order_member, order)) {
        free_json_order(order);
        return NULL;
    }
    return order;
}

// --- The handler ----------------------------------------------------------------------------------

static agentd_status on_order(void *instance, const agentd_message *m) {
    (void)instance;
    bool json = is_content_type(m->content_type, JSON_CONTENT_TYPE);
    if (!json && !is_content_type(m->content_type, PROTOBUF_CONTENT_TYPE)) {
        return refuse(m, AGENTD_INVALID_ARGUMENT,
                      "orders: expected content type " PROTOBUF_CONTENT_TYPE " or " JSON_CONTENT_TYPE " for " ORDER_TYPE
                      ", got '%.*s'",
                      clip(m->content_type.length), m->content_type.data ? m->content_type.data : "");
    }

    Agentd__Samples__Order *order;
    if (json) {
        json_scanner scanner;
        order = parse_json_order(&scanner, m->payload);
        if (!order) {
            return refuse(m, AGENTD_INVALID_ARGUMENT,
                          "orders: the payload is not an " ORDER_TYPE " in protobuf's JSON mapping: %s at byte %zu",
                          scanner.error ? scanner.error : "malformed", scanner.error_offset);
        }
    } else {
        // protobuf-c reads no byte beyond `length`; an empty payload is a valid all-default Order.
        static const uint8_t empty[1];
        const uint8_t *data = m->payload.data ? m->payload.data : empty;
        order = agentd__samples__order__unpack(NULL, m->payload.length, data);
        if (!order) {
            return refuse(m, AGENTD_INVALID_ARGUMENT,
                          "orders: the payload (%zu bytes) is not a valid " ORDER_TYPE " protobuf message",
                          m->payload.length);
        }
    }
#define FREE_ORDER() (json ? free_json_order(order) : agentd__samples__order__free_unpacked(order, NULL))
    bool utf8 = is_utf8(order->id);
    for (size_t i = 0; utf8 && i < order->n_items; i++) utf8 = is_utf8(order->items[i]);
    if (!utf8) {
        FREE_ORDER();
        return refuse(m, AGENTD_INVALID_ARGUMENT,
                      "orders: the payload is not a valid " ORDER_TYPE " protobuf message: a string field is not UTF-8");
    }
    if (order->quantity < 0) {
        int32_t quantity = order->quantity;
        FREE_ORDER();
        return refuse(m, AGENTD_INVALID_ARGUMENT, "orders: quantity must not be negative (got %" PRId32 ")",
                      quantity);
    }
    int64_t total = (int64_t)order->quantity * (int64_t)order->n_items;
    if (order->n_items > (size_t)INT32_MAX || total > INT32_MAX) {
        size_t items = order->n_items;
        int32_t quantity = order->quantity;
        FREE_ORDER();
        return refuse(m, AGENTD_INVALID_ARGUMENT,
                      "orders: total_items = quantity (%" PRId32 ") x items (%zu) overflows int32", quantity, items);
    }

    int note_length = snprintf(NULL, 0, "orders/%.*s: %zu item(s) x %" PRId32, (int)m->agent_key.length,
                               m->agent_key.data ? m->agent_key.data : "", order->n_items, order->quantity);
    char *note = note_length < 0 ? NULL : malloc((size_t)note_length + 1);
    if (!note) {
        FREE_ORDER();
        return refuse(m, AGENTD_FAILED, "orders: out of memory");
    }
    snprintf(note, (size_t)note_length + 1, "orders/%.*s: %zu item(s) x %" PRId32, (int)m->agent_key.length,
             m->agent_key.data ? m->agent_key.data : "", order->n_items, order->quantity);

    Agentd__Samples__OrderReceipt receipt = AGENTD__SAMPLES__ORDER_RECEIPT__INIT;
    receipt.order_id = order->id;  // borrowed from `order` until it is freed below
    receipt.total_items = (int32_t)total;
    receipt.note = note;

    // The receipt in the order's encoding.
    json_buffer text = {0};
    uint8_t *packed = NULL;
    agentd_bytes payload;
    if (json) {
        char number[16];
        snprintf(number, sizeof number, "%" PRId32, receipt.total_items);
        buffer_append_str(&text, "{\"orderId\":");
        json_append_string(&text, receipt.order_id, strlen(receipt.order_id));
        buffer_append_str(&text, ",\"totalItems\":");
        buffer_append_str(&text, number);
        buffer_append_str(&text, ",\"note\":");
        json_append_string(&text, note, strlen(note));
        buffer_append_str(&text, "}");
        payload.data = (const uint8_t *)text.data;
        payload.length = text.length;
    } else {
        size_t packed_size = agentd__samples__order_receipt__get_packed_size(&receipt);
        packed = malloc(packed_size ? packed_size : 1);
        if (packed) agentd__samples__order_receipt__pack(&receipt, packed);
        payload.data = packed;
        payload.length = packed_size;
    }
    free(note);
    FREE_ORDER();
#undef FREE_ORDER
    if (json ? text.out_of_memory : !packed) {
        buffer_free(&text);
        return refuse(m, AGENTD_FAILED, "orders: out of memory");
    }

    agentd_str content_type = agentd_cstr(json ? JSON_CONTENT_TYPE : PROTOBUF_CONTENT_TYPE);
    agentd_status status;
    if (m->is_rpc) {
        status = m->host->reply(m->call, agentd_cstr(RECEIPT_TYPE), content_type, payload);
    } else {
        status = m->host->publish(m->agent, agentd_cstr(RECEIPT_TOPIC), m->topic_source, agentd_cstr(RECEIPT_TYPE),
                                  content_type, payload);
        if (status != AGENTD_OK) {
            char line[160];
            int n = snprintf(line, sizeof line, "orders: publishing the receipt to " RECEIPT_TOPIC " failed (status %d)",
                             (int)status);
            if (n > 0) {
                agentd_str log_text = {line, (size_t)n < sizeof line ? (size_t)n : sizeof line - 1};
                m->host->log(g_self, m->agent, AGENTD_LOG_WARNING, log_text);
            }
        }
    }
    free(packed);  // the runtime copied it
    buffer_free(&text);
    return status;
}

static const agentd_handler order_handlers[] = {
    {sizeof(agentd_handler), ORDER_TYPE, on_order},
};

static const agentd_subscription order_subscriptions[] = {
    {sizeof(agentd_subscription), AGENTD_SUBSCRIBE_TOPIC_TYPE, "orders"},
};

static const agentd_agent_type proto_types[] = {{
    .size = sizeof(agentd_agent_type),
    .name = "orders",
    .description = "Answers agentd.samples.Order (protobuf, or its JSON mapping) with an agentd.samples.OrderReceipt",
    .subscriptions = order_subscriptions,
    .subscription_count = sizeof order_subscriptions / sizeof order_subscriptions[0],
    .handlers = order_handlers,
    .handler_count = sizeof order_handlers / sizeof order_handlers[0],
    .create = NULL,
    .destroy = NULL,
    .snapshot = NULL,
    .restore = NULL,
    .context = NULL,
}};

static const agentd_plugin proto_plugin = {
    .size = sizeof(agentd_plugin),
    .abi_major = AGENTD_ABI_MAJOR,
    .abi_minor = AGENTD_ABI_MINOR,
    .name = "proto-plugin",
    .version = "1.0.0",
    .agent_types = proto_types,
    .agent_type_count = sizeof proto_types / sizeof proto_types[0],
    .unload = NULL,
};

AGENTD_EXPORT const agentd_plugin *agentd_plugin_entry(const agentd_host_api *host, agentd_plugin_ref *self) {
    g_host = host;
    g_self = self;
    return &proto_plugin;
}
