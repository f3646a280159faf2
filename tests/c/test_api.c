/* C API test: real results (exact hits, recall against brute force, batch == single) and every
 * bad input rejected with its status while the index stays unchanged. Exit code 0 = pass. */
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "omendb.h"
#include "check.h"

#define DIM 32
#define N 3000
#define K 10
#define QUERIES 50


/* A predicate for the filter tests: accepts ids whose row number is a multiple of *context. */
static bool every_nth_row(uint64_t id, void *context) {
    return ((id - 1000000) / 7) % *(const uint64_t *)context == 0;
}

static float l2(const float *a, const float *b) {
    float s = 0;
    for (int i = 0; i < DIM; i++) s += (a[i] - b[i]) * (a[i] - b[i]);
    return s;
}

/* Expects `status` with a matching error code and a non-empty message, then frees the error. */
static void expect_error(omen_status status, omen_error *err, omen_status expected, const char *what) {
    CHECK(status == expected, "%s: got %s, want %s", what, omen_status_name(status), omen_status_name(expected));
    CHECK(err != NULL, "%s: no error object", what);
    CHECK(omen_error_code(err) == expected, "%s: error code %u", what, (unsigned)omen_error_code(err));
    CHECK(strlen(omen_error_message(err)) > 0, "%s: empty message", what);
    omen_error_free(err);
}

/* Evaluates `call` (which writes `err`) before inspecting `err`. */
#define EXPECT(call, expected, what)                \
    do {                                            \
        omen_status got_ = (call);                  \
        expect_error(got_, err, (expected), (what)); \
        err = NULL;                                 \
    } while (0)

