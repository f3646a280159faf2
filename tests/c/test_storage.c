/* C storage test (run under AddressSanitizer and UBSan): create a database, insert, close,
 * reopen, search with identical results; then the open-time errors a C caller meets: no
 * database, a second writer, a read-only insert, a damaged file, a 0.1.0-sized options struct;
 * backups (full and incremental) that open with the same results.
 * Usage: test_storage DIR (DIR must not exist). Exit code 0 = pass. */
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "omendb.h"
#include "check.h"

#define DIM 24
#define N 2500
#define K 10

/* Runs `call`, which writes `err`; on failure prints the error. Evaluates to the status. */
#define TRY(call) try_status((call), &err, #call)
static omen_status try_status(omen_status status, omen_error **err, const char *what) {
    if (status != OMEN_STATUS_OK) {
        fprintf(stderr, "%s: %s: %s\n", what, omen_status_name(status), omen_error_message(*err));
        failures++;
    }
    omen_error_free(*err);
    *err = NULL;
    return status;
}

/* Expects `status` and an error whose message names `needle`, then frees it. */
static void expect(omen_status status, omen_error **err, omen_status want, const char *needle, const char *what) {
    CHECK(status == want, "%s: got %s, want %s", what, omen_status_name(status), omen_status_name(want));
    CHECK(*err != NULL && omen_error_code(*err) == want, "%s: error object", what);
    if (*err != NULL && needle != NULL)
        CHECK(strstr(omen_error_message(*err), needle) != NULL, "%s: message '%s' lacks '%s'", what,
              omen_error_message(*err), needle);
    omen_error_free(*err);
    *err = NULL;
}


