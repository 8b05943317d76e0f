/* A C peer of Rust processes, driven by shmstore-ffi/tests/c_abi.rs.
 *
 * Usage: peer MODE STORE [ARG]. The layouts' fingerprints come from the test as -D definitions
 * (TORN_FP, CONFIG1_FP, CONFIG2_FP, U32_FP), as a program built from `shmstore header` gets
 * them from the generated header.
 */
#define _DEFAULT_SOURCE
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "shmstore.h"

/* 256 bytes, spanning four cache lines: word i of a committed value is seq * K + i. */
struct Torn {
    uint64_t seq;
    uint64_t words[31];
};
_Static_assert(sizeof(struct Torn) == 256, "Torn is 256 bytes");
#define K 0x9E3779B97F4A7C15ull

struct ConfigV1 {
    uint16_t port;
    uint8_t verbose;
    uint8_t _pad[5];
    uint64_t restarts;
};
_Static_assert(sizeof(struct ConfigV1) == 16, "ConfigV1 is 16 bytes");

struct ConfigV2 {
    uint32_t port;
    uint8_t _pad[4];
    uint64_t restarts;
    uint64_t limit;
};
_Static_assert(sizeof(struct ConfigV2) == 24, "ConfigV2 is 24 bytes");

static void fill(struct Torn *t, uint64_t seq) {
    t->seq = seq;
    for (int i = 0; i < 31; i++) t->words[i] = seq * K + (uint64_t)i;
}

static bool consistent(const struct Torn *t) {
    for (int i = 0; i < 31; i++)
        if (t->words[i] != t->seq * K + (uint64_t)i) return false;
    return true;
}

static int fail(const char *what, shmstore_status st) {
    printf("FAIL %s: status %d: %s\n", what, (int)st, shmstore_last_error());
    return 1;
}

/* Loads `torn` until it has made `reads` loads and seen `changes` distinct values. */
static int reader(shmstore *s, uint64_t reads, uint64_t changes) {
    struct Torn t;
    uint64_t n = 0, torn = 0, seen = 0, last = UINT64_MAX, version = 0, last_version = 0;
    while (n < reads || seen < changes) {
        shmstore_status st = shmstore_load(s, "torn", &t, sizeof t, TORN_FP, &version);
        if (st != SHMSTORE_OK) return fail("load", st);
        n++;
        if (!consistent(&t)) torn++;
        if (version < last_version) return fail("versions go forward", SHMSTORE_OK);
        last_version = version;
        if (t.seq != last) {
            seen++;
            last = t.seq;
        }
    }
    printf("reads=%" PRIu64 " torn=%" PRIu64 " changes=%" PRIu64 "\n", n, torn, seen);
    return 0;
}

/* Commits seq = 1..=count to `torn`. */
static int writer(shmstore *s, uint64_t count) {
    struct Torn t;
    for (uint64_t seq = 1; seq <= count; seq++) {
        fill(&t, seq);
        shmstore_status st = shmstore_store(s, "torn", &t, sizeof t, TORN_FP, NULL);
        if (st != SHMSTORE_OK) return fail("store", st);
    }
    printf("wrote=%" PRIu64 "\n", count);
    return 0;
}

/* Commits seq = start, start + 1, ... forever; says "running" after 1000 commits. */
static int spin(shmstore *s, uint64_t start) {
    struct Torn t;
    for (uint64_t seq = start;; seq++) {
        fill(&t, seq);
        shmstore_status st = shmstore_store(s, "torn", &t, sizeof t, TORN_FP, NULL);
        if (st != SHMSTORE_OK) return fail("store", st);
        if (seq == start + 1000) {
            printf("running\n");
            fflush(stdout);
        }
    }
}

/* An update callback that writes half a value, says so, and never returns: the test kills the
 * process here, in the middle of a commit, holding the entry's exclusive lock. */
