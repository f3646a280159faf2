// C++ test: the header compiles as C++ (in two translation units, see test_api_second.cpp) and
// works with RAII; checks cosine results on a tiny, hand-checkable set and a small-segment index.
#include <cmath>
#include <cstdio>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "omendb.h"
#include "omendb.h"  // include guard must make a second include harmless

size_t second_translation_unit_dim(const omen_index *index);

namespace {

struct IndexDeleter {
    void operator()(omen_index *index) const { omen_index_free(index); }
};
struct ErrorDeleter {
    void operator()(omen_error *error) const { omen_error_free(error); }
};
using IndexPtr = std::unique_ptr<omen_index, IndexDeleter>;

void check(omen_status status, omen_error *raw, const char *what) {
    std::unique_ptr<omen_error, ErrorDeleter> error(raw);
    if (status != OMEN_STATUS_OK)
        throw std::runtime_error(std::string(what) + ": " + omen_status_name(status) + ": " + omen_error_message(error.get()));
}

IndexPtr make_index(size_t dim, omen_metric metric, size_t segment_capacity) {
    omen_options options;
    omen_error *err = nullptr;
    check(omen_options_default(&options, sizeof options, &err), err, "options");
    options.dim = dim;
    options.metric = metric;
    options.segment_capacity = segment_capacity;
    omen_index *raw = nullptr;
    check(omen_index_create(&options, &raw, &err), err, "create");
    return IndexPtr(raw);
}

}  // namespace

int main() {
    try {
        IndexPtr index = make_index(2, OMEN_METRIC_COSINE, 4);
        // Directions at 0, 30, 60, ... 330 degrees, each scaled differently (cosine ignores length).
        std::vector<uint64_t> ids;
        std::vector<float> vectors;
        for (int i = 0; i < 12; i++) {
            double angle = i * M_PI / 6;
            ids.push_back(100 + i);
            vectors.push_back(float((i + 1) * std::cos(angle)));
            vectors.push_back(float((i + 1) * std::sin(angle)));
        }
        omen_error *err = nullptr;
        check(omen_index_insert_batch(index.get(), ids.data(), vectors.data(), ids.size(), 2, &err), err, "insert");
        if (omen_index_segment_count(index.get()) != 3) throw std::runtime_error("expected 3 segments of 4");
        if (second_translation_unit_dim(index.get()) != 2) throw std::runtime_error("second TU");

        const float query[2] = {1.0f, 0.1f};  // about 5.7 degrees: nearest 0, then 30, then 330
        uint64_t out_ids[3];
        float out_distances[3];
        size_t count = 0;
        check(omen_index_search(index.get(), query, 2, 3, 0, out_ids, out_distances, &count, &err), err, "search");
        const uint64_t expected[3] = {100, 101, 111};
        for (size_t i = 0; i < 3; i++) {
            if (count != 3 || out_ids[i] != expected[i])
                throw std::runtime_error("wrong neighbour " + std::to_string(i) + ": " + std::to_string(out_ids[i]));
        }
        double want = 1.0 - std::cos(std::atan2(0.1, 1.0));
        if (std::fabs(out_distances[0] - want) > 1e-5) throw std::runtime_error("distance " + std::to_string(out_distances[0]));

        const float zero[2] = {0.0f, 0.0f};
        uint64_t id = 7;
        omen_status status = omen_index_insert_batch(index.get(), &id, zero, 1, 2, &err);
        std::unique_ptr<omen_error, ErrorDeleter> guard(err);
        if (status != OMEN_STATUS_ZERO_VECTOR || omen_error_code(err) != OMEN_STATUS_ZERO_VECTOR)
            throw std::runtime_error("zero vector accepted under cosine");
        if (omen_index_len(index.get()) != 12) throw std::runtime_error("len changed");
    } catch (const std::exception &e) {
        std::fprintf(stderr, "test_api_cpp: %s\n", e.what());
        return 1;
    }
    std::printf("test_api_cpp: all checks passed\n");
    return 0;
}