static void search_all(omen_index *index, const float *queries, int count, uint64_t *ids, float *distances) {
    omen_error *err = NULL;
    for (int q = 0; q < count; q++) {
        size_t found = 0;
        TRY(omen_index_search(index, queries + (size_t)q * DIM, DIM, K, 0, ids + q * K, distances + q * K, &found,
                              &err));
        CHECK(found == K, "query %d found %zu", q, found);
    }
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: %s DIR\n", argv[0]);
        return 2;
    }
    const char *dir = argv[1];
    rng_state = 0xC0FFEE;
    omen_error *err = NULL;
    omen_options options;
    if (TRY(omen_options_default(&options, sizeof options, &err)) != OMEN_STATUS_OK) return 1;
    options.dim = DIM;
    options.segment_capacity = 1000; /* two seals and a growing tail */

    omen_index *index = NULL;
    options.create = 0;
    expect(omen_index_open(dir, &options, &index, &err), &err, OMEN_STATUS_NOT_FOUND, dir, "open without create");
    CHECK(index == NULL, "a failed open wrote the handle");
    options.create = 1;
    if (TRY(omen_index_open(dir, &options, &index, &err)) != OMEN_STATUS_OK) return 1;

    float *base = malloc(sizeof(float) * N * DIM);
    uint64_t *ids = malloc(sizeof(uint64_t) * N);
    for (size_t i = 0; i < (size_t)N * DIM; i++) base[i] = next_float();
    for (int i = 0; i < N; i++) ids[i] = 1000 + (uint64_t)i;
    for (int first = 0; first < N; first += 500)
        TRY(omen_index_insert_batch(index, ids + first, base + (size_t)first * DIM, 500, DIM, &err));

    omen_index *second = NULL;
    expect(omen_index_open(dir, &options, &second, &err), &err, OMEN_STATUS_LOCKED, "LOCK", "second writer");

    enum { QUERIES = 20 };
    uint64_t before_ids[QUERIES * K], after_ids[QUERIES * K];
    float before_distances[QUERIES * K], after_distances[QUERIES * K];
    search_all(index, base, QUERIES, before_ids, before_distances);
    CHECK(before_ids[0] == 1000 && before_distances[0] == 0.0f, "query 0 finds itself");

    omen_stats stats = {.size = sizeof stats};
    TRY(omen_index_stats(index, &stats, &err));
    CHECK(stats.vectors == N && stats.segments == 3, "stats: %llu vectors in %llu segments",
          (unsigned long long)stats.vectors, (unsigned long long)stats.segments);
    CHECK(stats.bytes_on_disk > 0, "bytes on disk");

    /* Backups: a full one, then an incremental one against it that links the sealed segments. */
    char full[4096], next[4096];
    snprintf(full, sizeof full, "%s-backup", dir);
    snprintf(next, sizeof next, "%s-backup-next", dir);
    TRY(omen_index_backup(index, full, &err));
    omen_backup_report report = {.size = sizeof report};
    TRY(omen_index_backup_incremental(index, next, full, &report, &err));
    CHECK(report.files >= 4 && report.bytes_linked > report.bytes_copied, "incremental: %llu files, %llu copied, %llu linked",
          (unsigned long long)report.files, (unsigned long long)report.bytes_copied,
          (unsigned long long)report.bytes_linked);
    expect(omen_index_backup(index, dir, &err), &err, OMEN_STATUS_INVALID_ARGUMENT, dir, "backup into a database");
    expect(omen_index_backup(index, NULL, &err), &err, OMEN_STATUS_NULL_ARGUMENT, "dest_path", "NULL dest");
    report.size = 8;
    expect(omen_index_backup_incremental(index, "unused", NULL, &report, &err), &err, OMEN_STATUS_INVALID_ARGUMENT,
           "size", "unknown report size");
    omen_options read_only = options;
    read_only.read_only = 1;
    read_only.create = 0;
    omen_index *copy = NULL;
    if (TRY(omen_index_open(next, &read_only, &copy, &err)) == OMEN_STATUS_OK) {
        uint64_t copy_ids[QUERIES * K];
        float copy_distances[QUERIES * K];
        search_all(copy, base, QUERIES, copy_ids, copy_distances);
        CHECK(memcmp(before_ids, copy_ids, sizeof copy_ids) == 0, "the backup finds other ids");
        CHECK(memcmp(before_distances, copy_distances, sizeof copy_distances) == 0, "the backup's distances differ");
        omen_index_free(copy);
    }

    TRY(omen_index_flush(index, &err));
    TRY(omen_index_close(index, &err));

    /* Reopen with dim 0 (take the stored one) and the 0.1.0 options layout, which has no open
     * fields: defaults apply (create, verify). */
    omen_options old = options;
    old.size = 72;
    old.dim = 0;
    index = NULL;
    if (TRY(omen_index_open(dir, &old, &index, &err)) != OMEN_STATUS_OK) return 1;
    CHECK(omen_index_len(index) == N && omen_index_dim(index) == DIM, "reopened len %zu dim %zu",
          omen_index_len(index), omen_index_dim(index));
    search_all(index, base, QUERIES, after_ids, after_distances);
    CHECK(memcmp(before_ids, after_ids, sizeof before_ids) == 0, "ids differ after reopen");
    CHECK(memcmp(before_distances, after_distances, sizeof before_distances) == 0, "distances differ after reopen");
    TRY(omen_index_stats(index, &stats, &err));
    CHECK(stats.bytes_mapped > 0, "sealed segments are mapped");
    CHECK(stats.log_dropped_bytes == 0 && stats.log_dropped_records == 0, "nothing dropped from the log");
    CHECK(omen_index_recovery_notice(index) == NULL && omen_index_recovery_notice(NULL) == NULL, "no notice");
    /* A caller compiled before the log_dropped fields: they are not written. */
    omen_stats shorter;
    memset(&shorter, 0xAB, sizeof shorter);
    shorter.size = offsetof(omen_stats, log_dropped_bytes);
    TRY(omen_index_stats(index, &shorter, &err));
    CHECK(shorter.vectors == N && shorter.log_dropped_bytes == 0xABABABABABABABABull, "older omen_stats layout");
    omen_index_free(index);

    /* Read-only, with the layout before log_recovery: searches work, inserts are refused. */
    options.read_only = 1;
    options.size = offsetof(omen_options, log_recovery);
    index = NULL;
    if (TRY(omen_index_open(dir, &options, &index, &err)) != OMEN_STATUS_OK) return 1;
    options.size = sizeof options;
    uint64_t new_id = 1;
    expect(omen_index_insert_batch(index, &new_id, base, 1, DIM, &err), &err, OMEN_STATUS_READ_ONLY, dir,
           "read-only insert");
    expect(omen_index_flush(index, &err), &err, OMEN_STATUS_READ_ONLY, NULL, "read-only flush");
    CHECK(omen_index_len(index) == N, "read-only len");
    omen_index_free(index);
    options.read_only = 0;

    /* A damaged manifest is refused by name. */
    char path[4096];
    snprintf(path, sizeof path, "%s/MANIFEST", dir);
    FILE *file = fopen(path, "r+b");
    CHECK(file != NULL, "open %s", path);
    if (file) {
        fseek(file, 20, SEEK_SET);
        fputc(0x5A, file);
        fclose(file);
    }
    index = NULL;
    expect(omen_index_open(dir, &options, &index, &err), &err, OMEN_STATUS_CORRUPT, "MANIFEST", "damaged manifest");
    CHECK(index == NULL, "a failed open wrote the handle");

    /* NULL arguments. */
    expect(omen_index_open(NULL, &options, &index, &err), &err, OMEN_STATUS_NULL_ARGUMENT, "path", "NULL path");
    expect(omen_index_flush(NULL, &err), &err, OMEN_STATUS_NULL_ARGUMENT, NULL, "NULL flush");
    CHECK(omen_index_close(NULL, NULL) == OMEN_STATUS_OK, "close(NULL)");

    free(base);
    free(ids);
    if (failures) {
        fprintf(stderr, "test_storage: %d failures\n", failures);
        return 1;
    }
    printf("test_storage: reopen identical, errors named (%s)\n", omen_version());
    return 0;
}
