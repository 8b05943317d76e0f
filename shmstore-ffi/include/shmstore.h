/* shmstore.h: the C ABI of shmstore (libshmstore_ffi.so / libshmstore_ffi.a, built by the
 * shmstore-ffi crate). C11, or C++ (the declarations are extern "C").
 *
 * A C process that uses this ABI is a full peer of Rust processes: it takes the same locks, runs
 * the same commit protocol, validates values against the same stored layouts, and follows the same
 * migrations. Link with -lshmstore_ffi (and, for the static library, -lpthread -ldl -lm).
 *
 * Conventions:
 * - Every function but shmstore_open, shmstore_close and shmstore_last_error returns a
 *   shmstore_status: SHMSTORE_OK (0) or an error code; shmstore_last_error() gives the message
 *   of the last call that failed on this thread.
 * - Every pointer argument is checked for NULL (SHMSTORE_ERR_NULL), except the optional
 *   `version` out-parameters, which may be NULL.
 * - A value's layout is given as its size and fingerprint: the constants `shmstore header` emits
 *   next to each struct. A layout that is not the entry's is SHMSTORE_ERR_LAYOUT_MISMATCH.
 * - After a migration (Store::migrate in Rust), calls follow the entry: if its new layout is the
 *   caller's they succeed, otherwise they fail with SHMSTORE_ERR_LAYOUT_MISMATCH. A load never
 *   returns stale bytes of a record that was migrated away.
 * - A store handle may be used from several threads at once.
 *
 * Keep in sync with shmstore-ffi/src/lib.rs (shmstore-ffi/tests/header.rs checks it).
 */
#ifndef SHMSTORE_H
#define SHMSTORE_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* An open store. */
typedef struct shmstore shmstore;

/* The result of a call. */
typedef enum shmstore_status {
    SHMSTORE_OK = 0,
    /* A required pointer argument was NULL. */
    SHMSTORE_ERR_NULL = 1,
    /* An invalid argument: text that is not UTF-8, unknown flags, a size that overflows, a buffer
     * that is not whole elements. */
    SHMSTORE_ERR_ARGUMENT = 2,
    /* The store file does not exist. */
    SHMSTORE_ERR_FILE_NOT_FOUND = 3,
    /* The store has no entry of this name. */
    SHMSTORE_ERR_NOT_FOUND = 4,
    /* The entry's layout is not the caller's (size or fingerprint differ; a migration?). */
    SHMSTORE_ERR_LAYOUT_MISMATCH = 5,
    /* The entry is of another kind (an object where an array was asked for, or the reverse). */
    SHMSTORE_ERR_KIND_MISMATCH = 6,
    /* A value is not valid for its layout: nothing was committed or returned. */
    SHMSTORE_ERR_INVALID_VALUE = 7,
    /* A range reaches past the end of an array. */
    SHMSTORE_ERR_OUT_OF_BOUNDS = 8,
    /* Nothing changed within the timeout, or a lock stayed held. */
    SHMSTORE_ERR_TIMEOUT = 9,
    /* shmstore_store_if found another version than the expected one. */
    SHMSTORE_ERR_VERSION_CONFLICT = 10,
    /* An update callback returned non-zero: nothing was committed. */
    SHMSTORE_ERR_ABORTED = 11,
    /* The store was opened read-only. */
    SHMSTORE_ERR_READ_ONLY = 12,
    /* The file is not a store, or is corrupt, truncated, of another version or byte order. */
    SHMSTORE_ERR_BAD_STORE = 13,
    /* An operating-system call failed. */
    SHMSTORE_ERR_IO = 14,
    /* A bug in shmstore, caught before it reached the caller. */
    SHMSTORE_ERR_PANIC = 15,
    /* Any other error; the message says what it is. */
    SHMSTORE_ERR_OTHER = 16
} shmstore_status;

/* shmstore_open flags. */
#define SHMSTORE_OPEN_READ_ONLY 1u

