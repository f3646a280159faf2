// omendb for C++17: a header-only wrapper over omendb.h.
//
// - omendb::Index owns an omen_index (RAII, move-only); its destructor frees it.
// - Every failure throws omendb::Error, which carries the omen_status and the library's message.
// - Inputs are pointer + size (or anything with data() and size(), such as std::vector);
//   lengths are always checked by the library, never assumed.
// - Thread safety is the C API's: one Index may be used from many threads at once (searches run
//   concurrently with each other and with inserts); destruction needs exclusive access.
//
//   omendb::Options options(128, OMEN_METRIC_COSINE);
//   omendb::Index index(options);
//   index.insert_batch(ids, vectors);                        // std::vector<uint64_t>, std::vector<float>
//   std::vector<omendb::Hit> hits = index.search(query, 10);  // closest first
#ifndef OMENDB_HPP
#define OMENDB_HPP

#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "omendb.h"

namespace omendb {

/// A failed call: `status()` is the omen_status, `what()` names it and gives the message.
class Error : public std::runtime_error {
public:
    Error(omen_status status, const std::string &message)
        : std::runtime_error(std::string(omen_status_name(status)) + ": " + message), status_(status) {}
    omen_status status() const noexcept { return status_; }

private:
    omen_status status_;
};

namespace detail {
/// Containers with data() and size() (std::vector, std::array, std::span, ...), not pointers.
template <class T, class = void>
struct is_container : std::false_type {};
template <class T>
struct is_container<T, std::void_t<decltype(std::declval<const T &>().data()), decltype(std::declval<const T &>().size())>>
    : std::true_type {};
template <class T>
using if_container = std::enable_if_t<is_container<T>::value, int>;

/// Runs `call(&error)` and throws for a failed status, freeing the error object. (The error is
/// read only after the call: as two arguments of one function, their order would be unspecified.)
template <class Call>
void check(Call call) {
    omen_error *error = nullptr;
    omen_status status = call(&error);
    if (status == OMEN_STATUS_OK) return;
    std::string message = omen_error_message(error);
    omen_error_free(error);
    throw Error(status, message);
}
}  // namespace detail

/// Index configuration with the library's defaults; set `dim` (and usually `metric`).
struct Options {
    omen_options raw;

    Options(size_t dim, omen_metric metric = OMEN_METRIC_L2) {
        detail::check([&](omen_error **error) { return omen_options_default(&raw, sizeof raw, error); });
        raw.dim = dim;
        raw.metric = metric;
    }
    Options &m(size_t value) { raw.m = value; return *this; }
    Options &ef_construction(size_t value) { raw.ef_construction = value; return *this; }
    Options &ef_search(size_t value) { raw.ef_search = value; return *this; }
    Options &segment_capacity(size_t value) { raw.segment_capacity = value; return *this; }
    Options &threads(size_t value) { raw.threads = value; return *this; }
    Options &seed(uint64_t value) { raw.seed = value; return *this; }
    /// For `Index::open`: create the database when the directory holds none (default true).
    Options &create(bool value) { raw.create = value; return *this; }
    /// For `Index::open`: open without the write lock; inserts then throw OMEN_STATUS_READ_ONLY.
    Options &read_only(bool value) { raw.read_only = value; return *this; }
    /// For `Index::open`: check every checksum while opening (default true).
    Options &verify(bool value) { raw.verify = value; return *this; }
    /// Codes the graph walk reads (the best candidates are re-scored exactly).
    Options &quantization(omen_quantization value) { raw.quantization = value; return *this; }
    /// Candidates re-scored per result with codes, for searches that pass 0 (0 = the code's).
    Options &oversample(size_t value) { raw.oversample = value; return *this; }
    /// For `Index::open`: what to do with a torn or damaged log tail (default: move it aside).
    Options &log_recovery(omen_log_recovery value) { raw.log_recovery = value; return *this; }
    /// For `Index::open`: when inserts reach the disk; `interval_ms` for OMEN_DURABILITY_INTERVAL.
    Options &durability(omen_durability value, uint32_t interval_ms = 1000) {
        raw.durability = value;
        raw.sync_interval_ms = interval_ms;
        return *this;
    }
};

/// One neighbour: the caller's id and its distance (smaller is closer).
struct Hit {
    uint64_t id;
    float distance;
};

/// A segmented HNSW index, in memory (the constructor) or in a database directory (`open`).
class Index {
public:
    /// An empty in-memory index.
    explicit Index(const Options &options) {
        detail::check([&](omen_error **error) { return omen_index_create(&options.raw, &index_, error); });
    }

