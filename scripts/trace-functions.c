// trace-functions ADDRESSES OUT -- PROGRAM ARGS...
//
// Runs PROGRAM under ptrace with a one-shot breakpoint at each address listed in ADDRESSES
// (hexadecimal link-time addresses of functions of PROGRAM's own image, one a line), and writes
// to OUT the addresses reached, in the order they were first reached. Every thread is followed;
// signals are passed on (SIGTERM and SIGINT sent to this tracer are forwarded to PROGRAM).
// Linux x86-64. Used by scripts/order-host-functions.
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ptrace.h>
#include <sys/user.h>
#include <sys/wait.h>
#include <unistd.h>

static uint64_t *addresses;
static unsigned char *original;  // the byte each breakpoint replaced
static char *armed;              // breakpoint still in place
static size_t count;
static volatile pid_t traced;

static void forward(int sig) {
    if (traced) kill(traced, sig);
}

static int compare(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static long find(uint64_t address) {
    size_t low = 0, high = count;
    while (low < high) {
        size_t middle = (low + high) / 2;
        if (addresses[middle] < address) low = middle + 1; else high = middle;
    }
    return low < count && addresses[low] == address ? (long)low : -1;
}

int main(int argc, char **argv) {
    if (argc < 5 || strcmp(argv[3], "--") != 0) {
        fprintf(stderr, "usage: trace-functions ADDRESSES OUT -- PROGRAM ARGS...\n");
        return 2;
    }
    FILE *in = fopen(argv[1], "r");
    FILE *out = fopen(argv[2], "w");
    if (!in || !out) { perror("trace-functions"); return 2; }
    size_t capacity = 1 << 16;
    addresses = malloc(capacity * sizeof *addresses);
    char line[4096];
    while (fgets(line, sizeof line, in)) {
        if (count == capacity) addresses = realloc(addresses, (capacity *= 2) * sizeof *addresses);
        addresses[count++] = strtoull(line, NULL, 16);
    }
    fclose(in);
    qsort(addresses, count, sizeof *addresses, compare);
    size_t unique = 0;
    for (size_t i = 0; i < count; i++)
        if (unique == 0 || addresses[i] != addresses[unique - 1]) addresses[unique++] = addresses[i];
    count = unique;
    original = malloc(count);
    armed = calloc(count, 1);

    pid_t child = fork();
    if (child == 0) {
        ptrace(PTRACE_TRACEME, 0, NULL, NULL);
        execv(argv[4], argv + 4);
        perror("trace-functions: execv");
        _exit(127);
    }
    traced = child;
    signal(SIGTERM, forward);
    signal(SIGINT, forward);
    int status;
    if (waitpid(child, &status, 0) < 0 || !WIFSTOPPED(status)) { fprintf(stderr, "trace-functions: exec failed\n"); return 1; }
    ptrace(PTRACE_SETOPTIONS, child, NULL, (void *)(long)(PTRACE_O_TRACECLONE | PTRACE_O_EXITKILL));

    // The image's load address: where the program's file is first mapped.
    char path[64], executable[4096];
    snprintf(path, sizeof path, "/proc/%d/exe", child);
    ssize_t length = readlink(path, executable, sizeof executable - 1);
    if (length < 0) { perror("trace-functions: readlink"); return 1; }
    executable[length] = 0;
    snprintf(path, sizeof path, "/proc/%d/maps", child);
    FILE *maps = fopen(path, "r");
    uint64_t base = 0;
    while (maps && fgets(line, sizeof line, maps)) {
        char *name = strchr(line, '/');
        if (name && strncmp(name, executable, strlen(executable)) == 0) { base = strtoull(line, NULL, 16); break; }
    }
    if (maps) fclose(maps);
    snprintf(path, sizeof path, "/proc/%d/mem", child);
    int memory = open(path, O_RDWR);
    if (memory < 0) { perror("trace-functions: /proc/PID/mem"); return 1; }
    size_t set = 0;
    for (size_t i = 0; i < count; i++) {
        unsigned char trap = 0xCC;
        if (pread(memory, &original[i], 1, base + addresses[i]) == 1 && pwrite(memory, &trap, 1, base + addresses[i]) == 1) {
            armed[i] = 1;
            set++;
        }
    }
    fprintf(stderr, "trace-functions: %zu of %zu breakpoints set\n", set, count);
    ptrace(PTRACE_CONT, child, NULL, NULL);

    size_t reached = 0;
    int exitStatus = 0;
    for (;;) {
        pid_t thread = waitpid(-1, &status, __WALL);
        if (thread < 0) {
            if (errno == EINTR) continue;
            break;
        }
        if (WIFEXITED(status) || WIFSIGNALED(status)) {
            if (thread == child) {
                exitStatus = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
                break;
            }
            continue;
        }
        if (!WIFSTOPPED(status)) continue;
        int sig = WSTOPSIG(status);
        if (sig == SIGTRAP && (status >> 16) != 0) {  // a ptrace event (a new thread)
            ptrace(PTRACE_CONT, thread, NULL, NULL);
            continue;
        }
        if (sig == SIGTRAP) {
            struct user_regs_struct registers;
            ptrace(PTRACE_GETREGS, thread, NULL, &registers);
            long i = find(registers.rip - 1 - base);
            if (i >= 0) {
                // Another thread may have hit it before it was taken out: rewind either way.
                if (armed[i]) {
                    pwrite(memory, &original[i], 1, base + addresses[i]);
                    armed[i] = 0;
                    fprintf(out, "%lx\n", (unsigned long)addresses[i]);
                    reached++;
                }
                registers.rip -= 1;
                ptrace(PTRACE_SETREGS, thread, NULL, &registers);
                ptrace(PTRACE_CONT, thread, NULL, NULL);
                continue;
            }
        }
        if (sig == SIGSTOP) {  // a new thread's first stop
            ptrace(PTRACE_CONT, thread, NULL, NULL);
            continue;
        }
        ptrace(PTRACE_CONT, thread, NULL, (void *)(long)sig);
    }
    fclose(out);
    fprintf(stderr, "trace-functions: %zu functions reached; the program exited with status %d\n", reached, exitStatus);
    return exitStatus;
}
