#include "balancerd/tcp_proxy.h"

#include <sys/socket.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <iterator>
#include <map>
#include <utility>
#include <vector>

#include "common/address.h"
#include "common/buffer.h"
#include "common/check.h"
#include "common/log.h"
#include "common/net.h"

namespace sj {

namespace {

// How often the writer epoch is looked at: a client of the old writer is
// cut off at most this long after the change (plus one loop iteration).
constexpr double kWriterCheckInterval = 0.1;
// Read/write rounds per event and direction, so that one fast pair of
// peers cannot keep the loop from the other connections.
constexpr int kMaxRounds = 4;

void
set_io(struct ev_loop* loop, ev_io* w, bool on) noexcept
{
    if (on)
        ev_io_start(loop, w);
    else
        ev_io_stop(loop, w);
}

}  // namespace

// One client and, once connected, its node.
// States:
//   kConnecting: a connect to route.node is in progress (server.wio waits
//     for it, the timer is the connect timeout); the client is not read
//     yet, its bytes wait in the kernel.
//   kRelaying: bytes move both ways; the timer is the idle timeout.
// Invariants while relaying: a side's read watcher runs exactly when it has
// not sent end of file and the buffer toward its peer has room; a side's
// write watcher runs exactly when the buffer toward it is not empty (the
// last write did not take everything). `opened` is true exactly when the
// router was told opened(route.node) and not yet closed().
struct TcpProxy::Conn {
    enum class State : uint8_t { kConnecting, kRelaying };

    struct Side {
        UniqueFd fd;
        ev_io rio{};
        ev_io wio{};
        bool eof = false;   // it sent end of file
        bool shut = false;  // we shut down writing toward it
    };

    TcpProxy* proxy;
    std::list<Conn>::iterator self;
    State state = State::kConnecting;
    std::string peer;
    TcpRoute route;
    int attempts = 0;    // connects started
    uint64_t epoch = 0;  // writer epoch read before route was picked
    bool opened = false;
    Side client;
    Side server;
    Buffer up;               // client -> node
    Buffer down;             // node -> client
    uint64_t bytes_in = 0;   // delivered to the node
    uint64_t bytes_out = 0;  // delivered to the client
    ev_timer timer{};
    ev_tstamp last_active = 0;

    Conn(TcpProxy* p, UniqueFd fd, std::string from)
        : proxy(p), peer(std::move(from)), up(p->opts_.buffer),
          down(p->opts_.buffer)
    {
        client.fd = std::move(fd);
        ev_io_init(&client.rio, client_read_cb, client.fd.get(), EV_READ);
        ev_io_init(&client.wio, client_write_cb, client.fd.get(), EV_WRITE);
        ev_init(&server.rio, server_read_cb);
        ev_init(&server.wio, server_write_cb);
        ev_init(&timer, timer_cb);
        client.rio.data = client.wio.data = this;
        server.rio.data = server.wio.data = timer.data = this;
    }

    struct ev_loop* loop() const noexcept { return proxy->loop_; }
    const char* label() const noexcept { return proxy->label_.c_str(); }

    void stop_watchers() noexcept;
    void connect_next(int exclude) noexcept;
    void connect_failed(const char* why) noexcept;
    void abandon_attempt() noexcept;
    void connected() noexcept;
    void relay(Side& from, Side& to, Buffer& buf, uint64_t* count) noexcept;
    int pump(Side& from, Side& to, Buffer& buf, uint64_t* count) noexcept;
    void on_timer() noexcept;

