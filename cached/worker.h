#pragma once
// cached's worker: accepts HTTP and HTTPS clients on the listeners the
// parent bound, answers hits from the shared store (cached/store.h) and
// forwards misses to the origin (fetch.cc) over pooled connections
// (origin.cc), per the caching rules of cached/http_cache.h.
//
// Collapsed forwarding: one Fetch per key is "collapsible" at a time in a
// worker (fetches_); requests for that key in this worker wait on it and
// look the key up again when it ends. Across workers the shared pass table
// (state.h) says "a fetch is in flight in pid P": requests there wait for
// that worker's wake-up datagram and look again. An uncacheable answer marks
// the key "pass" in the same table so that nobody waits for it again for
// cached.pass_ttl.

#include <ev.h>

#include <map>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "cached/http_cache.h"
#include "cached/origin.h"
#include "cached/state.h"
#include "cached/store.h"
#include "common/acceptor.h"
#include "common/access_log.h"
#include "common/daemon_main.h"
#include "common/ip_acl.h"
#include "common/ready_queue.h"
#include "common/worker_wake.h"

namespace sj {

class ClientConn;
class Fetch;
class McTier;

// Our own bits of ObjectMeta::flags, beside http_cache's kStoredXxx.
inline constexpr uint32_t kStoredVaryIndex = 1u << 8;  // names the Vary
inline constexpr uint32_t kStoredAuthOk = 1u << 9;  // may answer Authorization

class CacheWorker : public Worker {
public:
    CacheWorker(WorkerContext& ctx, CachedState* state);
    ~CacheWorker() override;

    void shutdown(std::function<void()> idle) noexcept override;

    struct ev_loop* loop() const noexcept { return loop_; }
    const CachedConfig& config() const noexcept { return *cfg_; }
    Store& store() noexcept { return state_->store(); }
    CachedShared* shared() noexcept { return state_->shared(); }
    WorkerCounters& counters() noexcept { return *counters_; }
    OriginPool& origin() noexcept { return origin_; }
    AccessLog& access_log() noexcept { return alog_; }
    ReadyQueue& ready() noexcept { return ready_; }
    McTier* tier() noexcept { return tier_.get(); }
    const KeyPolicy& key_policy() const noexcept { return key_policy_; }
    const FreshnessPolicy& freshness() const noexcept { return freshness_; }
    bool shutting_down() const noexcept { return shutting_down_; }
    int32_t pid() const noexcept { return pid_; }
    // May responses with Set-Cookie under this target be stored?
    bool cookie_ok(std::string_view target) const noexcept;
    // Is the client address allowed to PURGE?
    bool purge_allowed(const std::string& ip) const noexcept;

    // The collapsible fetch for `key` in this worker, if any.
    Fetch* fetch_for(const std::string& key) noexcept;
    // Starts a fetch (owned by the worker until it ends).
    Fetch* start_fetch(std::unique_ptr<Fetch> f) noexcept;
    // Called by a Fetch as it ends: forget and free it (later, safely).
    void fetch_done(Fetch* f) noexcept;
    void uncollapse(Fetch* f) noexcept;

    // The hot-object table: fresh objects of this worker's recent hits,
    // pinned, served without the store's stripe lock (which two workers
    // hitting one key would otherwise take turns on). Entries are dropped
    // whenever the store's epoch moves, so a purge, ban or replacement in
    // any process is seen by the next request.
    std::shared_ptr<ObjectRef> hot_get(const std::string& key) noexcept;
    void hot_put(const std::string& key) noexcept;
    // Something changed in the store: other workers' hot objects go.
    void store_changed() noexcept;

    // Followers of a fill waiting for more of it, by store key: a fetch
    // of this worker that appends to the fill, or ends it, wakes them at
    // once (they also poll, for fills of other workers).
    void wait_fill(const std::string& key, ClientConn* c);
    void unwait_fill(const std::string& key, ClientConn* c) noexcept;
    void fill_progress(const std::string& key) noexcept;
    // A fetch of this worker starts or ends a fill of `key`; is one on?
    // (Its followers then need no frequent poll: they are woken.)
    void fill_begun(const std::string& key);
    void fill_ended(const std::string& key) noexcept;
    bool filling_here(const std::string& key) const noexcept;

    // Across workers: a client waiting on a fetch or fill of another
    // worker, recorded in the pass table (state.h) under the key's hash,
    // is woken by that worker's datagram when the fetch moves. This
    // worker's watch slot, -1 if it has none (then its clients poll).
    int watch_slot() const noexcept { return watch_slot_; }
    void wait_remote(uint64_t hash, ClientConn* c);
    void unwait_remote(uint64_t hash, ClientConn* c) noexcept;
    // A fetch of this worker moved (began storing, appended): wake the
    // workers watching it. wake_watchers() wakes those in `mask`.
    void notify_watchers(uint64_t hash) noexcept;
    void wake_watchers(uint64_t mask, uint64_t hash) noexcept;

    void close_client(ClientConn* c) noexcept;
    // Is `c` still a live connection with this id (for late callbacks)?
    bool client_alive(ClientConn* c, uint64_t id) const noexcept;
    // Removes every stored variant of a primary key.
    size_t purge_key(const std::string& primary) noexcept;

private:
    static size_t on_accept(void* owner, size_t index, UniqueFd fd,
                            const sockaddr_storage& ss, socklen_t len) noexcept;
    static void on_usr1(struct ev_loop*, ev_signal* w, int) noexcept;
    static void on_prepare(struct ev_loop*, ev_prepare* w, int) noexcept;
    static void on_tick(struct ev_loop*, ev_timer* w, int) noexcept;
    static void on_wake(void* arg, const char* msg, size_t len) noexcept;
    void maybe_idle() noexcept;

    struct ev_loop* loop_;
    std::shared_ptr<const Config> config_;
    const CachedConfig* cfg_;
    CachedState* state_;
    WorkerCounters* counters_;
    int32_t pid_;
    OriginPool origin_;
    AccessLog alog_;
    std::unique_ptr<McTier> tier_;
    uint64_t tier_epoch_ = 0;
    KeyPolicy key_policy_;
    FreshnessPolicy freshness_;
    IpAcl purge_acl_;  // who may send PURGE
    uint64_t next_id_ = 1;
    std::vector<SSL_CTX*> listener_tls_;  // by listener index
    std::map<ClientConn*, std::unique_ptr<ClientConn>> clients_;
    std::map<Fetch*, std::unique_ptr<Fetch>> fetches_all_;
    std::unordered_map<std::string, Fetch*> fetches_;
    std::unordered_multimap<std::string, ClientConn*> fill_waiters_;
    std::unordered_map<std::string, int> local_fills_;  // key -> fetches
    std::unordered_multimap<uint64_t, ClientConn*> remote_waiters_;
    int watch_slot_ = -1;
    WorkerWake wake_;
    std::unique_ptr<AcceptGate> gate_;  // outlives the acceptor that
    Acceptor acceptor_;                 // consults it
    struct Hot {
        std::shared_ptr<ObjectRef> ref;
        double touched = 0;  // when the store last saw a hit on it
    };
    std::unordered_map<std::string, Hot> hot_;
    uint64_t hot_epoch_ = 0;
    std::vector<ClientConn*> dead_clients_;
    std::vector<Fetch*> dead_fetches_;
    ev_signal usr1_{};
    ReadyQueue ready_;  // client reads of the last poll, run in order
    ev_prepare prepare_{};
    ev_timer tick_{};
    bool shutting_down_ = false;
    std::function<void()> on_idle_;
};

std::unique_ptr<Worker> make_cache_worker(WorkerContext& ctx);

}  // namespace sj
