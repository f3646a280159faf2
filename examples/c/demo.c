/* omendb demo: builds an index from generated clustered vectors in batches, then measures
 * recall@10 against brute force and queries per second.
 *
 *   make demo                      # 100,000 vectors of dimension 128
 *   build/demo [count] [dim]       # another size
 */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "omendb.h"

#define K 10
#define BATCH 10000
#define QUERIES 1000
#define TRUTH_QUERIES 200
#define CLUSTERS 100

static uint64_t rng = 0x9E3779B97F4A7C15ull;
static double uniform(void) {
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (double)(rng >> 11) / 9007199254740992.0;
}
static float gaussian(void) { return (float)(sqrt(-2.0 * log(1.0 - uniform())) * cos(6.283185307179586 * uniform())); }

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

/* Prints the error and frees it; returns 1 so callers can `return fail(...)`. */
static int fail(const char *what, omen_status status, omen_error *err) {
    fprintf(stderr, "%s failed: %s: %s\n", what, omen_status_name(status), omen_error_message(err));
    omen_error_free(err);
    return 1;
}

int main(int argc, char **argv) {
    size_t n = argc > 1 ? strtoul(argv[1], NULL, 10) : 100000;
    size_t dim = argc > 2 ? strtoul(argv[2], NULL, 10) : 128;
    int rc = 1;
    omen_index *index = NULL;
    omen_error *err = NULL;
    omen_status status;
    float *centres = malloc(sizeof(float) * CLUSTERS * dim);
    float *data = malloc(sizeof(float) * (n + QUERIES) * dim);
    uint64_t *ids = malloc(sizeof(uint64_t) * n);
    uint64_t *found = malloc(sizeof(uint64_t) * QUERIES * K);
    float *distances = malloc(sizeof(float) * QUERIES * K);
    size_t *counts = malloc(sizeof(size_t) * QUERIES);
    if (!centres || !data || !ids || !found || !distances || !counts || n == 0 || dim == 0) {
        fprintf(stderr, "bad arguments or out of memory\n");
        goto cleanup;
    }

    printf("omendb %s: %zu vectors of dimension %zu in %d clusters, L2\n", omen_version(), n, dim, CLUSTERS);
    for (size_t i = 0; i < CLUSTERS * dim; i++) centres[i] = (float)(uniform() * 2 - 1);
    for (size_t i = 0; i < n + QUERIES; i++) {
        const float *centre = centres + (size_t)(uniform() * CLUSTERS) * dim;
        for (size_t j = 0; j < dim; j++) data[i * dim + j] = centre[j] + 0.25f * gaussian();
        if (i < n) ids[i] = i;
    }
    const float *queries = data + n * dim;

    omen_options options;
    status = omen_options_default(&options, sizeof options, &err);
    if (status != OMEN_STATUS_OK) { fail("omen_options_default", status, err); goto cleanup; }
    options.dim = dim;
    options.metric = OMEN_METRIC_L2;
    status = omen_index_create(&options, &index, &err);
    if (status != OMEN_STATUS_OK) { fail("omen_index_create", status, err); goto cleanup; }

    double start = now();
    for (size_t done = 0; done < n; done += BATCH) {
        size_t count = n - done < BATCH ? n - done : BATCH;
        status = omen_index_insert_batch(index, ids + done, data + done * dim, count, dim, &err);
        if (status != OMEN_STATUS_OK) { fail("omen_index_insert_batch", status, err); goto cleanup; }
        double elapsed = now() - start;
        printf("\rinserted %zu / %zu  (%.0f vectors/s)", done + count, n, (done + count) / elapsed);
        fflush(stdout);
    }
    double build = now() - start;
    printf("\nbuilt in %.2f s: %.0f vectors/s, %zu segment(s)\n", build, n / build, omen_index_segment_count(index));

    int efs[] = {16, 32, 64, 128};
    size_t truth_queries = TRUTH_QUERIES < QUERIES ? TRUTH_QUERIES : QUERIES;
    uint64_t *truth = malloc(sizeof(uint64_t) * truth_queries * K);
    if (!truth) goto cleanup;
    for (size_t q = 0; q < truth_queries; q++) {
        float best[K];
        for (int j = 0; j < K; j++) best[j] = INFINITY;
        for (size_t i = 0; i < n; i++) {
            float d = 0;
            for (size_t j = 0; j < dim; j++) {
                float diff = queries[q * dim + j] - data[i * dim + j];
                d += diff * diff;
            }
            if (d >= best[K - 1]) continue;
            int j = K - 1;
            while (j > 0 && best[j - 1] > d) { best[j] = best[j - 1]; truth[q * K + j] = truth[q * K + j - 1]; j--; }
            best[j] = d;
            truth[q * K + j] = ids[i];
        }
    }
    printf("%6s %10s %14s %14s\n", "ef", "recall@10", "qps 1 thread", "qps all cores");
    for (size_t e = 0; e < sizeof efs / sizeof *efs; e++) {
        double qps[2];
        for (int parallel = 0; parallel < 2; parallel++) {
            double t = now();
            status = omen_index_search_batch(index, queries, QUERIES, dim, K, efs[e], parallel ? 0 : 1, found, distances, counts, &err);
            if (status != OMEN_STATUS_OK) { free(truth); fail("omen_index_search_batch", status, err); goto cleanup; }
            qps[parallel] = QUERIES / (now() - t);
        }
        size_t hits = 0;
        for (size_t q = 0; q < truth_queries; q++)
            for (int a = 0; a < K; a++)
                for (int b = 0; b < K; b++) hits += found[q * K + a] == truth[q * K + b];
        printf("%6d %10.3f %14.0f %14.0f\n", efs[e], (double)hits / (truth_queries * K), qps[0], qps[1]);
    }
    free(truth);
    rc = 0;

cleanup:
    omen_index_free(index);
    free(centres);
    free(data);
    free(ids);
    free(found);
    free(distances);
    free(counts);
    return rc;
}
