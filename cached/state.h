#pragma once
// cached's parent-side state: the object store (cached/store.h) and a small
// shared region of counters and flags, both mapped before the first worker
// is forked so every worker of every generation shares them; the TLS
// contexts of each generation (built here so session tickets work across
// workers); the control commands and the Prometheus listener.
//
// The shared region holds no pointers. Its fields are atomics written
// without a lock by any process: counters only grow, flags are single
// words, and the pass table is a hint (a lost update costs one collapsed or
// one uncollapsed request, never a wrong response).

#include <ev.h>

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "cached/store.h"
#include "common/accept_gate.h"
#include "common/config.h"
#include "common/daemon_main.h"
#include "common/metrics_server.h"
#include "common/shm.h"
#include "common/tls.h"
#include "common/unique_fd.h"
#include "common/worker_wake.h"

namespace sj {

inline constexpr int kMaxWorkerSlots = 256;
inline constexpr int kPassSlots = 8192;
inline constexpr int kMaxTierNodes = 64;
inline constexpr int kWatchSlots = 64;  // bits of PassSlot::watchers

// One worker's counters, by worker index; they survive a respawn. A cache
// line each, so that two workers counting never share one.
struct alignas(64) WorkerCounters {
    std::atomic<int32_t> pid;
    std::atomic<uint64_t> requests, hits, misses, stale, revalidated, passes,
        collapsed, not_modified, bytes_out, origin_requests, origin_errors,
        purges, client_errors, tier_hits, woken;
};

// The collapsed-forwarding table: per key hash, until until_ms, "a fetch
// is in flight in process pid", "pass" (the response was not storable), or
// "the fetch failed at since_ms with status": requests that were already
// waiting for it then answer that status instead of fetching one by one.
enum class PassKind : int32_t {
    kNone = 0,
    kFetching = 1,
    kPass = 2,
    kFailed = 3
};
struct PassSlot {
    std::atomic<uint64_t> hash;
    // kFetching: workers to wake when the fetch moves (bit index % 64),
    // and those to wake only when it ends.
    std::atomic<uint64_t> watchers;
    std::atomic<uint64_t> end_watchers;
    std::atomic<int64_t> until_ms;
    std::atomic<int64_t> since_ms;
    std::atomic<int32_t> kind;
    std::atomic<int32_t> pid;
    std::atomic<int32_t> status;
};

struct CachedShared {
    uint64_t magic;
    std::atomic<uint32_t> origin_down;  // `origin down` from heartbeatd
    std::atomic<uint64_t> bans;
    // Bumped after every change to what a key maps to (commit, removal,
    // revalidation): workers drop their pinned hot objects when it moves.
    std::atomic<uint64_t> store_epoch;
    // shared_tier node health, by node index in the pool; the epoch
    // changes on every report so workers notice.
    std::atomic<uint64_t> tier_epoch;
    std::atomic<uint32_t> tier_up[kMaxTierNodes];
    WorkerCounters workers[kMaxWorkerSlots];
    // Each worker's accepting state, load and accepted connections
    // (common/accept_gate.h): cached.accept_policy, show stats, metrics.
    AcceptSlot accept[kMaxWorkerSlots];
    // Serialises changes to the pass table, so that of two workers missing
    // the same key at once exactly one claims the fetch. Reads take no lock.
    ShmMutex pass_lock;
    PassSlot pass[kPassSlots];
    // The workers that can be woken by another (the pid holding each bit
    // of PassSlot::watchers, 0 if free; common/worker_wake.h).
    std::atomic<int32_t> watch_pid[kWatchSlots];
    // Set by a worker whose wake-up to that slot was dropped (its socket
    // was full): on its next wake-up it wakes every waiting request.
    std::atomic<uint32_t> watch_overflow[kWatchSlots];
};

// A 64-bit FNV-1a hash of a cache key, for the pass table.
uint64_t key_hash(std::string_view key) noexcept;

// Monotonic milliseconds.
int64_t now_ms() noexcept;

// Reads and writes of the pass table (any process).
PassKind pass_lookup(CachedShared* s, uint64_t hash, int32_t* pid) noexcept;
// Records `kind` for `hash`; returns the watchers of the fetch it replaced
// (to be woken).
uint64_t pass_set(CachedShared* s, uint64_t hash, PassKind kind, double secs,
                  int32_t pid) noexcept;
// What pass_claim() found instead of making the claim.
struct PassHeld {
    PassKind kind = PassKind::kNone;
    int32_t pid = 0;     // kFetching: the process fetching
    int32_t status = 0;  // kFailed: the status the fetch failed with
};
// Claims the fetch of `hash` for `pid` for `secs`, atomically across
// workers, unless the table says pass, or that a fetch is in flight, or
// (for a request waiting since `waiting_since` ms, 0 if not waiting) that
// the fetch it waited for failed. Returns kind kNone when the claim is made
// (or the table is full). When it finds another process's fetch in flight,
// worker `watcher` (>= 0) is added to those woken when that fetch moves.
PassHeld pass_claim(CachedShared* s, uint64_t hash, double secs, int32_t pid,
                    int64_t waiting_since, int watcher = -1) noexcept;
// Clears a kFetching entry that `pid` owns (its fetch ended). Returns its
// watchers, to be woken.
uint64_t pass_clear_fetch(CachedShared* s, uint64_t hash, int32_t pid) noexcept;
// Turns a kFetching entry that `pid` owns into kFailed with `status`, for
// `secs` (its fetch failed and nothing was stored). Returns its watchers.
uint64_t pass_fail_fetch(CachedShared* s, uint64_t hash, int32_t pid,
                         int status, double secs) noexcept;
// Without the lock, for the fill of a fetch in flight: adds worker
// `watcher` to those woken when the fetch of `hash` moves, or with
// `end_only` when it ends (false: no fetch is recorded), and takes the
// watchers to wake (the fetch moved). Taking them after publishing the
// move, and checking for it after watching, no wake-up is lost: the two
// atomic operations on `watchers` are ordered. The functions above that
// end a fetch return both kinds of watchers.
bool pass_watch(CachedShared* s, uint64_t hash, int watcher,
                bool end_only = false) noexcept;
uint64_t pass_take_watchers(CachedShared* s, uint64_t hash) noexcept;
// The bit of watch slot `index` in PassSlot::watchers.
inline uint64_t
watcher_bit(int index) noexcept
{
    return uint64_t{1} << (static_cast<unsigned>(index) % kWatchSlots);
}
// The fetches `pid` had in flight (it died): cleared, so that requests
// waiting for them fetch for themselves; calls wake(hash, watchers) for
// each that had watchers. Takes the lock.
void pass_release_process(CachedShared* s, int32_t pid,
                          void (*wake)(void* arg, uint64_t hash,
                                       uint64_t watchers) noexcept,
                          void* arg) noexcept;
// Sends `hash` to the workers of watch slots `mask` (a full socket sets
// the slot's watch_overflow).
void wake_watchers(CachedShared* s, WorkerWake& wake, uint64_t mask,
                   uint64_t hash) noexcept;
// Takes a free watch slot for `pid` (-1: all taken); gives it back.
int watch_slot_claim(CachedShared* s, int32_t pid) noexcept;
void watch_slot_release(CachedShared* s, int32_t pid) noexcept;

// The TLS contexts of one listener: the default certificate and those
// chosen by SNI.
struct ListenerTls {
    std::unique_ptr<SniSelector> sni;
};

class CachedState : public DaemonState {
public:
    explicit CachedState(struct ev_loop* loop);
    ~CachedState() override;

