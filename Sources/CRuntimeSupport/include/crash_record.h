// The crash record: a shared memory region (a memfd the supervisor of `agentd run` makes and
// its runtime child inherits) in which each handler thread of the runtime notes the message it
// is handling, and which a fatal signal marks with the thread that received it. The supervisor
// reads it once the child is dead — after SIGKILL too, for the notes — to say which plugin
// crashed on which message.
//
// The runtime's side costs two calls per message (`agentd_crash_slot_enter` copies a few short
// strings into the thread's slot, `agentd_crash_slot_leave` is one store), and nothing at all
// in a process without a record: both return at once.
#ifndef AGENTD_CRASH_RECORD_H
#define AGENTD_CRASH_RECORD_H

#include <stddef.h>
#include <stdint.h>

/// A borrowed string: pointer and length (not NUL-terminated).
typedef struct agentd_crash_text {
    const char *data;
    size_t length;
} agentd_crash_text;

/// What a slot says about the message its thread is handling. Each field is truncated to what
/// fits in the slot (a slot holds about 1 KiB of text in all).
typedef struct agentd_crash_message {
    /// The plugin: its name, version and content hash.
    agentd_crash_text plugin_name;
    agentd_crash_text plugin_version;
    agentd_crash_text plugin_hash;
    agentd_crash_text agent_type;
    agentd_crash_text agent_key;
    /// "rpc" or "event".
    agentd_crash_text kind;
    agentd_crash_text message_type;
    /// An RPC's request id as the host gave it (empty for an event).
    agentd_crash_text request_id;
    agentd_crash_text sender_type;
    agentd_crash_text sender_key;
} agentd_crash_message;

/// The fields of `agentd_crash_message`, in its order: how many a slot's text holds.
#define AGENTD_CRASH_FIELDS 10

/// The bytes a record of `slots` slots takes.
size_t agentd_crash_record_size(uint32_t slots);

/// Makes a record of `slots` slots in a new memfd (close-on-exec; the caller dup2s it into the
/// child) and maps it. Returns the fd, or -1 with errno set; `*mapping` and `*size` receive the
/// mapping.
int agentd_crash_record_create(uint32_t slots, void **mapping, size_t *size);

/// In the child: maps the record at `fd` and makes it this process's record, then installs the
/// fatal-signal handlers (SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGABRT, SIGTRAP, SIGSYS) that mark
/// it. Each handler marks the record, restores the handler that was there before and lets the
/// signal take its course (a core dump, Swift's backtrace). Returns 0, or -1 with errno set.
int agentd_crash_record_attach(int fd);

/// The calling thread starts handling `message` (no-op without a record, or when every slot is
/// taken by other threads).
void agentd_crash_slot_enter(const agentd_crash_message *message);

/// The calling thread's handler returned.
void agentd_crash_slot_leave(void);

/// What a dead child's record says (read by the supervisor).
typedef struct agentd_crash_summary {
    /// The fatal signal a handler caught (0: none caught).
    int32_t signal;
    /// The slot of the thread that received it (-1: a thread that was in no handler).
    int32_t slot;
    /// Slots that were in a handler when the process ended (the crashed one included).
    uint32_t busy;
    /// The instruction the crashing thread was at (0: unknown).
    uint64_t pc;
} agentd_crash_summary;

agentd_crash_summary agentd_crash_record_summary(const void *mapping);

/// Slot `index`'s text: `AGENTD_CRASH_FIELDS` NUL-separated fields; `*length` receives its
/// length. NULL if the slot is idle (or out of range).
const char *agentd_crash_record_slot(const void *mapping, uint32_t index, size_t *length);

/// The number of slots.
uint32_t agentd_crash_record_slots(const void *mapping);

/// In the child: notes where the code of the library containing `address` (a plugin just
/// loaded) lies, with its name and content hash, so that a crash in that code outside any
/// handler (a thread the plugin started, say) is laid at the plugin's door. Returns the entry,
/// or -1 (no record; no room: 128 plugins at once; the address is in no library).
int agentd_crash_module_add(const void *address, agentd_crash_text name, agentd_crash_text hash);

/// In the child: the library containing `address` is about to be unloaded: its entry goes.
void agentd_crash_module_remove(const void *address);

/// The supervisor: the entry of the plugin whose code contains `pc` — its name, a NUL, its
/// content hash; `*length` receives the length — or NULL.
const char *agentd_crash_record_module_at(const void *mapping, uint64_t pc, size_t *length);

#endif