static int half_and_hang(void *value, size_t size, void *context) {
    (void)context;
    struct Torn *t = value;
    if (size != sizeof *t) return 1;
    t->seq = 999999;
    for (int i = 0; i < 15; i++) t->words[i] = 0;
    printf("inside\n");
    fflush(stdout);
    for (;;) pause();
}

static int add_restarts(void *value, size_t size, void *context) {
    struct ConfigV2 *c = value;
    if (size != sizeof *c) return 1;
    c->restarts += *(uint64_t *)context;
    return 0;
}

static int refuse(void *value, size_t size, void *context) {
    (void)value, (void)size, (void)context;
    return 7;
}

/* Reads commands from stdin, one a line, and answers each on one line: "ok ..." or
 * "err CODE MESSAGE". The store stays open throughout, so that the handles it caches live across
 * the test's migration. */
static int serve(shmstore *s) {
    char line[256];
    while (fgets(line, sizeof line, stdin)) {
        uint64_t version = 0, arg = 0;
        shmstore_status st;
        if (strncmp(line, "load1", 5) == 0) {
            struct ConfigV1 c;
            st = shmstore_load(s, "config", &c, sizeof c, CONFIG1_FP, &version);
            if (st == SHMSTORE_OK)
                printf("ok port=%u restarts=%" PRIu64 " version=%" PRIu64 "\n", c.port, c.restarts, version);
        } else if (strncmp(line, "load2", 5) == 0) {
            struct ConfigV2 c;
            st = shmstore_load(s, "config", &c, sizeof c, CONFIG2_FP, &version);
            if (st == SHMSTORE_OK)
                printf("ok port=%u restarts=%" PRIu64 " limit=%" PRIu64 " version=%" PRIu64 "\n", c.port, c.restarts,
                       c.limit, version);
        } else if (sscanf(line, "store2 %" SCNu64, &arg) == 1) {
            struct ConfigV2 c = {.port = (uint32_t)arg, .restarts = 1, .limit = 2};
            st = shmstore_store(s, "config", &c, sizeof c, CONFIG2_FP, &version);
            if (st == SHMSTORE_OK) printf("ok version=%" PRIu64 "\n", version);
        } else if (sscanf(line, "update2 %" SCNu64, &arg) == 1) {
            st = shmstore_update(s, "config", sizeof(struct ConfigV2), CONFIG2_FP, add_restarts, &arg, &version);
            if (st == SHMSTORE_OK) printf("ok version=%" PRIu64 "\n", version);
        } else if (strncmp(line, "refuse2", 7) == 0) {
            st = shmstore_update(s, "config", sizeof(struct ConfigV2), CONFIG2_FP, refuse, NULL, &version);
            if (st == SHMSTORE_OK) printf("ok version=%" PRIu64 "\n", version);
        } else if (sscanf(line, "wait %" SCNu64, &arg) == 1) {
            st = shmstore_wait_for_change(s, "config", arg, 60000, &version);
            if (st == SHMSTORE_OK) printf("ok version=%" PRIu64 "\n", version);
        } else if (strncmp(line, "version", 7) == 0) {
            st = shmstore_version(s, "config", &version);
            if (st == SHMSTORE_OK) printf("ok version=%" PRIu64 "\n", version);
        } else if (strncmp(line, "quit", 4) == 0) {
            return 0;
        } else {
            printf("err -1 unknown command %s", line);
            fflush(stdout);
            continue;
        }
        if (st != SHMSTORE_OK) printf("err %d %s\n", (int)st, shmstore_last_error());
        fflush(stdout);
    }
    return 0;
}

