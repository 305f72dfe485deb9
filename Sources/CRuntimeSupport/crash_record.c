#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <link.h>
#include <signal.h>
#include <ucontext.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include "crash_record.h"

#define RECORD_MAGIC 0x61676443u /* "Cdga" */
#define SLOT_BYTES 1024
#define SLOT_TEXT (SLOT_BYTES - 16)
#define MODULE_COUNT 128
#define MODULE_BYTES 128
#define MODULE_TEXT (MODULE_BYTES - 24)

enum { SLOT_IDLE = 0, SLOT_BUSY = 1 };

typedef struct slot {
    _Atomic uint32_t state;
    uint32_t length;
    uint32_t reserved[2];
    char text[SLOT_TEXT];
} slot;

typedef struct record {
    uint32_t magic;
    uint32_t slot_count;
    _Atomic uint32_t next_slot;
    _Atomic int32_t crash_signal;
    _Atomic int32_t crash_slot;
    uint32_t reserved0;
    /// The instruction the crashing thread was at (0: unknown).
    _Atomic uint64_t crash_pc;
    uint32_t reserved[8];
    slot slots[];
    // Then MODULE_COUNT modules (module_table).
} record;

/// A plugin's code, loaded: where its executable segments lie, and its name and content hash
/// (NUL-separated), so that a crash in it outside any handler (a thread of its own, say) is
/// still laid at its door. `start` is 0 for a free entry; it is written last (release).
typedef struct module {
    _Atomic uint64_t start;
    uint64_t end;
    uint64_t base;
    char text[MODULE_TEXT];
} module;

_Static_assert(sizeof(slot) == SLOT_BYTES, "a slot is 1 KiB");
_Static_assert(sizeof(record) == 64, "the header is 64 bytes");
_Static_assert(sizeof(module) == MODULE_BYTES, "a module entry is 128 bytes");

static module *module_table(const record *r) {
    return (module *)((char *)r + sizeof(record) + (size_t)r->slot_count * sizeof(slot));
}

// The process's record (the child's): set once by agentd_crash_record_attach before any handler
// thread runs, and read by the handler threads and the signal handlers. Process-wide because a
// signal handler can reach nothing else.
static record *_Atomic current_record;
// The calling thread's slot, taken on its first message (initial-exec TLS: this file is linked
// into the executable, so a signal handler may read it).
static _Thread_local slot *thread_slot;
static _Thread_local int32_t thread_slot_index = -1;

static const int fatal_signals[] = {SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGABRT, SIGTRAP, SIGSYS};
#define FATAL_COUNT (sizeof(fatal_signals) / sizeof(fatal_signals[0]))
static struct sigaction previous_actions[FATAL_COUNT];

size_t agentd_crash_record_size(uint32_t slots) {
    return sizeof(record) + (size_t)slots * sizeof(slot) + MODULE_COUNT * sizeof(module);
}

int agentd_crash_record_create(uint32_t slots, void **mapping, size_t *size) {
    int fd = memfd_create("agentd-crash-record", MFD_CLOEXEC);
    if (fd < 0) return -1;
    size_t bytes = agentd_crash_record_size(slots);
    if (ftruncate(fd, (off_t)bytes) != 0) {
        int saved = errno;
        close(fd);
        errno = saved;
        return -1;
    }
    void *base = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (base == MAP_FAILED) {
        int saved = errno;
        close(fd);
        errno = saved;
        return -1;
    }
    record *r = base;  // the memfd's pages start zeroed
    r->magic = RECORD_MAGIC;
    r->slot_count = slots;
    atomic_store(&r->crash_slot, -1);
    *mapping = base;
    *size = bytes;
    return fd;
}