/* Opens the existing store at `path` (flags: 0 or SHMSTORE_OPEN_READ_ONLY). Returns NULL on
 * failure, with the status in *err (if err is not NULL) and the message in shmstore_last_error(). */
shmstore *shmstore_open(const char *path, uint32_t flags, shmstore_status *err);

/* Closes a store (NULL does nothing). It must not be used afterwards. */
void shmstore_close(shmstore *store);

/* The message of the last call on this thread that failed ("" if none), valid until the next
 * failing call on this thread. The same text as the Rust error's Display. */
const char *shmstore_last_error(void);

/* Copies the current value of object `name` into `out` (size bytes of the caller's layout, whose
 * fingerprint is `fingerprint`), and its version into *version. Consistent (never a mix of two
 * commits) and validated. On failure, `out` is zeroed. */
shmstore_status shmstore_load(const shmstore *store, const char *name, void *out, size_t size,
                              uint64_t fingerprint, uint64_t *version);

/* Commits `value` as the new value of object `name`; *version gets the committed version. An
 * invalid value (SHMSTORE_ERR_INVALID_VALUE) commits nothing. */
shmstore_status shmstore_store(const shmstore *store, const char *name, const void *value, size_t size,
                               uint64_t fingerprint, uint64_t *version);

/* Like shmstore_store, but only if the object is still at version `expected` (as shmstore_load
 * returned it); otherwise SHMSTORE_ERR_VERSION_CONFLICT, and nothing is committed. */
shmstore_status shmstore_store_if(const shmstore *store, const char *name, const void *value, size_t size,
                                  uint64_t fingerprint, uint64_t expected, uint64_t *version);

/* An update callback: change the `size` bytes at `value` in place; return 0 to commit, anything
 * else to commit nothing. It runs under the entry's exclusive lock: it must not use the same
 * entry, and must not longjmp or throw out of the call. */
typedef int (*shmstore_update_fn)(void *value, size_t size, void *context);

/* Runs update(copy, size, context) once on a copy of object `name` under its exclusive lock, and
 * commits the copy if it returns 0 (SHMSTORE_ERR_ABORTED otherwise); *version gets the new
 * version. */
shmstore_status shmstore_update(const shmstore *store, const char *name, size_t size, uint64_t fingerprint,
                                shmstore_update_fn update, void *context, uint64_t *version);

/* Copies elements [start, start + count) of array or byte region `name` into `out`
 * (count * elem_size bytes), under the entry's shared lock. On failure, `out` is zeroed. */
shmstore_status shmstore_read_at(const shmstore *store, const char *name, uint64_t start, void *out,
                                 size_t count, size_t elem_size, uint64_t fingerprint, uint64_t *version);

/* Copies `count` elements from `values` into elements [start, start + count) of array or byte
 * region `name`, under the entry's exclusive lock. An invalid element or a range past the end
 * writes nothing. */
shmstore_status shmstore_write_at(const shmstore *store, const char *name, uint64_t start, const void *values,
                                  size_t count, size_t elem_size, uint64_t fingerprint, uint64_t *version);

/* Sleeps until the version of entry `name` differs from `since` (*version gets the new one), or
 * fails with SHMSTORE_ERR_TIMEOUT after timeout_ms milliseconds. After a migration it returns at
 * once, with the version of the entry's new record. */
shmstore_status shmstore_wait_for_change(const shmstore *store, const char *name, uint64_t since,
                                         uint64_t timeout_ms, uint64_t *version);

/* The current version of entry `name` (an object, array or byte region). */
shmstore_status shmstore_version(const shmstore *store, const char *name, uint64_t *version);

/* The number of elements of array or byte region `name`. */
shmstore_status shmstore_array_len(const shmstore *store, const char *name, uint64_t *len);

#ifdef __cplusplus
}
#endif

#endif /* SHMSTORE_H */
