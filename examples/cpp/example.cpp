// A complete C++ program: create an index, insert a batch, search; the index frees itself.
//
//   c++ -std=c++17 example.cpp $(pkg-config --cflags --libs omendb)
#include <cstdio>
#include <vector>

#include "omendb.hpp"

int main() {
    try {
        omendb::Index index(omendb::Options(3, OMEN_METRIC_COSINE));
        std::vector<uint64_t> ids{7, 8, 9};
        std::vector<float> vectors{1, 0, 0, 0, 1, 0, 0, 0, 1};  // row-major: ids.size() x 3
        index.insert_batch(ids, vectors);
        std::vector<float> query{0.9f, 0.1f, 0};
        for (const omendb::Hit &hit : index.search(query, 2))
            std::printf("id %llu distance %.4f\n", (unsigned long long)hit.id, hit.distance);
        // Change the contents: replace 8's vector, delete 7, read a vector back.
        index.upsert(std::vector<uint64_t>{8}, query);
        size_t deleted = index.erase(std::vector<uint64_t>{7, 12345});
        auto [stored, found] = index.get(std::vector<uint64_t>{8, 7});
        std::printf("deleted %zu; 8 is now (%.3f, %.3f, %.3f); 7 found: %d\n", deleted, stored[0], stored[1], stored[2],
                    (int)found[1]);
        index.insert_batch(std::vector<uint64_t>{8}, query);  // a duplicate id: throws
    } catch (const omendb::Error &e) {
        std::printf("rejected: %s\n", e.what());
        return e.status() == OMEN_STATUS_DUPLICATE_ID ? 0 : 1;
    }
    return 1;
}