    /// Opens the database in directory `path` (see `omen_index_open`); `options.dim` may be 0
    /// to accept the stored dimension.
    static Index open(const std::string &path, const Options &options) {
        Index index;
        detail::check([&](omen_error **error) { return omen_index_open(path.c_str(), &options.raw, &index.index_, error); });
        return index;
    }

    /// Closes the index now, checkpointing a database and throwing what failed (nothing
    /// acknowledged is lost). The destructor does the same silently. Leaves this object empty.
    void close() {
        omen_index *index = std::exchange(index_, nullptr);
        detail::check([&](omen_error **error) { return omen_index_close(index, error); });
    }

    /// Checkpoints a database so the next open replays nothing; a no-op in memory.
    void flush() {
        detail::check([&](omen_error **error) { return omen_index_flush(live(), error); });
    }

    /// Segments, vectors, and bytes on disk and in memory.
    omen_stats stats() const {
        omen_stats stats{};
        stats.size = sizeof stats;
        detail::check([&](omen_error **error) { return omen_index_stats(live(), &stats, error); });
        return stats;
    }

    /// What opening dropped from the end of the write-ahead log (bytes, records, why, and the
    /// `.damaged` file they were moved to); empty when nothing was dropped.
    std::string recovery_notice() const {
        const char *notice = omen_index_recovery_notice(live());
        return notice ? std::string(notice) : std::string();
    }
    ~Index() { omen_index_free(index_); }
    Index(Index &&other) noexcept : index_(std::exchange(other.index_, nullptr)) {}
    Index &operator=(Index &&other) noexcept {
        if (this != &other) {
            omen_index_free(index_);
            index_ = std::exchange(other.index_, nullptr);
        }
        return *this;
    }
    Index(const Index &) = delete;
    Index &operator=(const Index &) = delete;

    /// Inserts `count` rows of `dim` floats (row-major) under `ids`; all or nothing.
    void insert_batch(const uint64_t *ids, size_t count, const float *vectors, size_t dim) {
        detail::check([&](omen_error **error) { return omen_index_insert_batch(live(), ids, vectors, count, dim, error); });
    }

    /// Inserts `ids.size()` rows; `vectors.size()` must be a multiple of `ids.size()`.
    template <class Ids, class Vectors, detail::if_container<Ids> = 0>
    void insert_batch(const Ids &ids, const Vectors &vectors) {
        insert_batch(ids.data(), ids.size(), vectors.data(), row_dim(ids.size(), vectors.size()));
    }

    /// Inserts like `insert_batch`, replacing the vector of any id already present (see
    /// `omen_index_upsert`); one atomic change.
    void upsert(const uint64_t *ids, size_t count, const float *vectors, size_t dim) {
        detail::check([&](omen_error **error) { return omen_index_upsert(live(), ids, vectors, count, dim, error); });
    }

    template <class Ids, class Vectors, detail::if_container<Ids> = 0>
    void upsert(const Ids &ids, const Vectors &vectors) {
        upsert(ids.data(), ids.size(), vectors.data(), row_dim(ids.size(), vectors.size()));
    }

    /// Deletes every listed id that is present; returns how many were (see `omen_index_delete`).
    size_t erase(const uint64_t *ids, size_t count) {
        size_t removed = 0;
        detail::check([&](omen_error **error) { return omen_index_delete(live(), ids, count, &removed, error); });
        return removed;
    }

    template <class Ids, detail::if_container<Ids> = 0>
    size_t erase(const Ids &ids) { return erase(ids.data(), ids.size()); }

