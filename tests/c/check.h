/* Shared by the C test programs: a CHECK that counts failures and keeps going, and a seeded
 * xorshift generator so every run sees the same data. */
#ifndef OMENDB_TEST_CHECK_H
#define OMENDB_TEST_CHECK_H

#include <stdint.h>
#include <stdio.h>

static int failures = 0;
#define CHECK(cond, ...)                                                               \
    do {                                                                               \
        if (!(cond)) {                                                                 \
            fprintf(stderr, "%s:%d: check failed: %s: ", __FILE__, __LINE__, #cond); \
            fprintf(stderr, __VA_ARGS__);                                              \
            fprintf(stderr, "\n");                                                     \
            failures++;                                                                \
        }                                                                              \
    } while (0)

static uint64_t rng_state = 0x1234567;

/* Uniform in [-1, 1). */
static float next_float(void) {
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (float)((rng_state >> 40) & 0xFFFFFF) / (float)0x1000000 * 2.0f - 1.0f;
}

#endif