    static void client_read_cb(struct ev_loop*, ev_io* w, int) noexcept
    {
        auto* c = static_cast<Conn*>(w->data);
        c->relay(c->client, c->server, c->up, &c->bytes_in);
    }
    static void client_write_cb(struct ev_loop*, ev_io* w, int) noexcept
    {
        auto* c = static_cast<Conn*>(w->data);
        c->relay(c->server, c->client, c->down, &c->bytes_out);
    }
    static void server_read_cb(struct ev_loop*, ev_io* w, int) noexcept
    {
        auto* c = static_cast<Conn*>(w->data);
        c->relay(c->server, c->client, c->down, &c->bytes_out);
    }
    static void server_write_cb(struct ev_loop*, ev_io* w, int) noexcept
    {
        auto* c = static_cast<Conn*>(w->data);
        if (c->state == State::kRelaying) {
            c->relay(c->client, c->server, c->up, &c->bytes_in);
            return;
        }
        int err = finish_connect(c->server.fd.get());
        if (err != 0) {
            c->connect_failed(std::strerror(err));
            return;
        }
        c->connected();
    }
    static void timer_cb(struct ev_loop*, ev_timer* w, int) noexcept
    {
        static_cast<Conn*>(w->data)->on_timer();
    }
};

void
TcpProxy::Conn::stop_watchers() noexcept
{
    ev_io_stop(loop(), &client.rio);
    ev_io_stop(loop(), &client.wio);
    ev_io_stop(loop(), &server.rio);
    ev_io_stop(loop(), &server.wio);
    ev_timer_stop(loop(), &timer);
}

void
TcpProxy::Conn::connect_next(int exclude) noexcept
{
    TcpRouter& router = proxy->router_;
    const TcpListenConfig& config = proxy->config_;
    for (;;) {
        if (attempts > proxy->opts_.retries) {
            log_warn(
                "%s: client %s: no node of pool %s reachable after %d "
                "attempts; closing",
                label(), peer.c_str(), config.pool.c_str(), attempts);
            proxy->finish(this);
            return;
        }
        // The epoch is read before the pick: should the writer change in
        // between, this connection carries the older epoch and the next
        // writer check looks at it again.
        if (proxy->writer_route_)
            epoch = router.writer_epoch(config.pool);
        route = router.pick(config.pool, config.route, peer, exclude);
        if (route.node < 0) {
            if (attempts == 0)
                log_warn("%s: no node for pool %s", label(),
                         config.pool.c_str());
            else
                log_warn(
                    "%s: client %s: no other node for pool %s after "
                    "a failed connect; closing",
                    label(), peer.c_str(), config.pool.c_str());
            proxy->finish(this);
            return;
        }
        ++attempts;
        int err = 0;
        PendingConnect pc = connect_nonblocking(route.address, &err);
        if (!pc.fd) {
            router.connect_result(route.node, false);
            log_warn("%s: %s: connect failed: %s", label(), route.name.c_str(),
                     std::strerror(err));
            exclude = route.node;
            continue;
        }
        server.fd = std::move(pc.fd);
        if (!pc.in_progress) {
            connected();
            return;
        }
        ev_io_set(&server.wio, server.fd.get(), EV_WRITE);
        ev_io_start(loop(), &server.wio);
        ev_timer_set(&timer, proxy->opts_.connect_timeout, 0.0);
        ev_timer_start(loop(), &timer);
        return;
    }
}

void
TcpProxy::Conn::connect_failed(const char* why) noexcept
{
    proxy->router_.connect_result(route.node, false);
    log_warn("%s: %s: connect failed: %s", label(), route.name.c_str(), why);
    abandon_attempt();
    connect_next(route.node);
}

void
TcpProxy::Conn::abandon_attempt() noexcept
{
    ev_io_stop(loop(), &server.wio);
    ev_timer_stop(loop(), &timer);
    server.fd.reset();
}

void
TcpProxy::Conn::connected() noexcept
{
    TcpRouter& router = proxy->router_;
    router.connect_result(route.node, true);
    router.opened(route.node);
    opened = true;
    state = State::kRelaying;
    log_debug("%s: client %s: relaying to %s", label(), peer.c_str(),
              route.name.c_str());
    ev_timer_stop(loop(), &timer);
    ev_io_stop(loop(), &server.wio);
    ev_io_set(&server.rio, server.fd.get(), EV_READ);
    ev_io_set(&server.wio, server.fd.get(), EV_WRITE);
    ev_io_start(loop(), &client.rio);
    ev_io_start(loop(), &server.rio);
    last_active = ev_now(loop());
    ev_timer_set(&timer, proxy->opts_.idle_timeout, 0.0);
    ev_timer_start(loop(), &timer);
}

// Moves what it can from `from` to `to` through `buf`. Returns 0, or the
// negative errno that ends the connection.
int
TcpProxy::Conn::pump(Side& from, Side& to, Buffer& buf,
                     uint64_t* count) noexcept
{
    bool active = false;
    for (int round = 0; round < kMaxRounds; ++round) {
        bool moved = false;
        if (!buf.empty()) {
            ssize_t n = buf.write_to(to.fd.get());
            if (n > 0) {
                *count += static_cast<uint64_t>(n);
                moved = true;
            } else if (n != -EAGAIN) {
                return static_cast<int>(n);
            }
        }
        if (!from.eof && buf.room() > 0) {
            ssize_t n = buf.read_from(from.fd.get(), proxy->opts_.buffer);
            if (n > 0)
                moved = true;
            else if (n == 0)
                from.eof = true;
            else if (n != -EAGAIN)
                return static_cast<int>(n);
        }
        if (!moved)
            break;
        active = true;
    }
    if (active)
        last_active = ev_now(loop());
    if (from.eof && buf.empty() && !to.shut) {
        // Pass the end of file on only after every byte before it: a
        // client that half-closes still gets the rest of the answer.
        // ENOTCONN (the peer is gone) shows up at the next read or write.
        (void)::shutdown(to.fd.get(), SHUT_WR);
        to.shut = true;
    }
    set_io(loop(), &from.rio, !from.eof && buf.room() > 0);
    set_io(loop(), &to.wio, !buf.empty());
    return 0;
}

void
TcpProxy::Conn::relay(Side& from, Side& to, Buffer& buf,
                      uint64_t* count) noexcept
{
    int err = pump(from, to, buf, count);
    if (err != 0) {
        log_debug("%s: client %s: %s: %s; closing", label(), peer.c_str(),
                  route.name.c_str(), std::strerror(-err));
        proxy->finish(this);
        return;
    }
    if (client.shut && server.shut) {
        log_debug("%s: client %s: %s: done, %llu bytes in, %llu out", label(),
                  peer.c_str(), route.name.c_str(),
                  static_cast<unsigned long long>(bytes_in),
                  static_cast<unsigned long long>(bytes_out));
        proxy->finish(this);
    }
}

void
TcpProxy::Conn::on_timer() noexcept
{
    if (state == State::kConnecting) {
        char why[64];
        std::snprintf(why, sizeof why, "timed out after %g s",
                      proxy->opts_.connect_timeout);
        connect_failed(why);
        return;
    }
    // Traffic only records its time; the timer is moved here, lazily, so
    // that a busy connection costs no timer update per read.
    ev_tstamp now = ev_now(loop());
    ev_tstamp deadline = last_active + proxy->opts_.idle_timeout;
    if (deadline > now) {
        ev_timer_set(&timer, deadline - now, 0.0);
        ev_timer_start(loop(), &timer);
        return;
    }
    log_info("%s: client %s: %s: idle for %g s; closing", label(), peer.c_str(),
             route.name.c_str(), proxy->opts_.idle_timeout);
    proxy->finish(this);
}

// ---------------------------------------------------------------- proxy

TcpProxy::TcpProxy(struct ev_loop* loop, int listen_fd,
                   const TcpListenConfig& config, TcpRouter& router,
                   const TcpProxyOptions& opts)
    : loop_(loop), listen_fd_(listen_fd), config_(config),
      label_("tcp " + (config.listen_text.empty() ? config.listen.to_string()
                                                  : config.listen_text)),
      writer_route_(config.route == "writer"), router_(router), opts_(opts),
      acceptor_(loop, on_accept, this)
{
    CHECK(opts_.buffer > 0);
    ev_init(&writer_timer_, on_writer_check);
    writer_timer_.data = this;
    writer_timer_.repeat = kWriterCheckInterval;
    if (writer_route_)
        last_epoch_ = router_.writer_epoch(config_.pool);
    acceptor_.set_limit(opts_.max_connections,
                        opts_.limit_name + ", " + label_);
    acceptor_.add(listen_fd_.get());
}

TcpProxy::~TcpProxy()
{
    acceptor_.stop();
    ev_timer_stop(loop_, &writer_timer_);
    for (Conn& c : conns_) {
        c.stop_watchers();
        if (c.opened)
            router_.closed(c.route.node, c.bytes_in, c.bytes_out);
    }
}

void
TcpProxy::on_writer_check(struct ev_loop*, ev_timer* w, int) noexcept
{
    static_cast<TcpProxy*>(w->data)->check_writer();
}

size_t
TcpProxy::on_accept(void* owner, size_t, UniqueFd fd,
                    const sockaddr_storage& ss, socklen_t len) noexcept
{
    auto* self = static_cast<TcpProxy*>(owner);
    std::string peer =
        format_sockaddr(reinterpret_cast<const sockaddr*>(&ss), len);
    Conn& c = self->conns_.emplace_back(self, std::move(fd), std::move(peer));
    c.self = std::prev(self->conns_.end());
    self->update_writer_timer();
    c.connect_next(-1);  // may end c
    return self->conns_.size();
}

void
TcpProxy::check_writer() noexcept
{
    uint64_t epoch = router_.writer_epoch(config_.pool);
    if (epoch == last_epoch_)
        return;
    last_epoch_ = epoch;
    TcpRoute writer = router_.pick(config_.pool, "writer", "", -1);
    std::vector<Conn*> stale;
    std::vector<Conn*> redirect;
    for (Conn& c : conns_) {
        if (c.route.node < 0 || c.epoch == epoch)
            continue;
        if (c.route.node == writer.node) {
            c.epoch = epoch;
            continue;
        }
        if (c.state == Conn::State::kConnecting)
            redirect.push_back(&c);
        else
            stale.push_back(&c);
    }
    // One line per old node, not per connection: a writer change with a
    // thousand PHP clients must not flood the log.
    std::map<int, std::pair<std::string, size_t>> by_node;
    for (Conn* c : stale) {
        auto& entry = by_node[c->route.node];
        entry.first = c->route.name;
        ++entry.second;
    }
    std::string now = writer.node < 0 ? "none" : node_label(writer.name);
    for (const auto& [node, entry] : by_node)
        log_notice(
            "%s: writer of %s changed to %s; closing %zu "
            "connection%s to %s",
            label_.c_str(), config_.pool.c_str(), now.c_str(), entry.second,
            entry.second == 1 ? "" : "s", node_label(entry.first).c_str());
    for (Conn* c : stale)
        finish(c);
    // A connect still in progress to the old writer is not a failure of
    // that node: start over with the current writer.
    for (Conn* c : redirect) {
        log_info(
            "%s: client %s: writer changed while connecting to %s; "
            "connecting again",
            label_.c_str(), c->peer.c_str(), c->route.name.c_str());
        c->abandon_attempt();
        --c->attempts;
        c->connect_next(-1);
    }
}

void
TcpProxy::finish(Conn* c) noexcept
{
    c->stop_watchers();
    if (c->opened)
        router_.closed(c->route.node, c->bytes_in, c->bytes_out);
    conns_.erase(c->self);
    acceptor_.update(conns_.size());
    update_writer_timer();
    maybe_idle();
}

void
TcpProxy::update_writer_timer() noexcept
{
    bool want = writer_route_ && !conns_.empty();
    if (want && !ev_is_active(&writer_timer_))
        ev_timer_again(loop_, &writer_timer_);
    else if (!want)
        ev_timer_stop(loop_, &writer_timer_);
}

void
TcpProxy::shutdown(std::function<void()> idle) noexcept
{
    CHECK(!shutting_down_);
    shutting_down_ = true;
    on_idle_ = std::move(idle);
    acceptor_.stop();
    listen_fd_.reset();
    maybe_idle();
}

void
TcpProxy::maybe_idle() noexcept
{
    if (shutting_down_ && conns_.empty() && on_idle_) {
        auto done = std::move(on_idle_);
        on_idle_ = nullptr;
        done();
    }
}

std::string
TcpProxy::node_label(const std::string& name) const
{
    std::string prefix = config_.pool + "/";
    if (name.compare(0, prefix.size(), prefix) == 0)
        return name.substr(prefix.size());
    return name;
}

}  // namespace sj
