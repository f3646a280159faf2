// The C++ wrapper (include/omendb.hpp): RAII and move semantics, real results, and every
// failure surfacing as omendb::Error with the library's status.
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <limits>
#include <string>
#include <utility>
#include <vector>

#include "omendb.hpp"

static int failures = 0;
#define CHECK(cond)                                                            \
    do {                                                                       \
        if (!(cond)) {                                                         \
            std::fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond); \
            failures++;                                                        \
        }                                                                      \
    } while (0)

template <class F>
static omen_status status_of(F call) {
    try {
        call();
    } catch (const omendb::Error &e) {
        return e.status();
    }
    return OMEN_STATUS_OK;
}

int main() {
    const size_t dim = 8;
    std::vector<uint64_t> ids;
    std::vector<float> vectors;
    for (uint64_t i = 0; i < 500; i++) {
        ids.push_back(1000 + i);
        for (size_t j = 0; j < dim; j++) vectors.push_back(std::sin(float(i * dim + j)));
    }

    omendb::Index index(omendb::Options(dim, OMEN_METRIC_L2).threads(2).segment_capacity(200));
    index.insert_batch(ids, vectors);
    CHECK(index.size() == 500);
    CHECK(index.segment_count() == 3);

    std::vector<float> query(vectors.begin() + 42 * dim, vectors.begin() + 43 * dim);
    std::vector<omendb::Hit> hits = index.search(query, 5);
    CHECK(hits.size() == 5 && hits[0].id == 1042 && hits[0].distance == 0.0f);
    for (size_t i = 1; i < hits.size(); i++) CHECK(hits[i - 1].distance <= hits[i].distance);

    auto batch = index.search_batch(vectors.data(), 3, dim, 5, 0, 1);
    CHECK(batch.size() == 3 && batch[2][0].id == 1002);

    // Filters: an allow-list and the equal predicate agree; a throwing predicate's exception
    // comes back out of the search; range search with the exact plan.
    {
        std::vector<uint64_t> even;
        for (uint64_t id : ids)
            if (id % 2 == 0) even.push_back(id);
        omendb::SearchParams by_list;
        by_list.allow = &even;
        by_list.plan = OMEN_SEARCH_PLAN_EXACT;
        omendb::SearchParams by_predicate;
        by_predicate.predicate = [](uint64_t id) { return id % 2 == 0; };
        by_predicate.plan = OMEN_SEARCH_PLAN_EXACT;
        auto a = index.search(query, 5, by_list);
        auto b = index.search(query, 5, by_predicate);
        CHECK(a.size() == 5 && b.size() == 5);
        for (size_t i = 0; i < a.size() && i < b.size(); i++) CHECK(a[i].id == b[i].id && a[i].id % 2 == 0);
        auto filtered_batch = index.search_batch(vectors.data(), 3, dim, 5, by_predicate);
        for (const auto &row : filtered_batch)
            for (const auto &hit : row) CHECK(hit.id % 2 == 0);
        std::vector<uint64_t> none;
        omendb::SearchParams nothing;
        nothing.allow = &none;
        CHECK(index.search(query, 5, nothing).empty());
        omendb::SearchParams throwing;
        throwing.predicate = [](uint64_t) -> bool { throw std::runtime_error("no answer"); };
        bool rethrown = false;
        try {
            index.search(query, 5, throwing);
        } catch (const std::runtime_error &e) {
            rethrown = std::string(e.what()) == "no answer";
        }
        CHECK(rethrown);
        omendb::SearchParams exact;
        exact.plan = OMEN_SEARCH_PLAN_EXACT;
        auto near = index.search_range(query.data(), dim, hits[3].distance, 100, exact);
        CHECK(near.size() >= 4 && near[0].id == 1042);
        for (const auto &hit : near) CHECK(hit.distance <= hits[3].distance);
        CHECK(status_of([&] { index.search_range(query.data(), dim, -1.0f, 10); }) == OMEN_STATUS_INVALID_ARGUMENT);
    }

    // Errors carry their status, and a failed call changes nothing.
    CHECK(status_of([&] { index.search(query.data(), dim - 1, 5); }) == OMEN_STATUS_DIMENSION_MISMATCH);
    CHECK(status_of([&] { index.search(query, 0); }) == OMEN_STATUS_INVALID_ARGUMENT);
    std::vector<float> nan_row(dim, std::numeric_limits<float>::quiet_NaN());
    CHECK(status_of([&] { index.insert_batch(std::vector<uint64_t>{7}, nan_row); }) == OMEN_STATUS_NON_FINITE);
    CHECK(status_of([&] { index.insert_batch(std::vector<uint64_t>{1000}, query); }) == OMEN_STATUS_DUPLICATE_ID);
    CHECK(status_of([&] { index.insert_batch(std::vector<uint64_t>{7, 8}, query); }) == OMEN_STATUS_DIMENSION_MISMATCH);
    CHECK(status_of([&] { omendb::Index bad{omendb::Options(0)}; }) == OMEN_STATUS_INVALID_ARGUMENT);
    CHECK(status_of([&] { index.insert_batch(nullptr, 1, nullptr, dim); }) == OMEN_STATUS_NULL_ARGUMENT);
    CHECK(status_of([&] { index.search(nullptr, dim, 5); }) == OMEN_STATUS_NULL_ARGUMENT);
    CHECK(index.size() == 500);
    try {
        index.search(query.data(), 3, 5);
    } catch (const omendb::Error &e) {
        CHECK(std::string(e.what()).find("OMEN_STATUS_DIMENSION_MISMATCH") == 0);
    }

    // Moves transfer ownership; a moved-from index throws instead of crashing.
    omendb::Index moved = std::move(index);
    CHECK(moved.size() == 500);
    CHECK(status_of([&] { (void)index.size(); }) == OMEN_STATUS_NULL_ARGUMENT);
    omendb::Index other{omendb::Options(dim)};
    other = std::move(moved);
    CHECK(other.search(query, 1)[0].id == 1042);

    // Deletes, upserts, get and compaction: the deleted id is never found, the replaced vector is.
    CHECK(other.erase(std::vector<uint64_t>{1042, 999999}) == 1 && other.size() == 499);
    CHECK(other.search(query, 1)[0].id != 1042);
    other.upsert(std::vector<uint64_t>{1043}, query);
    CHECK(other.search(query, 1)[0].id == 1043 && other.search(query, 1)[0].distance == 0.0f);
    auto got = other.get(std::vector<uint64_t>{1043, 1042});
    CHECK(got.second[0] && !got.second[1] && got.first[0] == query[0] && got.first[dim] == 0.0f);
    CHECK(other.stats().deleted == 2);
    other.compact();
    CHECK(other.stats().deleted == 0 && other.size() == 499 && other.search(query, 1)[0].id == 1043);
    CHECK(status_of([&] { other.erase(std::vector<uint64_t>{7, 7}); }) == OMEN_STATUS_DUPLICATE_ID);

    // Quantized codes: the nearest vector is still found exactly, binary codes under the inner product too.
    omendb::Index coded(omendb::Options(dim).quantization(OMEN_QUANTIZATION_BITS4).oversample(8));
    coded.insert_batch(ids, vectors);
    CHECK(coded.search(query, 1)[0].id == 1042 && coded.search(query, 1, 0, 30)[0].distance == 0.0f);
    CHECK(coded.search_batch(query.data(), 1, dim, 3, 0, 1, 30)[0][0].id == 1042);
    omendb::Index binary_ip(omendb::Options(dim, OMEN_METRIC_INNER_PRODUCT).quantization(OMEN_QUANTIZATION_BINARY));
    binary_ip.insert_batch(ids, vectors);
    size_t largest = 0;
    float best_dot = -1e30f;
    for (size_t i = 0; i < ids.size(); i++) {
        float dot = 0;
        for (size_t j = 0; j < dim; j++) dot += vectors[i * dim + j] * query[j];
        if (dot > best_dot) best_dot = dot, largest = i;
    }
    CHECK(binary_ip.search(query, 1, 0, 50)[0].id == ids[largest]);

    // A database: open, insert, close (reporting errors), reopen read-only with identical hits.
    char dir_template[] = "/tmp/omendb-wrapper-XXXXXX";
    const char *made = mkdtemp(dir_template);
    CHECK(made != nullptr);
    std::string dir = std::string(made ? made : "/tmp/omendb-wrapper") + "/db";
    auto opts = omendb::Options(dim).segment_capacity(200).durability(OMEN_DURABILITY_INTERVAL, 10);
    std::vector<omendb::Hit> before;
    {
        omendb::Index db = omendb::Index::open(dir, opts.log_recovery(OMEN_LOG_RECOVERY_STRICT));
        CHECK(db.recovery_notice().empty());
        db.insert_batch(ids, vectors);
        CHECK(status_of([&] { omendb::Index::open(dir, opts); }) == OMEN_STATUS_LOCKED);
        before = db.search(query, 5);
        db.flush();
        CHECK(db.stats().vectors == 500 && db.stats().segments == 3);
        db.close();
        CHECK(status_of([&] { db.flush(); }) == OMEN_STATUS_NULL_ARGUMENT);
    }
    omendb::Index reader = omendb::Index::open(dir, omendb::Options(0).read_only(true));
    // A backup of the read-only opening, and an incremental one that links every unchanged file.
    omen_backup_report full = reader.backup(dir + "-backup");
    omen_backup_report next = reader.backup(dir + "-backup-next", dir + "-backup");
    CHECK(full.bytes_copied > 0 && next.bytes_linked > 0 && next.bytes_copied < full.bytes_copied / 4);
    CHECK(status_of([&] { reader.backup(dir); }) == OMEN_STATUS_INVALID_ARGUMENT);
    CHECK(omendb::Index::open(dir + "-backup-next", omendb::Options(0).read_only(true)).search(query, 5).size() == 5);
    std::vector<omendb::Hit> after = reader.search(query, 5);
    CHECK(after.size() == before.size());
    for (size_t i = 0; i < after.size() && i < before.size(); i++)
        CHECK(after[i].id == before[i].id && after[i].distance == before[i].distance);
    CHECK(status_of([&] { reader.insert_batch(ids, vectors); }) == OMEN_STATUS_READ_ONLY);
    CHECK(status_of([&] { reader.erase(std::vector<uint64_t>{ids[0]}); }) == OMEN_STATUS_READ_ONLY);
    CHECK(status_of([&] { reader.compact(); }) == OMEN_STATUS_READ_ONLY);
    CHECK(status_of([&] { omendb::Index::open(dir + "-missing", omendb::Options(dim).create(false)); }) ==
          OMEN_STATUS_NOT_FOUND);
    reader.close();
    std::string cleanup = "rm -rf '" + std::string(made ? made : "/nonexistent") + "'";
    CHECK(std::system(cleanup.c_str()) == 0);

    if (failures) {
        std::fprintf(stderr, "test_wrapper: %d checks failed\n", failures);
        return 1;
    }
    std::printf("test_wrapper: all checks passed\n");
    return 0;
}
