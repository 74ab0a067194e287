#pragma once
// balancerd's node state: one table in shared memory that the parent maps
// before it forks any worker, so every worker of every generation and the
// parent's control commands see the same admin state, health, weights,
// in-flight counts and counters without messages between processes.
//
// Slots: the table has room for kMaxPools pools and kMaxNodes nodes. A node
// keeps its slot across reloads for as long as a configuration names it (a
// node is known by "pool/name"), so its state, counters and in-flight count
// carry over, and maxconn holds across generations: an old worker finishing
// its requests and a new one starting others count against the same slot.
// A node removed by a reload is retired (in_use = 0); its slot is reused
// only when no never-used slot is left and nothing is in flight on it. The
// region lives as long as the parent; nothing is ever unmapped.

#include <ev.h>

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "common/config.h"
#include "common/daemon_main.h"
#include "common/metrics_server.h"
#include "common/shm.h"
#include "common/unique_fd.h"

namespace sj {

inline constexpr int kMaxPools = 64;
inline constexpr int kMaxNodes = 512;
// Response-time histogram bucket upper bounds in milliseconds; the last
// bucket counts everything slower.
inline constexpr int kHistBuckets = 12;
inline constexpr double kHistBoundsMs[kHistBuckets - 1] = {
    1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 5000};

enum class AdminState : uint32_t { kEnabled = 0, kDrain = 1, kDisabled = 2 };
// Who set the health state last. heartbeatd's word wins over passive
// health: a node it reported down stays down whatever traffic says.
enum class HealthSource : uint32_t {
    kNone = 0,       // initial state: up until told otherwise
    kPassive = 1,    // connect failures / timeouts seen by a worker
    kHeartbeat = 2,  // `node health` on the control socket
};

// Status classes counted per node: 1xx..5xx and [0] for responses
// balancerd made itself.
inline constexpr int kStatusClasses = 6;

// One node. Atomics are updated lock-free by any process; `reason` (text)
// is written under ShmTable::mutex. Invariant: active <= maxconn when
// maxconn > 0 (acquire() is a bounded CAS).
struct ShmNode {
    std::atomic<uint32_t> in_use;
    std::atomic<uint32_t> ever_used;
    char pool[64];
    char name[64];
    char address[112];
    std::atomic<uint32_t> admin;         // AdminState
    std::atomic<uint32_t> up;            // 1 up, 0 down
    std::atomic<uint32_t> source;        // HealthSource
    std::atomic<uint32_t> writer;        // 1: the pool's writer (TCP route)
    std::atomic<int32_t> weight;         // runtime weight
    std::atomic<int32_t> config_weight;  // the weight the config gave
    std::atomic<int32_t> maxconn;        // 0 = unlimited
    std::atomic<uint32_t> active;        // requests (and TCP relays) now
    std::atomic<uint32_t> fails;         // consecutive failures
    std::atomic<int64_t> down_until;     // monotonic ms: passive hold end
    std::atomic<int64_t> up_since;       // monotonic ms: slow start origin
    std::atomic<int64_t> last_change;    // wall clock ms
    std::atomic<uint64_t> requests, errors, retries, bytes_in, bytes_out,
        connect_fails, timeouts, tcp_conns;
    std::atomic<uint64_t> status[kStatusClasses];
    std::atomic<uint64_t> hist[kHistBuckets];
    std::atomic<uint64_t> time_sum_us;
    char reason[128];
};

struct ShmPool {
    std::atomic<uint32_t> in_use;
    std::atomic<uint32_t> ever_used;
    char name[64];
    std::atomic<uint32_t> queued;       // requests waiting, all workers
    std::atomic<uint64_t> next_ticket;  // queue order across workers
    std::atomic<uint64_t> requests, queue_full, queue_timeouts, no_node,
        writer_epoch;
    std::atomic<uint64_t> queue_wait_us;
    std::atomic<uint64_t> send_timeouts;  // clients that stopped reading
};

// What one worker process holds in the table: its in-flight requests (and
// TCP relays) per node and its queued requests per pool. A worker that
// dies without giving them back (SIGKILL, a crash) would otherwise leave a
// node short of maxconn slots, or a pool's queue full, for good; the
// parent gives them back when it reaps the worker (release_worker).
inline constexpr int kMaxWorkerSlots = 128;
struct ShmWorker {
    std::atomic<int32_t> pid;  // 0: free
    std::atomic<uint32_t> active[kMaxNodes];
    std::atomic<uint32_t> queued[kMaxPools];
    // The ticket of this worker's oldest queued request that any node may
    // take (not one waiting for its sticky node), per pool; 0: none.
    std::atomic<uint64_t> oldest[kMaxPools];
};

struct ShmTable {
    uint64_t magic;
    ShmMutex mutex;  // slot allocation and reason text
    ShmPool pools[kMaxPools];
    ShmNode nodes[kMaxNodes];
    ShmWorker workers[kMaxWorkerSlots];
};

// Where a generation's pools and nodes live in the table. Heap memory of
// the parent, inherited by the workers of that generation at fork.
struct PoolLayout {
    std::string name;
    int slot = -1;
    const PoolConfig* config = nullptr;
    std::vector<int> nodes;  // node slots, in the pool's order
};
struct Layout {
    std::shared_ptr<const Config> config;
    std::map<std::string, PoolLayout> pools;
};

// Monotonic and wall-clock milliseconds.
int64_t mono_ms() noexcept;
int64_t wall_ms() noexcept;

// Access to the table for the parent and the workers.
class NodeTable {
public:
    explicit NodeTable(ShmTable* t) noexcept : t_(t) {}
    ShmTable* raw() const noexcept { return t_; }
    ShmNode& node(int slot) const noexcept { return t_->nodes[slot]; }
    ShmPool& pool(int slot) const noexcept { return t_->pools[slot]; }