    bool configure(std::shared_ptr<const Config> config, unsigned generation,
                   std::string* err) override;
    void add_commands(ControlServer& control) override;
    void after_fork() noexcept override;
    std::string status() const override;
    void child_exited(pid_t pid) noexcept override;

    Store& store() noexcept { return store_; }
    CachedShared* shared() const noexcept { return shared_; }
    // The SSL_CTX for listener `i` of `generation` (null for plain HTTP).
    SSL_CTX* tls_ctx(unsigned generation, size_t i) const noexcept;

    // Control and metrics texts.
    std::string show_stats() const;
    std::string show_object(const std::string& url) const;
    std::string metrics() const;
    // Removes every stored variant of `url` ("http://host/path" or
    // "host/path"); returns how many objects went.
    size_t purge_url(const std::string& url);

private:
    bool open_metrics(const Config& config, std::string* err);
    static void on_usr1(struct ev_loop*, ev_signal* w, int) noexcept;
    void prepare_access_log() noexcept;

    struct ev_loop* loop_;
    std::shared_ptr<const Config> config_;
    Store store_;
    ShmRegion region_;
    CachedShared* shared_ = nullptr;
    size_t memory_ = 0;
    std::map<unsigned, std::vector<ListenerTls>> tls_;
    ev_signal usr1_{};
    MetricsServer metrics_server_;
    WorkerWake wake_;     // to wake the workers watching a dead one's fetch
    pid_t wake_pid_ = 0;  // the process wake_ was opened for
};

// Turns "http://Host:80/p?q", "https://host/p" or "host/p" into the
// primary cache key (cached/http_cache.h cache_key) under `config`'s key
// policy. False if the text is not such a URL.
bool url_to_key(const CachedConfig& config, const std::string& url,
                std::string* key);

}  // namespace sj