/* Misuse of the ABI: each line is "NAME CODE MESSAGE", for the test to compare with Rust. */
static int misuse(shmstore *s) {
    struct Torn t = {0};
    uint32_t u[4] = {0};
    uint64_t version = 0, len = 0;
#define SHOW(name, call)                                                                       \
    do {                                                                                       \
        shmstore_status st_ = (call);                                                          \
        printf("%s %d %s\n", name, (int)st_, st_ == SHMSTORE_OK ? "" : shmstore_last_error()); \
    } while (0)
    SHOW("null_store", shmstore_load(NULL, "torn", &t, sizeof t, TORN_FP, NULL));
    SHOW("null_name", shmstore_load(s, NULL, &t, sizeof t, TORN_FP, NULL));
    SHOW("null_out", shmstore_load(s, "torn", NULL, sizeof t, TORN_FP, NULL));
    SHOW("null_callback", shmstore_update(s, "torn", sizeof t, TORN_FP, NULL, NULL, NULL));
    SHOW("null_version", shmstore_version(s, "torn", NULL));
    SHOW("not_found", shmstore_load(s, "nope", &t, sizeof t, TORN_FP, NULL));
    SHOW("bad_name", shmstore_load(s, "", &t, sizeof t, TORN_FP, NULL));
    SHOW("not_utf8", shmstore_load(s, "\xff", &t, sizeof t, TORN_FP, NULL));
    SHOW("wrong_size", shmstore_load(s, "torn", &t, sizeof t - 8, TORN_FP, NULL));
    SHOW("wrong_fingerprint", shmstore_load(s, "torn", &t, sizeof t, TORN_FP ^ 1, NULL));
    SHOW("kind", shmstore_load(s, "samples", &t, sizeof t, TORN_FP, NULL));
    SHOW("array_len", shmstore_array_len(s, "samples", &len));
    printf("len %" PRIu64 "\n", len);
    SHOW("read_at", shmstore_read_at(s, "samples", 1, u, 3, sizeof u[0], U32_FP, &version));
    printf("read %u %u %u %u\n", u[0], u[1], u[2], u[3]);
    u[0] = 70, u[1] = 80;
    SHOW("write_at", shmstore_write_at(s, "samples", 2, u, 2, sizeof u[0], U32_FP, &version));
    SHOW("out_of_bounds", shmstore_read_at(s, "samples", 3, u, 2, sizeof u[0], U32_FP, NULL));
    SHOW("overflow", shmstore_read_at(s, "samples", 0, u, SIZE_MAX, sizeof u[0], U32_FP, NULL));
    SHOW("store_if_stale", shmstore_store_if(s, "torn", &t, sizeof t, TORN_FP, 12345, NULL));
    shmstore_status err = SHMSTORE_OK;
    shmstore *missing = shmstore_open("/nonexistent/store.shm", 0, &err);
    printf("open_missing %d %s\n", (int)err, missing == NULL ? shmstore_last_error() : "opened?");
    missing = shmstore_open("/nonexistent/store.shm", 4, &err);
    printf("open_flags %d %s\n", (int)err, missing == NULL ? shmstore_last_error() : "opened?");
    shmstore_close(NULL);
    return 0;
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: peer MODE STORE [ARG]\n");
        return 2;
    }
    const char *mode = argv[1];
    uint64_t arg = argc > 3 ? strtoull(argv[3], NULL, 10) : 0;
    shmstore_status err = SHMSTORE_OK;
    shmstore *s = shmstore_open(argv[2], 0, &err);
    if (s == NULL) return fail("open", err);
    int rc = 2;
    if (strcmp(mode, "read") == 0) rc = reader(s, arg, argc > 4 ? strtoull(argv[4], NULL, 10) : 1);
    else if (strcmp(mode, "write") == 0) rc = writer(s, arg);
    else if (strcmp(mode, "spin") == 0) rc = spin(s, arg);
    else if (strcmp(mode, "serve") == 0) rc = serve(s);
    else if (strcmp(mode, "misuse") == 0) rc = misuse(s);
    else if (strcmp(mode, "hang") == 0) {
        shmstore_status st = shmstore_update(s, "torn", sizeof(struct Torn), TORN_FP, half_and_hang, NULL, NULL);
        rc = fail("hang returned", st);
    } else fprintf(stderr, "unknown mode %s\n", mode);
    shmstore_close(s);
    return rc;
}
