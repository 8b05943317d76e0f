/* quickstart_reader: a C program that reads the store the quickstart example writes, as a peer of
 * the Rust processes (same locks, same consistent reads, same layout checks).
 *
 * From the repository root:
 *
 *   cargo run --release --example quickstart          # the Rust side: writes target/quickstart.shm
 *   cargo build --release -p shmstore-ffi             # target/release/libshmstore_ffi.{a,so}
 *   cargo run --release -p shmstore-cli -- header target/quickstart.shm -o target/quickstart.h
 *   cc -std=c11 -O2 -I shmstore-ffi/include -I target shmstore-ffi/examples/quickstart_reader.c \
 *      target/release/libshmstore_ffi.a -lpthread -ldl -lm -o target/quickstart_reader
 *   ./target/quickstart_reader target/quickstart.shm
 *
 * quickstart.h declares the store's structs (checked by _Static_asserts against the layouts the
 * store records), their fingerprints, and typed functions: run_log_load, totals_load,
 * workers_read_at (over the library's C ABI, declared because shmstore.h is included first) and
 * totals_read_mapped (header-only, for programs that cannot link the library).
 * shmstore-cli/tests/c_header_abi.rs builds and runs this file in CI.
 */
#define _DEFAULT_SOURCE
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "shmstore.h"
#include "quickstart.h"

static int fail(const char *what, shmstore_status status) {
    fprintf(stderr, "%s failed (%d): %s\n", what, (int)status, shmstore_last_error());
    return 1;
}

int main(int argc, char **argv) {
    const char *path = argc > 1 ? argv[1] : "target/quickstart.shm";
    shmstore_status status;
    shmstore *store = shmstore_open(path, SHMSTORE_OPEN_READ_ONLY, &status);
    if (store == NULL) return fail("shmstore_open", status);

    /* Objects: a consistent copy, checked against this program's layout. If the store was
     * migrated to another layout since quickstart.h was generated, this is
     * SHMSTORE_ERR_LAYOUT_MISMATCH, never stale bytes. */
    struct RunLog log;
    uint64_t version = 0;
    if ((status = run_log_load_versioned(store, &log, &version)) != SHMSTORE_OK) return fail("run_log_load", status);
    printf("run_log: %" PRIu64 " runs, the last by pid %u with %u workers on %.32s (version %" PRIu64 ")\n", log.runs,
           log.last_pid, log.last_workers, log.last_host, version);

    struct Totals totals;
    if ((status = totals_load(store, &totals)) != SHMSTORE_OK) return fail("totals_load", status);
    printf("totals: %" PRIu64 " finished runs, the last counted %" PRIu64 ", all together %" PRIu64 "\n", totals.runs,
           totals.last_run, totals.all_runs);

    /* Arrays: copied under the entry's shared lock, as Rust's read_at. */
    uint64_t len = 0;
    if ((status = workers_len(store, &len)) != SHMSTORE_OK) return fail("workers_len", status);
    for (uint64_t i = 0; i < len; i++) {
        struct WorkerRow row;
        if ((status = workers_read_at(store, i, &row, 1)) != SHMSTORE_OK) return fail("workers_read_at", status);
        printf("worker %" PRIu64 ": pid %u, %" PRIu64 " increments in %" PRIu64 " us\n", i, row.pid, row.increments,
               row.micros);
    }
    shmstore_close(store);

    /* Header-only: the same object, read from a mapping of the file without the library. */
    int fd = open(path, O_RDONLY);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0) return 1;
    void *map = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_SHARED, fd, 0);
    close(fd);
    if (map == MAP_FAILED) return 1;
    struct Totals mapped;
    int rc = totals_read_mapped(map, (uint64_t)st.st_size, &mapped, NULL);
    if (rc != SHMSTORE_MAPPED_OK) {
        fprintf(stderr, "totals_read_mapped failed: %d\n", rc);
        return 1;
    }
    printf("totals (header-only read): %" PRIu64 " finished runs\n", mapped.runs);
    munmap(map, (size_t)st.st_size);
    return 0;
}
