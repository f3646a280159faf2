/* The smallest complete omendb program: create an index, insert a batch, search, free.
 *
 *   cc hello.c $(pkg-config --cflags --libs omendb) -o hello     # after `make install`
 */
#include <stdio.h>

#include "omendb.h"

int main(void) {
    omen_options options;
    omen_error *err = NULL;
    omen_index *index = NULL;
    if (omen_options_default(&options, sizeof options, &err) != OMEN_STATUS_OK) goto fail;
    options.dim = 3;
    options.metric = OMEN_METRIC_COSINE;
    if (omen_index_create(&options, &index, &err) != OMEN_STATUS_OK) goto fail;

    const uint64_t ids[] = {7, 8, 9};
    const float vectors[] = {1, 0, 0, /**/ 0, 1, 0, /**/ 0, 0, 1}; /* row-major: count x dim */
    if (omen_index_insert_batch(index, ids, vectors, 3, 3, &err) != OMEN_STATUS_OK) goto fail;

    const float query[] = {0.9f, 0.1f, 0};
    uint64_t found[2];
    float distances[2];
    size_t count = 0;
    if (omen_index_search(index, query, 3, 2, 0, found, distances, &count, &err) != OMEN_STATUS_OK) goto fail;
    for (size_t i = 0; i < count; i++) printf("id %llu distance %.4f\n", (unsigned long long)found[i], distances[i]);
    int ok = found[0] == 7;

    /* Change the contents: replace 8's vector, delete 7, read a vector back. */
    const uint64_t eight = 8, doomed[] = {7, 12345};
    if (omen_index_upsert(index, &eight, query, 1, 3, &err) != OMEN_STATUS_OK) goto fail;
    size_t deleted = 0;
    if (omen_index_delete(index, doomed, 2, &deleted, &err) != OMEN_STATUS_OK) goto fail;
    float stored[2 * 3];
    uint8_t present[2];
    const uint64_t wanted[] = {8, 7};
    if (omen_index_get(index, wanted, 2, stored, 3, present, &err) != OMEN_STATUS_OK) goto fail;
    printf("deleted %zu; 8 is now (%.3f, %.3f, %.3f); 7 found: %d\n", deleted, stored[0], stored[1], stored[2], present[1]);
    omen_index_free(index);
    return ok && deleted == 1 && present[0] && !present[1] ? 0 : 1;

fail:
    fprintf(stderr, "%s: %s\n", omen_status_name(omen_error_code(err)), omen_error_message(err));
    omen_error_free(err);
    omen_index_free(index);
    return 1;
}