    // Can take a new request now: enabled and up, or passively down with
    // its hold time over (one request then probes it).
    static bool usable(const ShmNode& n, int64_t now) noexcept;
    // In a worker: takes a worker slot, in which acquire(), hold(),
    // release() and queue_add() account for what this process holds.
    // False when every slot is taken (the worker then runs unaccounted).
    bool join(int32_t pid) noexcept;
    // Takes an in-flight slot on node `slot` unless it is at maxconn.
    bool acquire(int slot) noexcept;
    // Takes one whatever maxconn says (a TCP relay already connected).
    void hold(int slot) noexcept;
    void release(int slot) noexcept;
    // Requests this worker queues in pool `slot` (delta +1 or -1).
    void queue_add(int pool_slot, int delta) noexcept;
    // The queue's order across workers: a request that queues takes a
    // ticket; each worker publishes its oldest ticket that any node may
    // take (0: none), and serves that request only when no other worker
    // has an older one. oldest_elsewhere() returns the oldest ticket of
    // the other workers (0: none) and through *worker its slot index.
    uint64_t take_ticket(int pool_slot) noexcept;
    void publish_oldest(int pool_slot, uint64_t ticket) noexcept;
    uint64_t oldest_elsewhere(int pool_slot, int* worker) const noexcept;
    // This worker's slot index; -1 when it did not join.
    int worker_index() const noexcept;
    // In the parent, for a worker it reaped: gives back what the worker
    // still held and frees its slot. Returns the in-flight and queued
    // counts given back.
    std::pair<uint32_t, uint32_t> release_worker(int32_t pid) noexcept;

    // Passive health. A failure past `fall` consecutive ones marks the node
    // down for `hold` seconds; a success brings a passively downed node back.
    void passive_failure(int slot, int fall, double hold,
                         const char* why) noexcept;
    void passive_success(int slot) noexcept;

    // Sets health as heartbeatd (or an operator) reports it.
    void set_health(int slot, bool up, HealthSource src,
                    const std::string& reason) noexcept;
    std::string reason(int slot) const;
    // The pool's writer changed (or its usability): bump its epoch.
    void bump_epoch(int pool_slot) noexcept;

private:
    void set_reason(ShmNode& n, const std::string& r) noexcept;
    ShmTable* t_;
    ShmWorker* self_ = nullptr;  // this worker's slot, if it joined
};

// The parent's side (DaemonState): creates the table, lays out each
// generation, serves the control commands and the metrics listener.
class BalancerState : public DaemonState {
public:
    explicit BalancerState(struct ev_loop* loop);
    ~BalancerState() override;

    bool configure(std::shared_ptr<const Config> config, unsigned generation,
                   std::string* err) override;
    void add_commands(ControlServer& control) override;
    void after_fork() noexcept override;
    std::string status() const override;
    void child_exited(pid_t pid) noexcept override;

    NodeTable& table() noexcept { return table_; }
    // The layout of `generation`; nullptr if unknown.
    std::shared_ptr<const Layout> layout(unsigned generation) const;

    // Texts of the control commands (also used by tests through the
    // control socket) and the Prometheus exposition.
    std::string show_pools() const;
    std::string show_nodes() const;
    std::string show_stats() const;
    std::string metrics() const;

private:
    bool find_node(const std::string& spec, int* slot, std::string* err) const;
    bool open_metrics(const Config& config, std::string* err);
    void prepare_access_log(const Config& config) noexcept;

    struct ev_loop* loop_;
    ShmRegion region_;
    NodeTable table_{nullptr};
    std::map<unsigned, std::shared_ptr<const Layout>> layouts_;
    unsigned current_ = 0;
    MetricsServer metrics_server_;
};

// Formats rows as aligned columns, the first row being the header.
std::string format_columns(const std::vector<std::vector<std::string>>& rows);

const char* admin_name(uint32_t a) noexcept;

}  // namespace sj
