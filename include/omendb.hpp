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
#include <exception>
#include <functional>
#include <mutex>
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

/// Per-call search settings (omen_search_params): zero means the index default. A filter (an
/// allow-list, a predicate, or both: an id must pass both) makes a search return only the live
/// ids that pass, min(k, their number) of them.
struct SearchParams {
    size_t ef = 0;
    size_t oversample = 0;
    /// search_batch only: 1 = this thread, 0 = the index's threads.
    size_t threads = 0;
    /// Allowed ids (any order, repeats allowed), or nullptr for no allow-list; borrowed during
    /// the call. An empty vector allows nothing.
    const std::vector<uint64_t> *allow = nullptr;
    /// Called from the index's threads, possibly at once: it must be thread-safe and must not
    /// call back into the index. An exception it throws is rethrown by the search.
    std::function<bool(uint64_t)> predicate;
    omen_search_plan plan = OMEN_SEARCH_PLAN_AUTO;
};

namespace detail {
/// omen_search_params for one call, with the predicate behind a C trampoline that catches what
/// it throws (no exception may cross into the library) for `rethrow` after the call.
class CallParams {
public:
    explicit CallParams(const SearchParams &params) : predicate_(params.predicate) {
        raw_.size = sizeof raw_;
        raw_.ef = params.ef;
        raw_.oversample = params.oversample;
        raw_.threads = params.threads;
        if (params.allow) {
            // A non-null pointer with a zero count is an empty allow-list (nothing passes).
            static const uint64_t none = 0;
            raw_.allow_ids = params.allow->empty() ? &none : params.allow->data();
            raw_.allow_count = params.allow->size();
        }
        if (predicate_) {
            raw_.predicate = &CallParams::accepts;
            raw_.predicate_context = this;
        }
        raw_.plan = static_cast<uint32_t>(params.plan);
    }
    CallParams(const CallParams &) = delete;
    CallParams &operator=(const CallParams &) = delete;

    const omen_search_params *get() const noexcept { return &raw_; }

    void rethrow() const {
        if (error_) std::rethrow_exception(error_);
    }

private:
    static bool accepts(uint64_t id, void *context) noexcept {
        auto *self = static_cast<CallParams *>(context);
        try {
            return self->predicate_(id);
        } catch (...) {
            std::lock_guard<std::mutex> lock(self->mutex_);
            if (!self->error_) self->error_ = std::current_exception();
            return false;
        }
    }

    omen_search_params raw_{};
    std::function<bool(uint64_t)> predicate_;
    std::mutex mutex_;
    std::exception_ptr error_;
};
}  // namespace detail

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

    /// Rewrites segments holding deleted vectors without them, and rebuilds those filled in
    /// small batches (see `omen_index_compact`).
    void compact() {
        detail::check([&](omen_error **error) { return omen_index_compact(live(), error); });
    }

    /// Writes a consistent copy of the database into the new directory `dest` while inserts and
    /// searches go on; with `previous` (an earlier backup), files it holds unchanged are
    /// hard-linked instead of copied. See `omen_index_backup_incremental`.
    omen_backup_report backup(const std::string &dest, const std::string &previous = "") const {
        omen_backup_report report{};
        report.size = sizeof report;
        detail::check([&](omen_error **error) {
            return omen_index_backup_incremental(live(), dest.c_str(), previous.empty() ? nullptr : previous.c_str(),
                                                 &report, error);
        });
        return report;
    }

    /// The `k` nearest neighbours of `query` (`dim` floats), closest first; `ef` 0 = default;
    /// `oversample` (quantized indexes) 0 = the index's default.
    std::vector<Hit> search(const float *query, size_t dim, size_t k, size_t ef = 0, size_t oversample = 0) const {
        SearchParams params;
        params.ef = ef;
        params.oversample = oversample;
        return search(query, dim, k, params);
    }

    /// The `k` nearest neighbours of `query` with per-call settings and filter.
    std::vector<Hit> search(const float *query, size_t dim, size_t k, const SearchParams &params) const {
        std::vector<uint64_t> ids(k);
        std::vector<float> distances(k);
        size_t count = 0;
        detail::CallParams call(params);
        detail::check([&](omen_error **error) { return omen_index_search_with(live(), query, dim, k, call.get(), ids.data(), distances.data(), &count, error); });
        call.rethrow();
        return hits_of(ids, distances, count);
    }

    template <class Query, detail::if_container<Query> = 0>
    std::vector<Hit> search(const Query &query, size_t k, size_t ef = 0, size_t oversample = 0) const {
        return search(query.data(), query.size(), k, ef, oversample);
    }

    template <class Query, detail::if_container<Query> = 0>
    std::vector<Hit> search(const Query &query, size_t k, const SearchParams &params) const {
        return search(query.data(), query.size(), k, params);
    }

    /// Searches `n_queries` rows of `dim` floats; one hit list per query. `threads`: 1 = this
    /// thread, 0 = the index's threads.
    std::vector<std::vector<Hit>> search_batch(const float *queries, size_t n_queries, size_t dim, size_t k,
                                               size_t ef = 0, size_t threads = 0, size_t oversample = 0) const {
        SearchParams params;
        params.ef = ef;
        params.threads = threads;
        params.oversample = oversample;
        return search_batch(queries, n_queries, dim, k, params);
    }

    /// Searches `n_queries` rows with per-call settings; one filter for the whole batch.
    std::vector<std::vector<Hit>> search_batch(const float *queries, size_t n_queries, size_t dim, size_t k,
                                               const SearchParams &params) const {
        std::vector<uint64_t> ids(n_queries * k);
        std::vector<float> distances(n_queries * k);
        std::vector<size_t> counts(n_queries);
        detail::CallParams call(params);
        detail::check([&](omen_error **error) { return omen_index_search_batch_with(live(), queries, n_queries, dim, k, call.get(), ids.data(), distances.data(), counts.data(), error); });
        call.rethrow();
        std::vector<std::vector<Hit>> hits(n_queries);
        for (size_t q = 0; q < n_queries; q++) {
            hits[q].resize(counts[q]);
            for (size_t i = 0; i < counts[q]; i++) hits[q][i] = Hit{ids[q * k + i], distances[q * k + i]};
        }
        return hits;
    }

    /// Every vector within `radius` of `query` (a distance as searches report it), closest
    /// first, at most `max_results` (see omen_index_search_range); OMEN_SEARCH_PLAN_EXACT in
    /// `params` finds all of them.
    std::vector<Hit> search_range(const float *query, size_t dim, float radius, size_t max_results,
                                  const SearchParams &params = SearchParams()) const {
        size_t slots = max_results < size() ? max_results : (size() > 0 ? size() : 1);
        std::vector<uint64_t> ids(slots);
        std::vector<float> distances(slots);
        size_t count = 0;
        detail::CallParams call(params);
        detail::check([&](omen_error **error) { return omen_index_search_range_with(live(), query, dim, radius, max_results == 0 ? 0 : slots, call.get(), ids.data(), distances.data(), &count, error); });
        call.rethrow();
        return hits_of(ids, distances, count);
    }

    size_t size() const { return omen_index_len(live()); }
    size_t dim() const { return omen_index_dim(live()); }
    size_t segment_count() const { return omen_index_segment_count(live()); }

    /// The underlying handle, still owned by this object.
    omen_index *get() const noexcept { return index_; }

private:
    static std::vector<Hit> hits_of(const std::vector<uint64_t> &ids, const std::vector<float> &distances, size_t count) {
        std::vector<Hit> hits(count);
        for (size_t i = 0; i < count; i++) hits[i] = Hit{ids[i], distances[i]};
        return hits;
    }

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
