#pragma once
// balancerd's TCP (layer 4) mode: one listener whose clients are relayed,
// byte for byte, to a node of a pool chosen by a TcpRouter (tcp_router.h).
// Used to send PHP's MySQL connections to whichever master is the writer:
// a connect failure is retried on another node before the client notices,
// and when the writer changes, connections to the old one are closed so
// that clients reconnect and land on the new one.
//
// Each direction has one bounded buffer; a side whose peer's buffer is full
// is not read, so a slow reader slows its writer down instead of growing
// the process. End of file is passed on as a half-close (shutdown(SHUT_WR)
// once the bytes before it are delivered); a connection ends when both
// directions have, on an error or reset, on the idle timeout, or when its
// node stops being the writer. TcpRouter::closed() gets the bytes delivered
// to the node (bytes_in, from the client) and to the client (bytes_out).

#include <ev.h>

#include <cstddef>
#include <cstdint>
#include <functional>
#include <list>
#include <string>

#include "balancerd/tcp_router.h"
#include "common/acceptor.h"
#include "common/config.h"
#include "common/unique_fd.h"

namespace sj {

struct TcpProxyOptions {
    double connect_timeout = 3.0;  // per attempt
    double idle_timeout = 600.0;   // no byte either way
    int retries = 2;               // further attempts after a failed connect
    size_t buffer = 64 * 1024;     // per direction and connection
    // Relayed connections at once; at the limit accepting stops until one
    // ends. `limit_name` names the setting in the log line.
    size_t max_connections = static_cast<size_t>(-1);
    std::string limit_name = "max_connections";
};

class TcpProxy {
public:
    // Starts accepting on `listen_fd`, a listening, non-blocking socket
    // (the worker's copy). The proxy owns it from here: it closes it in
    // shutdown(), or in the destructor if shutdown() was never called.
    // `router` must outlive the proxy; `config` is copied.
    TcpProxy(struct ev_loop* loop, int listen_fd, const TcpListenConfig& config,
             TcpRouter& router, const TcpProxyOptions& opts);
    // Stops every watcher and closes every socket at once; a connection
    // still open is reported to the router with closed(), so the node's
    // counters stay balanced.
    ~TcpProxy();
    TcpProxy(const TcpProxy&) = delete;
    TcpProxy& operator=(const TcpProxy&) = delete;

    // Stops accepting (closes the listening socket, so the kernel stops
    // queueing connections for this process), lets the relayed connections
    // run until they end or idle out, then calls `idle` once, from the loop
    // (or before returning, if no connection is open). `idle` must not
    // destroy the proxy from inside the call (break the loop, or defer).
    // Called at most once.
    void shutdown(std::function<void()> idle) noexcept;

    // Client connections being set up or relayed.
    size_t connections() const noexcept { return conns_.size(); }

private:
    struct Conn;
    friend struct Conn;

    static size_t on_accept(void* owner, size_t index, UniqueFd fd,
                            const sockaddr_storage& ss, socklen_t len) noexcept;
    static void on_writer_check(struct ev_loop*, ev_timer* w, int) noexcept;
    void check_writer() noexcept;
    // Ends `c`: stops its watchers, closes both sockets, tells the router
    // if the node connection had been opened, and frees it.
    void finish(Conn* c) noexcept;
    void maybe_idle() noexcept;
    void update_writer_timer() noexcept;
    // "pool/node" without the "pool/", as operators name nodes in logs.
    std::string node_label(const std::string& name) const;

    struct ev_loop* loop_;
    UniqueFd listen_fd_;
    TcpListenConfig config_;
    std::string label_;  // "tcp 127.0.0.1:3306", the subject of log lines
    bool writer_route_;
    TcpRouter& router_;
    TcpProxyOptions opts_;
    Acceptor acceptor_;
    ev_timer writer_timer_{};  // runs while writer-routed connections exist
    uint64_t last_epoch_ = 0;
    // A list, so a Conn never moves (its watchers point at it) and ends in
    // O(1) through the iterator it keeps.
    std::list<Conn> conns_;
    bool shutting_down_ = false;
    std::function<void()> on_idle_;
};

}  // namespace sj
