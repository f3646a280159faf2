/* A database that survives restarts: the first run creates it and inserts 10,000 vectors; every
 * later run opens it (memory-mapped, in milliseconds) and searches.
 *
 *   cc database.c $(pkg-config --cflags --libs omendb) -o database && ./database vectors.db */
#include <stdio.h>
#include <stdlib.h>

#include "omendb.h"

#define DIM 64
#define N 10000

static int fail(const char *what, omen_status status, omen_error *err) {
    fprintf(stderr, "%s: %s: %s\n", what, omen_status_name(status), omen_error_message(err));
    omen_error_free(err);
    return 1;
}

int main(int argc, char **argv) {
    const char *path = argc > 1 ? argv[1] : "vectors.db";
    omen_error *err = NULL;
    omen_options options;
    omen_status status = omen_options_default(&options, sizeof options, &err);
    if (status != OMEN_STATUS_OK) return fail("options", status, err);
    options.dim = DIM;
    options.metric = OMEN_METRIC_COSINE;

    omen_index *index = NULL;
    status = omen_index_open(path, &options, &index, &err); /* creates it on the first run */
    if (status != OMEN_STATUS_OK) return fail("open", status, err);

    static float vectors[N * DIM];
    srand(42);
    for (size_t i = 0; i < (size_t)N * DIM; i++) vectors[i] = (float)rand() / (float)RAND_MAX - 0.5f;
    if (omen_index_len(index) == 0) {
        static uint64_t ids[N];
        for (uint64_t i = 0; i < N; i++) ids[i] = i;
        /* Durable when it returns: in the write-ahead log, fsync'd. */
        status = omen_index_insert_batch(index, ids, vectors, N, DIM, &err);
        if (status != OMEN_STATUS_OK) return fail("insert", status, err);
        printf("created %s with %zu vectors\n", path, omen_index_len(index));
    } else {
        printf("opened %s: %zu vectors\n", path, omen_index_len(index));
    }

    uint64_t found[5];
    float distances[5];
    size_t count = 0;
    status = omen_index_search(index, vectors + 7 * DIM, DIM, 5, 0, found, distances, &count, &err);
    if (status != OMEN_STATUS_OK) return fail("search", status, err);
    printf("nearest to vector 7: id %llu (distance %.3f)\n", (unsigned long long)found[0], distances[0]);

    omen_stats stats = {.size = sizeof stats};
    status = omen_index_stats(index, &stats, &err);
    if (status != OMEN_STATUS_OK) return fail("stats", status, err);
    printf("%llu segment(s), %.1f MB on disk\n", (unsigned long long)stats.segments, stats.bytes_on_disk / 1e6);

    /* Checkpoints (so the next open replays nothing) and frees the index. */
    status = omen_index_close(index, &err);
    if (status != OMEN_STATUS_OK) return fail("close", status, err);
    return found[0] == 7 ? 0 : 1;
}