static void mark_crash(int signo, siginfo_t *info, void *context) {
    int saved_errno = errno;
    record *r = atomic_load_explicit(&current_record, memory_order_acquire);
    size_t which = 0;
    for (; which < FATAL_COUNT && fatal_signals[which] != signo; which++) {}
    if (r) {
        int32_t expected = 0;
        // The first fatal signal wins (a second thread faulting meanwhile is not the cause).
        if (atomic_compare_exchange_strong(&r->crash_signal, &expected, signo)) {
            atomic_store(&r->crash_slot, thread_slot ? thread_slot_index : -1);
            uint64_t pc = 0;
            if (context) {
                const ucontext_t *uc = context;
#if defined(__x86_64__)
                pc = (uint64_t)uc->uc_mcontext.gregs[REG_RIP];
#elif defined(__aarch64__)
                pc = (uint64_t)uc->uc_mcontext.pc;
#endif
            }
            atomic_store(&r->crash_pc, pc);
        }
    }
    // The previous handler (or the default action) takes it from here: a fault raised by the
    // kernel happens again when this handler returns; a signal sent by someone is sent again.
    if (which < FATAL_COUNT) sigaction(signo, &previous_actions[which], NULL);
    if (info == NULL || info->si_code <= 0) raise(signo);
    errno = saved_errno;
}

