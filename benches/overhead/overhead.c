/* Per-call cost of one single-query search from C: the baseline the Go and Python bindings are
 * compared with (same data, same query, same k and ef; see `make bench-overhead`). */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdio.h>
#include <time.h>

#include "omendb.h"

#define N 1000
#define DIM 16
#define CALLS 200000

int main(void) {
    static float vectors[N * DIM];
    static uint64_t ids[N];
    for (int i = 0; i < N; i++) {
        ids[i] = (uint64_t)i;
        for (int j = 0; j < DIM; j++) vectors[i * DIM + j] = sinf((float)(i * DIM + j));
    }
    omen_options options;
    omen_index *index = NULL;
    if (omen_options_default(&options, sizeof options, NULL) != OMEN_STATUS_OK) return 1;
    options.dim = DIM;
    if (omen_index_create(&options, &index, NULL) != OMEN_STATUS_OK) return 1;
    if (omen_index_insert_batch(index, ids, vectors, N, DIM, NULL) != OMEN_STATUS_OK) return 1;
    uint64_t found[10];
    float distances[10];
    size_t count = 0;
    struct timespec start, end;
    clock_gettime(CLOCK_MONOTONIC, &start);
    for (int call = 0; call < CALLS; call++) {
        const float *query = vectors + (call % N) * DIM;
        if (omen_index_search(index, query, DIM, 10, 10, found, distances, &count, NULL) != OMEN_STATUS_OK) return 1;
    }
    clock_gettime(CLOCK_MONOTONIC, &end);
    double seconds = (double)(end.tv_sec - start.tv_sec) + (double)(end.tv_nsec - start.tv_nsec) * 1e-9;
    printf("C       %.3f us per search\n", seconds / CALLS * 1e6);
    omen_index_free(index);
    return 0;
}
