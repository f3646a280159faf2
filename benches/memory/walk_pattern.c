/* The memory pattern of one HNSW layer-0 expansion, without the search around it: the floor
 * that a graph walk over codes (or bfloat16 rows) of a given size could reach on this machine.
 *
 *     cc -O2 -o build/walk_pattern benches/memory/walk_pattern.c
 *     build/walk_pattern ROW_BYTES LOOKAHEAD [visited] [CHAINS]
 *
 * A million nodes on huge pages. Each step reads one node's list (33 words), then the rows of
 * 11 of its neighbours (what a search at ef 64 ranks per expansion on 1M clustered vectors),
 * LOOKAHEAD of them prefetched ahead, and moves to the neighbour its row ranks first: a
 * dependent chain, as the walk is. With `visited`, each step also checks and stamps 32 marks
 * in a 2 MB array of 16-bit stamps first, as `Visited` does.
 *
 * With CHAINS > 1, that many walks (the queries of a batch, on one thread) take turns, each
 * step in two halves a turn apart: read the list and start loading all the ranked rows; then,
 * a turn later, rank them, move, and start loading the next list. What interleaving a batch's
 * walks could reach; the time is still per step of one walk.
 *
 * On the 2-core Sapphire Rapids KVM guest (README), lookahead 6, over several runs: 64-byte rows
 * 224-290 ns a step, 128-byte 299-444, 256-byte 610-740; the stamps add 75-180 ns. omendb's own 1M 8-bit
 * search spends about 1,350 ns an expansion, so most of its time is outside this pattern.
 * Interleaved (one run each, same machine): 64-byte rows 221 ns a step alone, 140 with two
 * walks, 125 with four, 130 with eight; 128-byte 319, 220, 207, 213; 256-byte 559, 405, 424,
 * 437. About fourteen lines a step at 125 ns is what sixteen line-fill buffers at this
 * machine's latency carry, so four walks already saturate them.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <xmmintrin.h>

enum { NODES = 1000000, LIST_WORDS = 33, RANKED = 11, STEPS = 200000 };

static double seconds(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

/* `bytes` of touched memory on 2 MB pages (advised; the kernel decides). */
static void *huge_array(size_t bytes) {
    size_t rounded = (bytes + (2u << 20) - 1) / (2u << 20) * (2u << 20);
    void *p = aligned_alloc(2u << 20, rounded);
    if (!p) {
        perror("aligned_alloc");
        exit(1);
    }
    madvise(p, rounded, MADV_HUGEPAGE);
    memset(p, 1, rounded);
    return p;
}

static void prefetch_row(const uint8_t *rows, uint32_t node, int row_bytes) {
    for (int b = 0; b < row_bytes; b += 64) _mm_prefetch((const char *)rows + (size_t)node * row_bytes + b, _MM_HINT_T0);
}

/* Checks and stamps every link, as `Visited` does, into `unvisited`; the first RANKED are
 * ranked whatever the marks say, so both variants rank the same number of rows. */
static const uint32_t *stamp_links(const uint32_t *links, uint16_t *marks, uint16_t stamp, uint32_t *unvisited) {
    int taken = 0;
    for (int i = 0; i < 32; i++) {
        int fresh = marks[links[i]] != stamp;
        marks[links[i]] = stamp;
        unvisited[taken] = links[i];
        taken += fresh | (i < RANKED);
    }
    return unvisited;
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: %s ROW_BYTES LOOKAHEAD [visited] [CHAINS]\n", argv[0]);
        return 2;
    }
    int row_bytes = atoi(argv[1]), lookahead = atoi(argv[2]);
    int with_visited = argc > 3 && strcmp(argv[3], "visited") == 0;
    int chains = argc > 3 ? atoi(argv[argc - 1]) : 1;
    if (chains < 1 || chains > 64) chains = 1;
    uint32_t *lists = huge_array((size_t)NODES * LIST_WORDS * 4);
    uint8_t *rows = huge_array((size_t)NODES * row_bytes);
    uint16_t *marks = huge_array((size_t)NODES * 2);
    srand(7);
    for (size_t i = 0; i < (size_t)NODES * LIST_WORDS; i++) lists[i] = ((uint64_t)rand() * RAND_MAX + rand()) % NODES;
    uint32_t nodes[64], pending[64][RANKED], unvisited[32];
    for (int c = 0; c < chains; c++) nodes[c] = (uint32_t)c * (NODES / 64);
    uint16_t stamp = 1;
    uint64_t checksum = 0;
    double start = seconds();
    for (int turn = 0; chains > 1 && turn < 2 * STEPS; turn++) {
        int c = turn % chains;
        if (turn / chains % 2 == 0) {
            const uint32_t *links = lists + (size_t)nodes[c] * LIST_WORDS + 1;
            if (with_visited) links = stamp_links(links, marks, ++stamp, unvisited);
            for (int i = 0; i < RANKED; i++) {
                pending[c][i] = links[i];
                prefetch_row(rows, links[i], row_bytes);
            }
        } else {
            uint32_t best = 0, best_score = UINT32_MAX;
            for (int i = 0; i < RANKED; i++) {
                const uint8_t *row = rows + (size_t)pending[c][i] * row_bytes;
                uint32_t score = pending[c][i];
                for (int b = 0; b < row_bytes; b += 8) score += row[b];
                if (score < best_score) best_score = score, best = pending[c][i];
            }
            checksum += best_score;
            nodes[c] = best;
            prefetch_row((const uint8_t *)lists, best, LIST_WORDS * 4);
        }
    }
    for (int step = 0; chains == 1 && step < STEPS; step++) {
        uint32_t node = nodes[0];
        const uint32_t *links = lists + (size_t)node * LIST_WORDS + 1;
        if (with_visited) links = stamp_links(links, marks, ++stamp, unvisited);
        for (int i = 0; i < lookahead && i < RANKED; i++) prefetch_row(rows, links[i], row_bytes);
        uint32_t best = 0, best_score = UINT32_MAX;
        for (int i = 0; i < RANKED; i++) {
            if (i + lookahead < RANKED) prefetch_row(rows, links[i + lookahead], row_bytes);
            const uint8_t *row = rows + (size_t)links[i] * row_bytes;
            uint32_t score = links[i];
            for (int b = 0; b < row_bytes; b += 8) score += row[b];
            if (score < best_score) best_score = score, best = links[i];
        }
        checksum += best_score;
        nodes[0] = best;
    }
    double elapsed = seconds() - start;
    printf("rows of %d B, lookahead %d%s, %d walk%s: %.0f ns a step (checksum %lu)\n", row_bytes, lookahead,
           with_visited ? ", visited stamps" : "", chains, chains > 1 ? "s" : "", elapsed * 1e9 / STEPS,
           (unsigned long)(checksum & 0xff));
    return 0;
}