    /// The stored vectors of `ids` (row-major, `dim()` floats each; zero rows for absent ids) and
    /// whether each was found.
    template <class Ids, detail::if_container<Ids> = 0>
    std::pair<std::vector<float>, std::vector<bool>> get(const Ids &ids) const {
        size_t dim = this->dim();
        std::vector<float> vectors(ids.size() * dim);
        std::vector<uint8_t> found(ids.size());
        detail::check([&](omen_error **error) { return omen_index_get(live(), ids.data(), ids.size(), vectors.data(), dim, found.data(), error); });
        return {std::move(vectors), std::vector<bool>(found.begin(), found.end())};
    }

    /// Rewrites segments holding deleted vectors without them (see `omen_index_compact`).
    void compact() {
        detail::check([&](omen_error **error) { return omen_index_compact(live(), error); });
    }

    /// The `k` nearest neighbours of `query` (`dim` floats), closest first; `ef` 0 = default;
    /// `oversample` (quantized indexes) 0 = the index's default.
    std::vector<Hit> search(const float *query, size_t dim, size_t k, size_t ef = 0, size_t oversample = 0) const {
        std::vector<uint64_t> ids(k);
        std::vector<float> distances(k);
        size_t count = 0;
        omen_search_params params{sizeof(omen_search_params), ef, oversample, 0};
        detail::check([&](omen_error **error) { return omen_index_search_with(live(), query, dim, k, &params, ids.data(), distances.data(), &count, error); });
        std::vector<Hit> hits(count);
        for (size_t i = 0; i < count; i++) hits[i] = Hit{ids[i], distances[i]};
        return hits;
    }

    template <class Query, detail::if_container<Query> = 0>
    std::vector<Hit> search(const Query &query, size_t k, size_t ef = 0, size_t oversample = 0) const {
        return search(query.data(), query.size(), k, ef, oversample);
    }

    /// Searches `n_queries` rows of `dim` floats; one hit list per query. `threads`: 1 = this
    /// thread, 0 = the index's threads.
    std::vector<std::vector<Hit>> search_batch(const float *queries, size_t n_queries, size_t dim, size_t k,
                                               size_t ef = 0, size_t threads = 0, size_t oversample = 0) const {
        std::vector<uint64_t> ids(n_queries * k);
        std::vector<float> distances(n_queries * k);
        std::vector<size_t> counts(n_queries);
        omen_search_params params{sizeof(omen_search_params), ef, oversample, threads};
        detail::check([&](omen_error **error) { return omen_index_search_batch_with(live(), queries, n_queries, dim, k, &params, ids.data(), distances.data(), counts.data(), error); });
        std::vector<std::vector<Hit>> hits(n_queries);
        for (size_t q = 0; q < n_queries; q++) {
            hits[q].resize(counts[q]);
            for (size_t i = 0; i < counts[q]; i++) hits[q][i] = Hit{ids[q * k + i], distances[q * k + i]};
        }
        return hits;
    }

    size_t size() const { return omen_index_len(live()); }
    size_t dim() const { return omen_index_dim(live()); }
    size_t segment_count() const { return omen_index_segment_count(live()); }

    /// The underlying handle, still owned by this object.
    omen_index *get() const noexcept { return index_; }

private:
    /// The dimension of `floats` floats split into `rows` rows; throws unless they divide evenly.
    size_t row_dim(size_t rows, size_t floats) const {
        size_t dim = rows == 0 ? this->dim() : floats / rows;
        if (rows * dim != floats)
            throw Error(OMEN_STATUS_DIMENSION_MISMATCH, std::to_string(floats) + " floats for " + std::to_string(rows) + " ids");
        return dim;
    }

    Index() = default;
    omen_index *live() const {
        if (!index_) throw Error(OMEN_STATUS_NULL_ARGUMENT, "the index was moved from");
        return index_;
    }
    omen_index *index_ = nullptr;
};

}  // namespace omendb

#endif  // OMENDB_HPP
