#pragma once
// balancerd's worker: accepts HTTP clients on the listeners the parent
// bound, picks a node of the pool for each request, and relays request and
// response between the client connection (client_conn.cc) and a node
// connection (ServerConn, kept alive in a per-node idle pool), with the
// per-node in-flight limit (maxconn, in shared memory) and a FIFO queue in
// front of it. Also implements TcpRouter for the TCP mode's relays.

#include <ev.h>
#include <sys/socket.h>
#include <sys/types.h>

#include <deque>
#include <list>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "balancerd/balance.h"
#include "balancerd/state.h"
#include "balancerd/tcp_proxy.h"
#include "balancerd/tcp_router.h"
#include "common/acceptor.h"
#include "common/access_log.h"
#include "common/buffer.h"
#include "common/daemon_main.h"
#include "common/http_parser.h"
#include "common/ip_acl.h"
#include "common/ready_queue.h"
#include "common/send_batch.h"
#include "common/unique_fd.h"
#include "common/worker_wake.h"

namespace sj {

class Proxy;
struct ClientConn;

// A connection to a node. States: connecting -> busy (attached to a
// client, carrying one request) -> idle (in the node's pool, watched for
// the node closing it) -> busy ... -> closed. Invariant: client != nullptr
// exactly when busy or connecting.
struct ServerConn {
    Proxy* proxy = nullptr;
    ClientConn* client = nullptr;
    UniqueFd fd;
    int node = -1;  // slot in the node table
    Buffer in{Buffer::kDefaultLimit};
    bool connecting = false;
    bool reused = false;  // carried an earlier request
    ev_io rio{}, wio{};
    ev_timer timer{};  // connect, response or idle timeout

    void stop_watchers(struct ev_loop* loop) noexcept;
};

// Per worker balancing state for one pool of the generation's layout.
struct PoolRuntime {
    const PoolLayout* layout = nullptr;
    const PoolConfig* config = nullptr;
    BalanceKind kind = BalanceKind::kRoundRobin;
    SmoothRoundRobin rr;
    uint32_t rotor = 0;
    HashRing ring;
    std::vector<std::string> names;
    std::vector<BalanceNode> scratch;
    std::list<ClientConn*> queue;  // waiting for a node, oldest first
};

class Proxy : public Worker, public TcpRouter {
public:
    // Starts accepting. Returns through *ok = false (after logging) when
    // the generation's layout is missing.
    Proxy(WorkerContext& ctx, BalancerState* state);
    ~Proxy() override;

    void shutdown(std::function<void()> idle) noexcept override;

    // TcpRouter.
    TcpRoute pick(const std::string& pool, const std::string& route,
                  const std::string& client, int exclude) override;
    void connect_result(int node, bool ok) override;
    void opened(int node) override;
    void closed(int node, uint64_t bytes_in, uint64_t bytes_out) override;
    uint64_t writer_epoch(const std::string& pool) override;

    // For ClientConn.
    struct ev_loop* loop() const noexcept { return loop_; }
    const BalancerdConfig& config() const noexcept { return *cfg_; }
    NodeTable& table() noexcept { return table_; }
    PoolRuntime& pool() noexcept { return *http_pool_; }
    AccessLog& access_log() noexcept { return alog_; }
    ReadyQueue& ready() noexcept { return ready_; }
    bool shutting_down() const noexcept { return shutting_down_; }
    bool trusted(const std::string& peer_ip, bool unix_peer) const noexcept;

