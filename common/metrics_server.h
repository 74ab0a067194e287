#pragma once
// The Prometheus endpoint of a daemon's parent process: a tiny HTTP/1.x
// server on the metrics_listen address. GET /metrics (or GET /) is
// answered with the text the owner's function returns, anything else with
// 404; one request per connection, then it closes. At most kMaxConns
// connections at once, each given kTimeout seconds; the listening socket
// is watched through an Acceptor (common/acceptor.h), so neither a flood
// of scrapers nor running out of descriptors makes the parent spin.

#include <ev.h>

#include <functional>
#include <map>
#include <memory>
#include <string>

#include "common/acceptor.h"
#include "common/address.h"
#include "common/unique_fd.h"

namespace sj {

class MetricsServer {
public:
    using Body = std::function<std::string()>;

    MetricsServer(struct ev_loop* loop, Body body);
    ~MetricsServer();
    MetricsServer(const MetricsServer&) = delete;
    MetricsServer& operator=(const MetricsServer&) = delete;

    // Serves on `addr`, whose configuration text is `text` ("" = none).
    // Nothing changes when `text` is what it serves on already; a new
    // address replaces the old one. False, with *err, if it cannot listen
    // (the old address, if any, is closed then).
    bool listen(const Address& addr, const std::string& text, std::string* err);
    // Stops serving and closes every connection (also in a forked child,
    // which never runs the parent's loop).
    void close() noexcept;
    const std::string& address() const noexcept { return text_; }

    static constexpr size_t kMaxConns = 64;
    static constexpr double kTimeout = 5.0;

private:
    struct Conn;
    static size_t on_accept(void* owner, size_t index, UniqueFd fd,
                            const sockaddr_storage& ss, socklen_t len) noexcept;
    void done(Conn* c) noexcept;

    struct ev_loop* loop_;
    Body body_;
    UniqueFd fd_;
    std::string text_;
    std::unique_ptr<Acceptor> acceptor_;
    std::map<Conn*, std::unique_ptr<Conn>> conns_;
};

}  // namespace sj
