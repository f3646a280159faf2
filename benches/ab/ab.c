/* Side by side against another build of the library: the same binary runs with either
 * libomendb.so (LD_LIBRARY_PATH picks it), builds npm51k (cosine, 2 threads) and times search on
 * one thread by CPU time (CLOCK_THREAD_CPUTIME_ID), which other tenants of a shared machine
 * disturb far less than wall time. Prints build vectors/s and, per ef, recall@10 / queries per
 * CPU second. Usage: ab DATA_PREFIX [repeats]  (make bench-ab runs it against a base commit). */
#define _POSIX_C_SOURCE 199309L
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "omendb.h"

static double seconds(clockid_t clock) {
    struct timespec t;
    clock_gettime(clock, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static float half_to_float(unsigned short h) {
    unsigned sign = (unsigned)(h >> 15) << 31, exponent = (h >> 10) & 0x1f, mantissa = h & 0x3ff;
    if (exponent == 0) return (sign ? -1.0f : 1.0f) * (float)mantissa * powf(2.0f, -24.0f);
    unsigned bits = sign | (exponent == 0x1f ? 0xffu << 23 | mantissa << 13 : (exponent + 112) << 23 | mantissa << 13);
    float value;
    memcpy(&value, &bits, sizeof value);
    return value;
}

static void *read_file(const char *path, size_t *size) {
    FILE *f = fopen(path, "rb");
    if (!f) { perror(path); exit(2); }
    fseek(f, 0, SEEK_END);
    *size = (size_t)ftell(f);
    fseek(f, 0, SEEK_SET);
    void *data = malloc(*size);
    if (fread(data, 1, *size, f) != *size) { perror(path); exit(2); }
    fclose(f);
    return data;
}

int main(int argc, char **argv) {
    if (argc < 2) { fprintf(stderr, "usage: %s DATA_PREFIX [repeats [vectors [queries]]]\n", argv[0]); return 2; }
    int repeats = argc > 2 ? atoi(argv[2]) : 3;
    size_t max_n = argc > 3 ? (size_t)atol(argv[3]) : (size_t)-1, max_q = argc > 4 ? (size_t)atol(argv[4]) : (size_t)-1;
    char path[4096];
    size_t size;
    snprintf(path, sizeof path, "%s_query.fvecs", argv[1]);
    int *raw = read_file(path, &size);
    size_t dim = (size_t)raw[0], nq = size / (4 * (dim + 1));
    if (nq > max_q) nq = max_q;
    float *queries = malloc(nq * dim * sizeof(float));
    for (size_t q = 0; q < nq; q++) memcpy(queries + q * dim, raw + q * (dim + 1) + 1, dim * sizeof(float));
    snprintf(path, sizeof path, "%s_groundtruth.ivecs", argv[1]);
    int *truth = read_file(path, &size);
    size_t width = (size_t)truth[0];
    snprintf(path, sizeof path, "%s_base.f16", argv[1]);
    unsigned short *halves = read_file(path, &size);
    size_t n = size / 2 / dim;
    if (n > max_n) n = max_n;
    float *base = malloc(n * dim * sizeof(float));
    uint64_t *ids = malloc(n * sizeof(uint64_t));
    for (size_t i = 0; i < n * dim; i++) base[i] = half_to_float(halves[i]);
    for (size_t i = 0; i < n; i++) ids[i] = i;

    /* 0.1.0's layout (up to `seed`), which every version accepts: the base library may predate
     * fields this header has. */
    omen_options options;
    omen_error *err = NULL;
    if (omen_options_default(&options, offsetof(omen_options, create), &err) != OMEN_STATUS_OK) return 1;
    options.dim = dim;
    options.metric = OMEN_METRIC_COSINE;
    options.threads = 2;
    omen_index *index = NULL;
    if (omen_index_create(&options, &index, &err) != OMEN_STATUS_OK) { fprintf(stderr, "%s\n", omen_error_message(err)); return 1; }
    double wall = seconds(CLOCK_MONOTONIC);
    for (size_t at = 0; at < n; at += 10000) {
        size_t count = n - at < 10000 ? n - at : 10000;
        if (omen_index_insert_batch(index, ids + at, base + at * dim, count, dim, &err) != OMEN_STATUS_OK) {
            fprintf(stderr, "%s\n", omen_error_message(err));
            return 1;
        }
    }
    printf("build %.0f vec/s (wall)", (double)n / (seconds(CLOCK_MONOTONIC) - wall));
    const size_t k = 10, efs[] = {24, 32, 48, 64};
    uint64_t *out_ids = malloc(nq * k * sizeof(uint64_t));
    float *out_distances = malloc(nq * k * sizeof(float));
    size_t *counts = malloc(nq * sizeof(size_t));
    for (size_t e = 0; e < sizeof efs / sizeof *efs; e++) {
        double best = 1e9;
        for (int r = 0; r < repeats; r++) {
            double cpu = seconds(CLOCK_THREAD_CPUTIME_ID);
            if (omen_index_search_batch(index, queries, nq, dim, k, efs[e], 1, out_ids, out_distances, counts, &err)) return 1;
            cpu = seconds(CLOCK_THREAD_CPUTIME_ID) - cpu;
            if (cpu < best) best = cpu;
        }
        size_t hits = 0;
        for (size_t q = 0; q < nq; q++)
            for (size_t j = 0; j < k; j++)
                for (size_t t = 0; t < k; t++) hits += out_ids[q * k + j] == (uint64_t)truth[q * (width + 1) + 1 + t];
        printf("  ef%zu %.3f/%.0f", efs[e], (double)hits / (double)(nq * k), (double)nq / best);
    }
    printf("\n");
    omen_index_free(index);
    return 0;
}