int agentd_crash_record_attach(int fd) {
    struct stat status;
    if (fstat(fd, &status) != 0) return -1;
    if ((size_t)status.st_size < sizeof(record)) {
        errno = EINVAL;
        return -1;
    }
    void *base = mmap(NULL, (size_t)status.st_size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (base == MAP_FAILED) return -1;
    record *r = base;
    if (r->magic != RECORD_MAGIC || agentd_crash_record_size(r->slot_count) > (size_t)status.st_size) {
        munmap(base, (size_t)status.st_size);
        errno = EINVAL;
        return -1;
    }
    atomic_store_explicit(&current_record, r, memory_order_release);
    for (size_t i = 0; i < FATAL_COUNT; i++) {
        struct sigaction action;
        memset(&action, 0, sizeof action);
        action.sa_sigaction = mark_crash;
        action.sa_flags = SA_SIGINFO | SA_ONSTACK;
        sigemptyset(&action.sa_mask);
        sigaction(fatal_signals[i], &action, &previous_actions[i]);
    }
    return 0;
}

static size_t append(char *text, size_t at, agentd_crash_text field, int last) {
    size_t room = SLOT_TEXT - at - 1;  // keep one byte for the separator
    size_t length = field.length < room ? field.length : room;
    if (length > 0 && field.data) memcpy(text + at, field.data, length);
    at += length;
    if (!last) text[at++] = '\0';
    return at;
}

void agentd_crash_slot_enter(const agentd_crash_message *message) {
    record *r = atomic_load_explicit(&current_record, memory_order_relaxed);
    if (!r) return;
    slot *s = thread_slot;
    if (!s) {
        uint32_t index = atomic_fetch_add(&r->next_slot, 1);
        if (index >= r->slot_count) return;  // more handler threads than slots: not recorded
        s = &r->slots[index];
        thread_slot_index = (int32_t)index;
        thread_slot = s;
    }
    const agentd_crash_text *fields = &message->plugin_name;
    size_t at = 0;
    for (int i = 0; i < AGENTD_CRASH_FIELDS; i++) at = append(s->text, at, fields[i], i == AGENTD_CRASH_FIELDS - 1);
    s->length = (uint32_t)at;
    atomic_store_explicit(&s->state, SLOT_BUSY, memory_order_release);
}

void agentd_crash_slot_leave(void) {
    slot *s = thread_slot;
    if (s) atomic_store_explicit(&s->state, SLOT_IDLE, memory_order_release);
}

agentd_crash_summary agentd_crash_record_summary(const void *mapping) {
    const record *r = mapping;
    agentd_crash_summary summary = {.signal = 0, .slot = -1, .busy = 0, .pc = 0};
    summary.signal = atomic_load((_Atomic int32_t *)&r->crash_signal);
    summary.slot = summary.signal ? atomic_load((_Atomic int32_t *)&r->crash_slot) : -1;
    summary.pc = summary.signal ? atomic_load((_Atomic uint64_t *)&r->crash_pc) : 0;
    for (uint32_t i = 0; i < r->slot_count; i++) {
        if (atomic_load((_Atomic uint32_t *)&r->slots[i].state) == SLOT_BUSY) summary.busy++;
    }
    return summary;
}

const char *agentd_crash_record_slot(const void *mapping, uint32_t index, size_t *length) {
    const record *r = mapping;
    if (index >= r->slot_count) return NULL;
    const slot *s = &r->slots[index];
    if (atomic_load((_Atomic uint32_t *)&s->state) != SLOT_BUSY) return NULL;
    *length = s->length < SLOT_TEXT ? s->length : SLOT_TEXT;
    return s->text;
}

uint32_t agentd_crash_record_slots(const void *mapping) {
    return ((const record *)mapping)->slot_count;
}

// --- Plugins' code ------------------------------------------------------------------------------

typedef struct segments {
    uintptr_t base, start, end;
} segments;

static int find_segments(struct dl_phdr_info *info, size_t size, void *data) {
    (void)size;
    segments *found = data;
    if ((uintptr_t)info->dlpi_addr != found->base) return 0;
    for (int i = 0; i < info->dlpi_phnum; i++) {
        const ElfW(Phdr) *header = &info->dlpi_phdr[i];
        if (header->p_type != PT_LOAD || !(header->p_flags & PF_X)) continue;
        uintptr_t start = found->base + header->p_vaddr, end = start + header->p_memsz;
        if (found->start == 0 || start < found->start) found->start = start;
        if (end > found->end) found->end = end;
    }
    return 1;
}

int agentd_crash_module_add(const void *address, agentd_crash_text name, agentd_crash_text hash) {
    record *r = atomic_load_explicit(&current_record, memory_order_acquire);
    if (!r || !address) return -1;
    Dl_info info;
    if (dladdr(address, &info) == 0 || !info.dli_fbase) return -1;
    segments found = {(uintptr_t)info.dli_fbase, 0, 0};
    if (dl_iterate_phdr(find_segments, &found) == 0 || found.start == 0) return -1;
    module *modules = module_table(r);
    for (int i = 0; i < MODULE_COUNT; i++) {
        module *m = &modules[i];
        if (atomic_load_explicit(&m->start, memory_order_acquire) != 0) continue;
        m->end = found.end;
        m->base = found.base;
        // Name and hash, each NUL-terminated, truncated to share the entry's text.
        size_t half = MODULE_TEXT / 2;
        size_t name_length = name.length < half - 1 ? name.length : half - 1;
        if (name.data) memcpy(m->text, name.data, name_length);
        m->text[name_length] = '\0';
        size_t room = MODULE_TEXT - name_length - 2;
        size_t hash_length = hash.length < room ? hash.length : room;
        if (hash.data) memcpy(m->text + name_length + 1, hash.data, hash_length);
        m->text[name_length + 1 + hash_length] = '\0';
        atomic_store_explicit(&m->start, found.start, memory_order_release);
        return i;
    }
    return -1;  // more plugins loaded than entries: this one's own crashes are not attributed
}

void agentd_crash_module_remove(const void *address) {
    record *r = atomic_load_explicit(&current_record, memory_order_acquire);
    if (!r || !address) return;
    Dl_info info;
    if (dladdr(address, &info) == 0 || !info.dli_fbase) return;
    module *modules = module_table(r);
    for (int i = 0; i < MODULE_COUNT; i++) {
        if (atomic_load_explicit(&modules[i].start, memory_order_acquire) != 0 &&
            modules[i].base == (uint64_t)(uintptr_t)info.dli_fbase) {
            atomic_store_explicit(&modules[i].start, 0, memory_order_release);
        }
    }
}

const char *agentd_crash_record_module_at(const void *mapping, uint64_t pc, size_t *length) {
    const record *r = mapping;
    if (pc == 0) return NULL;
    const module *modules = module_table(r);
    for (int i = 0; i < MODULE_COUNT; i++) {
        uint64_t start = atomic_load((_Atomic uint64_t *)&modules[i].start);
        if (start != 0 && pc >= start && pc < modules[i].end) {
            *length = strnlen(modules[i].text, MODULE_TEXT);
            // The name, a NUL, the hash: the caller reads up to the second NUL.
            size_t name = *length;
            *length = name + 1 + strnlen(modules[i].text + name + 1, MODULE_TEXT - name - 1);
            return modules[i].text;
        }
    }
    return NULL;
}