int main(void) {
    omen_index *index = NULL;
    omen_error *err = NULL;
    float *base = malloc(sizeof(float) * N * DIM);
    uint64_t *ids = malloc(sizeof(uint64_t) * N);
    float queries[QUERIES * DIM];
    uint64_t out_ids[QUERIES * K];
    float out_distances[QUERIES * K];
    size_t out_counts[QUERIES];
    size_t count = 0;
    omen_status status;

    CHECK(omen_abi_version() == OMEN_ABI_VERSION, "abi %u vs %u", omen_abi_version(), OMEN_ABI_VERSION);
    CHECK(strlen(omen_version()) > 0, "empty version");
    printf("omendb %s (abi %u)\n", omen_version(), omen_abi_version());

    omen_options options;
    status = omen_options_default(&options, sizeof options - 1, &err);
    expect_error(status, err, OMEN_STATUS_INVALID_ARGUMENT, "options size mismatch");
    status = omen_options_default(&options, sizeof options, &err);
    CHECK(status == OMEN_STATUS_OK && err == NULL, "options_default: %s", omen_error_message(err));
    CHECK(options.m == 16 && options.ef_construction == 100 && options.dim == 0, "defaults m=%zu", options.m);

    status = omen_index_create(&options, &index, &err);
    expect_error(status, err, OMEN_STATUS_INVALID_ARGUMENT, "dim 0");
    CHECK(index == NULL, "index written on failure");
    options.dim = DIM;
    options.metric = 99;
    status = omen_index_create(&options, &index, &err);
    expect_error(status, err, OMEN_STATUS_INVALID_ARGUMENT, "unknown metric");
    options.metric = OMEN_METRIC_L2;
    options.threads = 2;
    status = omen_index_create(&options, &index, &err);
    CHECK(status == OMEN_STATUS_OK, "create: %s", omen_error_message(err));
    if (status != OMEN_STATUS_OK) goto cleanup;
    CHECK(omen_index_dim(index) == DIM && omen_index_len(index) == 0, "fresh index");

    for (size_t i = 0; i < (size_t)N * DIM; i++) base[i] = next_float();
    for (size_t i = 0; i < N; i++) ids[i] = 1000000 + i * 7;
    for (size_t i = 0; i < (size_t)QUERIES * DIM; i++) queries[i] = next_float();

    /* Two batches, so the second one links into an existing graph. */
    status = omen_index_insert_batch(index, ids, base, N / 2, DIM, &err);
    CHECK(status == OMEN_STATUS_OK, "insert 1: %s", omen_error_message(err));
    status = omen_index_insert_batch(index, ids + N / 2, base + (N / 2) * DIM, N - N / 2, DIM, NULL);
    CHECK(status == OMEN_STATUS_OK, "insert 2");
    CHECK(omen_index_len(index) == N, "len %zu", omen_index_len(index));

    /* An inserted vector finds itself at distance 0. */
    status = omen_index_search(index, base + 1234 * DIM, DIM, K, 0, out_ids, out_distances, &count, &err);
    CHECK(status == OMEN_STATUS_OK && count == K, "self search: %s", omen_error_message(err));
    CHECK(out_ids[0] == ids[1234] && out_distances[0] == 0.0f, "self hit %llu %f", (unsigned long long)out_ids[0], out_distances[0]);
    for (size_t j = 1; j < count; j++) CHECK(out_distances[j - 1] <= out_distances[j], "unsorted at %zu", j);

    /* Recall against brute force, and batch search equal to single searches. */
    status = omen_index_search_batch(index, queries, QUERIES, DIM, K, 64, 2, out_ids, out_distances, out_counts, &err);
    CHECK(status == OMEN_STATUS_OK, "search_batch: %s", omen_error_message(err));
    size_t hits = 0;
    for (int q = 0; q < QUERIES; q++) {
        const float *query = queries + q * DIM;
        float best[K];
        uint64_t best_ids[K];
        for (int j = 0; j < K; j++) best[j] = INFINITY;
        for (size_t i = 0; i < N; i++) {
            float d = l2(query, base + i * DIM);
            if (d >= best[K - 1]) continue;
            int j = K - 1;
            while (j > 0 && best[j - 1] > d) { best[j] = best[j - 1]; best_ids[j] = best_ids[j - 1]; j--; }
            best[j] = d; best_ids[j] = ids[i];
        }
        CHECK(out_counts[q] == K, "count %zu", out_counts[q]);
        for (int a = 0; a < K; a++)
            for (int b = 0; b < K; b++) hits += out_ids[q * K + a] == best_ids[b];
        uint64_t single_ids[K];
        float single_d[K];
        status = omen_index_search(index, query, DIM, K, 64, single_ids, single_d, &count, NULL);
        CHECK(status == OMEN_STATUS_OK && memcmp(single_ids, out_ids + q * K, sizeof single_ids) == 0, "batch != single for %d", q);
    }
    double recall = (double)hits / (QUERIES * K);
    printf("recall@%d = %.3f over %d queries\n", K, recall, QUERIES);
    CHECK(recall >= 0.95, "recall %.3f", recall);

    /* Bad input: the right status, and nothing changes. */
    float bad[DIM];
    memcpy(bad, base, sizeof bad);
    bad[3] = NAN;
    uint64_t fresh_id = 42;
    EXPECT(omen_index_insert_batch(index, &fresh_id, bad, 1, DIM, &err), OMEN_STATUS_NON_FINITE, "NaN");
    bad[3] = INFINITY;
    EXPECT(omen_index_insert_batch(index, &fresh_id, bad, 1, DIM, &err), OMEN_STATUS_NON_FINITE, "inf");
    EXPECT(omen_index_insert_batch(index, &fresh_id, base, 1, DIM + 1, &err), OMEN_STATUS_DIMENSION_MISMATCH, "dim");
    EXPECT(omen_index_insert_batch(index, ids, base, 1, DIM, &err), OMEN_STATUS_DUPLICATE_ID, "dup existing");
    uint64_t twice[2] = {7, 7};
    EXPECT(omen_index_insert_batch(index, twice, base, 2, DIM, &err), OMEN_STATUS_DUPLICATE_ID, "dup in batch");
    EXPECT(omen_index_insert_batch(NULL, ids, base, 1, DIM, &err), OMEN_STATUS_NULL_ARGUMENT, "NULL index");
    EXPECT(omen_index_insert_batch(index, NULL, base, 1, DIM, &err), OMEN_STATUS_NULL_ARGUMENT, "NULL ids");
    EXPECT(omen_index_insert_batch(index, &fresh_id, NULL, 1, DIM, &err), OMEN_STATUS_NULL_ARGUMENT, "NULL vectors");
    CHECK(omen_index_insert_batch(index, NULL, NULL, 0, DIM, &err) == OMEN_STATUS_OK && err == NULL, "empty batch");
    CHECK(omen_index_len(index) == N, "len changed to %zu", omen_index_len(index));

    count = 12345;
    EXPECT(omen_index_search(index, base, DIM, 0, 0, out_ids, out_distances, &count, &err), OMEN_STATUS_INVALID_ARGUMENT, "k=0");
    EXPECT(omen_index_search(index, base, DIM - 1, K, 0, out_ids, out_distances, &count, &err), OMEN_STATUS_DIMENSION_MISMATCH, "query dim");
    EXPECT(omen_index_search(index, bad, DIM, K, 0, out_ids, out_distances, &count, &err), OMEN_STATUS_NON_FINITE, "query inf");
    EXPECT(omen_index_search(index, base, DIM, K, 0, NULL, out_distances, &count, &err), OMEN_STATUS_NULL_ARGUMENT, "NULL out_ids");
    EXPECT(omen_index_search(index, base, DIM, K, 0, out_ids, out_distances, NULL, &err), OMEN_STATUS_NULL_ARGUMENT, "NULL out_count");
    EXPECT(omen_index_search(index, base, DIM, K, 0, out_ids, (float *)out_ids, &count, &err), OMEN_STATUS_INVALID_ARGUMENT, "overlap");
    EXPECT(omen_index_search(index, base, DIM, K, 0, out_ids, out_distances, (size_t *)&out_ids[3], &err), OMEN_STATUS_INVALID_ARGUMENT, "out_count inside out_ids");
    {
        uint64_t reserved[2] = {N + 1, OMEN_NO_ID};
        EXPECT(omen_index_insert_batch(index, reserved, base, 2, DIM, &err), OMEN_STATUS_INVALID_ARGUMENT, "OMEN_NO_ID as an id");
        CHECK(omen_index_len(index) == N, "a refused batch changed the index");
    }
    CHECK(count == 12345, "out_count written on failure");

    /* ef below k is raised to k. */
    status = omen_index_search(index, base, DIM, K, 1, out_ids, out_distances, &count, &err);
    CHECK(status == OMEN_STATUS_OK && count == K, "ef < k");

    /* Filters: the nearest allowed ids, exactly min(k, allowed) of them; a predicate and the
     * equal allow-list agree under the exact plan; a range search finds what brute force does. */
    {
        uint64_t nth = 10;
        uint64_t allowed[N / 10];
        for (size_t i = 0; i < N / 10; i++) allowed[i] = ids[i * 10];
        omen_search_params params = {0};
        params.size = sizeof params;
        params.allow_ids = allowed;
        params.allow_count = N / 10;
        params.plan = OMEN_SEARCH_PLAN_EXACT;
        uint64_t by_list[K], by_predicate[K];
        float d_list[K], d_predicate[K];
        size_t n_list = 0, n_predicate = 0;
        status = omen_index_search_with(index, queries, DIM, K, &params, by_list, d_list, &n_list, &err);
        CHECK(status == OMEN_STATUS_OK && n_list == K, "allow-list search: %s", omen_error_message(err));
        for (size_t j = 0; j < n_list; j++) CHECK(every_nth_row(by_list[j], &nth), "id %llu not allowed", (unsigned long long)by_list[j]);
        params.allow_ids = NULL;
        params.allow_count = 0;
        params.predicate = every_nth_row;
        params.predicate_context = &nth;
        status = omen_index_search_with(index, queries, DIM, K, &params, by_predicate, d_predicate, &n_predicate, &err);
        CHECK(status == OMEN_STATUS_OK && n_predicate == K, "predicate search: %s", omen_error_message(err));
        CHECK(memcmp(by_list, by_predicate, sizeof by_list) == 0, "predicate and allow-list differ");
        /* Auto plan, a batch sharing the filter. */
        params.plan = OMEN_SEARCH_PLAN_AUTO;
        status = omen_index_search_batch_with(index, queries, QUERIES, DIM, K, &params, out_ids, out_distances, out_counts, &err);
        CHECK(status == OMEN_STATUS_OK, "filtered batch: %s", omen_error_message(err));
        for (size_t i = 0; i < (size_t)QUERIES * K; i++) CHECK(every_nth_row(out_ids[i], &nth), "batch: id not allowed");
        /* One allowed id: one result; an empty list: none. */
        params.predicate = NULL;
        params.allow_ids = &ids[17];
        params.allow_count = 1;
        status = omen_index_search_with(index, queries, DIM, K, &params, by_list, d_list, &n_list, &err);
        CHECK(status == OMEN_STATUS_OK && n_list == 1 && by_list[0] == ids[17], "single allowed id");
        params.allow_count = 0;
        status = omen_index_search_with(index, queries, DIM, K, &params, by_list, d_list, &n_list, &err);
        CHECK(status == OMEN_STATUS_OK && n_list == 0, "empty allow-list: %zu hits", n_list);
        /* Bad filters. */
        params.allow_ids = NULL;
        params.allow_count = 3;
        EXPECT(omen_index_search_with(index, queries, DIM, K, &params, by_list, d_list, &n_list, &err), OMEN_STATUS_NULL_ARGUMENT, "NULL allow_ids");
        params.allow_count = 0;
        params.plan = 7;
        EXPECT(omen_index_search_with(index, queries, DIM, K, &params, by_list, d_list, &n_list, &err), OMEN_STATUS_INVALID_ARGUMENT, "unknown plan");
        /* An older caller's params (no filter fields) still work. */
        params.size = 4 * sizeof(size_t);
        params.plan = 7;
        status = omen_index_search_with(index, queries, DIM, K, &params, by_list, d_list, &n_list, &err);
        CHECK(status == OMEN_STATUS_OK && n_list == K, "old params size: %s", omen_error_message(err));

        /* Range: the exact plan equals brute force. */
        float radius = 0;
        {
            float all[N];
            for (size_t i = 0; i < N; i++) all[i] = l2(queries, base + i * DIM);
            float sorted[N];
            memcpy(sorted, all, sizeof sorted);
            for (size_t i = 0; i < 30; i++) /* partial selection: the 30th smallest */
                for (size_t j = i + 1; j < N; j++)
                    if (sorted[j] < sorted[i]) { float t = sorted[i]; sorted[i] = sorted[j]; sorted[j] = t; }
            radius = (sorted[28] + sorted[29]) / 2;
        }
        omen_search_params exact = {0};
        exact.size = sizeof exact;
        exact.plan = OMEN_SEARCH_PLAN_EXACT;
        uint64_t range_ids[64];
        float range_d[64];
        size_t range_count = 0;
        status = omen_index_search_range_with(index, queries, DIM, radius, 64, &exact, range_ids, range_d, &range_count, &err);
        CHECK(status == OMEN_STATUS_OK && range_count == 29, "range: %zu hits, want 29: %s", range_count, omen_error_message(err));
        for (size_t j = 0; j < range_count; j++) CHECK(range_d[j] <= radius && (j == 0 || range_d[j - 1] <= range_d[j]), "range order");
        CHECK(range_ids[range_count] == OMEN_NO_ID, "range padding");
        status = omen_index_search_range(index, queries, DIM, radius, 64, 0, range_ids, range_d, &range_count, &err);
        CHECK(status == OMEN_STATUS_OK && range_count >= 27, "range walk: %zu hits", range_count);
        EXPECT(omen_index_search_range(index, queries, DIM, NAN, 64, 0, range_ids, range_d, &range_count, &err), OMEN_STATUS_INVALID_ARGUMENT, "NaN radius");
        EXPECT(omen_index_search_range(index, queries, DIM, -1.0f, 64, 0, range_ids, range_d, &range_count, &err), OMEN_STATUS_INVALID_ARGUMENT, "negative radius");
        EXPECT(omen_index_search_range(index, queries, DIM, 1.0f, 0, 0, range_ids, range_d, &range_count, &err), OMEN_STATUS_INVALID_ARGUMENT, "max_results 0");
    }

    /* k above len returns len hits, and the slots after them hold OMEN_NO_ID and INFINITY. */
    omen_index *small = NULL;
    status = omen_index_create(&options, &small, &err);
    CHECK(status == OMEN_STATUS_OK, "create small: %s", omen_error_message(err));
    if (status == OMEN_STATUS_OK) {
        status = omen_index_insert_batch(small, ids, base, 3, DIM, &err);
        CHECK(status == OMEN_STATUS_OK, "insert 3: %s", omen_error_message(err));
        for (size_t slot = 0; slot < K; slot++) {
            out_ids[slot] = 777;
            out_distances[slot] = -1.0f;
        }
        status = omen_index_search(small, base, DIM, K, 0, out_ids, out_distances, &count, &err);
        CHECK(status == OMEN_STATUS_OK && count == 3, "k > len: %zu hits", count);
        CHECK(out_ids[0] == ids[0] && out_distances[0] == 0.0f, "k > len: nearest is the query itself");
        for (size_t slot = 3; slot < K; slot++) {
            CHECK(out_ids[slot] == OMEN_NO_ID, "slot %zu holds id %llu, not OMEN_NO_ID", slot,
                  (unsigned long long)out_ids[slot]);
            CHECK(isinf(out_distances[slot]) && out_distances[slot] > 0, "slot %zu distance %f", slot,
                  (double)out_distances[slot]);
        }
        omen_index_free(small);
    }

cleanup:
    omen_index_free(index);
    omen_index_free(NULL);
    omen_error_free(NULL);
    free(base);
    free(ids);
    if (failures) {
        fprintf(stderr, "test_api: %d checks failed\n", failures);
        return 1;
    }
    printf("test_api: all checks passed\n");
    return 0;
}
