// ProtoAgent: a C plugin that speaks protobuf (protobuf-c) with other agents, Python ones included.
//
// Plugin "proto-plugin" 1.0.0 offers one agent type, `orders`, subscribed to topic type "orders"
// (a type subscription: an event on topic ("orders", S) goes to agent orders/S). The schema is
// proto/sample.proto; generated/ holds its protobuf-c code (generate.sh, never edit it).
//
//   Event `agentd.samples.Order` (application/x-protobuf) on topic ("orders", S)
//     -> publishes `agentd.samples.OrderReceipt` (application/x-protobuf) to topic
//        ("order-receipts", S), as this agent.
//   RPC `agentd.samples.Order` (application/x-protobuf)
//     -> replies `agentd.samples.OrderReceipt` (application/x-protobuf).
//
// The receipt: order_id = the order's id; total_items = quantity * number of items;
// note = "orders/<agent key>: <number of items> item(s) x <quantity>".
//
// Refused with AGENTD_INVALID_ARGUMENT (an RPC gets fail() with the reason; for an event the
// reason is logged and the handler returns the status): a content type other than
// application/x-protobuf, bytes that do not decode as agentd.samples.Order (string fields must
// be UTF-8, as proto3 says), a negative quantity, or a total_items that would overflow int32.
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
#define RECEIPT_TOPIC "order-receipts"

static const agentd_host_api *g_host;
static agentd_plugin_ref *g_self;

static bool is_protobuf_content_type(agentd_str ct) {
    static const char expected[] = PROTOBUF_CONTENT_TYPE;
    size_t n = sizeof expected - 1;
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

static agentd_status on_order(void *instance, const agentd_message *m) {
    (void)instance;
    if (!is_protobuf_content_type(m->content_type)) {
        return refuse(m, AGENTD_INVALID_ARGUMENT,
                      "orders: expected content type " PROTOBUF_CONTENT_TYPE " for " ORDER_TYPE ", got '%.*s'",
                      clip(m->content_type.length), m->content_type.data ? m->content_type.data : "");
    }

    // protobuf-c reads no byte beyond `length`; an empty payload is a valid all-default Order.
    static const uint8_t empty[1];
    const uint8_t *data = m->payload.data ? m->payload.data : empty;
    Agentd__Samples__Order *order = agentd__samples__order__unpack(NULL, m->payload.length, data);
    if (!order) {
        return refuse(m, AGENTD_INVALID_ARGUMENT,
                      "orders: the payload (%zu bytes) is not a valid " ORDER_TYPE " protobuf message",
                      m->payload.length);
    }
    bool utf8 = is_utf8(order->id);
    for (size_t i = 0; utf8 && i < order->n_items; i++) utf8 = is_utf8(order->items[i]);
    if (!utf8) {
        agentd__samples__order__free_unpacked(order, NULL);
        return refuse(m, AGENTD_INVALID_ARGUMENT,
                      "orders: the payload is not a valid " ORDER_TYPE " protobuf message: a string field is not UTF-8");
    }
    if (order->quantity < 0) {
        int32_t quantity = order->quantity;
        agentd__samples__order__free_unpacked(order, NULL);
        return refuse(m, AGENTD_INVALID_ARGUMENT, "orders: quantity must not be negative (got %" PRId32 ")",
                      quantity);
    }
    int64_t total = (int64_t)order->quantity * (int64_t)order->n_items;
    if (order->n_items > (size_t)INT32_MAX || total > INT32_MAX) {
        size_t items = order->n_items;
        int32_t quantity = order->quantity;
        agentd__samples__order__free_unpacked(order, NULL);
        return refuse(m, AGENTD_INVALID_ARGUMENT,
                      "orders: total_items = quantity (%" PRId32 ") x items (%zu) overflows int32", quantity, items);
    }

    int note_length = snprintf(NULL, 0, "orders/%.*s: %zu item(s) x %" PRId32, (int)m->agent_key.length,
                               m->agent_key.data ? m->agent_key.data : "", order->n_items, order->quantity);
    char *note = note_length < 0 ? NULL : malloc((size_t)note_length + 1);
    if (!note) {
        agentd__samples__order__free_unpacked(order, NULL);
        return refuse(m, AGENTD_FAILED, "orders: out of memory");
    }
    snprintf(note, (size_t)note_length + 1, "orders/%.*s: %zu item(s) x %" PRId32, (int)m->agent_key.length,
             m->agent_key.data ? m->agent_key.data : "", order->n_items, order->quantity);

    Agentd__Samples__OrderReceipt receipt = AGENTD__SAMPLES__ORDER_RECEIPT__INIT;
    receipt.order_id = order->id;  // borrowed from `order` until it is freed below
    receipt.total_items = (int32_t)total;
    receipt.note = note;

    size_t packed_size = agentd__samples__order_receipt__get_packed_size(&receipt);
    uint8_t *packed = malloc(packed_size ? packed_size : 1);
    if (!packed) {
        free(note);
        agentd__samples__order__free_unpacked(order, NULL);
        return refuse(m, AGENTD_FAILED, "orders: out of memory");
    }
    agentd__samples__order_receipt__pack(&receipt, packed);
    free(note);
    agentd__samples__order__free_unpacked(order, NULL);

    agentd_bytes payload = {packed, packed_size};
    agentd_status status;
    if (m->is_rpc) {
        status = m->host->reply(m->call, agentd_cstr(RECEIPT_TYPE), agentd_cstr(PROTOBUF_CONTENT_TYPE), payload);
    } else {
        status = m->host->publish(m->agent, agentd_cstr(RECEIPT_TOPIC), m->topic_source, agentd_cstr(RECEIPT_TYPE),
                                  agentd_cstr(PROTOBUF_CONTENT_TYPE), payload);
        if (status != AGENTD_OK) {
            char line[160];
            int n = snprintf(line, sizeof line, "orders: publishing the receipt to " RECEIPT_TOPIC " failed (status %d)",
                             (int)status);
            if (n > 0) {
                agentd_str text = {line, (size_t)n < sizeof line ? (size_t)n : sizeof line - 1};
                m->host->log(g_self, m->agent, AGENTD_LOG_WARNING, text);
            }
        }
    }
    free(packed);  // the runtime copied it
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
    .description = "Answers agentd.samples.Order (protobuf) with an agentd.samples.OrderReceipt",
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