    // Picks a node for `c` and takes an in-flight slot on it. Returns the
    // slot, or -1 with *saturated set when usable nodes are all at their
    // maxconn (the request should queue), clear when no node can take it;
    // c.sticky_wait says whether it waits for its sticky node only.
    int pick_http(ClientConn& c, bool* saturated) noexcept;
    // A connection to `node` for a request: an idle one from the pool
    // (reused = true) or a new one being connected. nullptr with *err set
    // when connect() failed at once.
    ServerConn* server_for(int node, int* err) noexcept;
    // The request on `s` finished cleanly: keep it for the next one.
    void park(ServerConn* s) noexcept;
    void close_server(ServerConn* s) noexcept;
    // A node slot was released: serve queued requests. With in_order
    // false, without waiting for older requests of other workers.
    void serve_queue(bool in_order = true) noexcept;
    void enqueue(ClientConn* c) noexcept;
    void dequeue(ClientConn* c) noexcept;
    void close_client(ClientConn* c) noexcept;
    // With send batching on, queues c's pending bytes for the client
    // (to_node false) or for its node (true) to go out with everything else
    // this loop iteration writes, in one submission before the loop polls
    // again (common/send_batch.h), and returns true; the result comes back
    // through ClientConn::batch_sent(). False when batching is off: the
    // caller sends now.
    bool defer_send(ClientConn* c, bool to_node) noexcept;

private:
    // Sends what defer_send() queued, and what the results queue in turn.
    void send_batch() noexcept;
    static size_t on_accept(void* owner, size_t index, UniqueFd fd,
                            const sockaddr_storage& ss, socklen_t len) noexcept;
    static void on_queue_tick(struct ev_loop*, ev_timer* w, int) noexcept;
    static void server_read(ServerConn* sc) noexcept;
    static void on_wake(void* arg, const char* msg, size_t len) noexcept;
    static void on_order_timer(struct ev_loop*, ev_timer* w, int) noexcept;
    // This worker's oldest queued ticket any node may take, published.
    void publish_oldest() noexcept;
    // Wakes worker `worker` (a slot index of the node table) to look at
    // its queue. A wake-up dropped because that worker's socket is full
    // loses nothing: the worker has wake-ups to read, and each one makes
    // it look at the whole queue.
    void wake(int worker) noexcept { (void)wake_.send(worker, "w", 1); }
    // How long a worker leaves a free slot to an older request of another
    // worker it woke, before serving its own.
    static constexpr double kOrderGrace = 0.05;
    static void on_usr1(struct ev_loop*, ev_signal* w, int) noexcept;
    void maybe_idle() noexcept;
    PoolRuntime* pool_named(const std::string& name) noexcept;
    // *sticky_wait is set when it failed because the sticky node (slot
    // index `sticky`) is at its maxconn: other nodes may take others.
    int pick_in(PoolRuntime& p, std::string_view key, const int* exclude,
                size_t nexclude, int sticky, bool* saturated, bool acquire,
                bool* sticky_wait) noexcept;

    struct ev_loop* loop_;
    std::shared_ptr<const Config> config_;
    const BalancerdConfig* cfg_;
    std::shared_ptr<const Layout> layout_;
    NodeTable table_;
    std::map<std::string, std::unique_ptr<PoolRuntime>> pools_;
    PoolRuntime* http_pool_ = nullptr;
    IpAcl trusted_;  // peers whose X-Forwarded-For counts
    AccessLog alog_;
    std::vector<bool> listener_unix_;  // by listener index
    std::map<ClientConn*, std::unique_ptr<ClientConn>> clients_;
    std::map<ServerConn*, std::unique_ptr<ServerConn>> servers_;
    std::vector<std::vector<ServerConn*>> idle_;  // by node slot
    std::vector<std::unique_ptr<TcpProxy>> tcp_;  // TCP mode relays
    size_t queued_ = 0;
    uint64_t rng_ = 0x9e3779b97f4a7c15ull;
    ev_timer queue_tick_{};
    ev_signal usr1_{};
    bool shutting_down_ = false;
    std::function<void()> on_idle_;
    size_t tcp_busy_ = 0;
    std::vector<const NodeConfig*> node_config_;  // by node slot
    std::vector<ClientConn*> dead_clients_;
    std::vector<ServerConn*> dead_servers_;
    bool queue_dirty_ = false;
    bool serving_queue_ = false;  // serve_queue() is on the stack
    uint64_t published_ = 0;      // the ticket publish_oldest() last set
    uint64_t deferred_to_ = 0;    // the older ticket order_timer_ waits on
    WorkerWake wake_;             // datagrams from workers that freed a slot
    Acceptor acceptor_;
    ev_timer order_timer_{};
    ReadyQueue ready_;  // read events of the last poll, run in order
    SendBatch batch_;   // open when balancerd.send_batching is on
    struct Deferred {
        ClientConn* c;
        bool to_node;
    };
    std::vector<Deferred> deferred_;  // for the next send_batch()
    struct Sent {
        ClientConn* c;
        bool to_node;
        ssize_t index;    // in the results; -1: nothing was there to send
        ServerConn* srv;  // the node connection it went to
    };
    std::vector<Deferred> batch_now_;  // send_batch()'s working lists
    std::vector<Sent> batch_sent_;
    std::vector<ssize_t> batch_results_;
    ev_prepare prepare_{};
    static void on_prepare(struct ev_loop*, ev_prepare* w, int) noexcept;
};

// Builds the worker; nullptr (logged) if the layout is missing.
std::unique_ptr<Worker> make_proxy(WorkerContext& ctx);

}  // namespace sj
