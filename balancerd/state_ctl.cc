// balancerd's control commands and the Prometheus metrics listener, both
// served by the parent straight from the shared node table.

#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "balancerd/state.h"
#include "common/buffer.h"
#include "common/control_server.h"
#include "common/log.h"
#include "common/net.h"

namespace sj {

namespace {

bool
parse_weight(const std::string& s, int* out)
{
    if (s.empty() || s.size() > 4 ||
        s.find_first_not_of("0123456789") != std::string::npos)
        return false;
    int v = std::stoi(s);
    if (v > 1000)
        return false;
    *out = v;
    return true;
}

std::string
join_words(const std::vector<std::string>& w, size_t from)
{
    std::string s;
    for (size_t i = from; i < w.size(); ++i) {
        if (!s.empty())
            s += ' ';
        s += w[i];
    }
    return s;
}

}  // namespace

void
BalancerState::add_commands(ControlServer& control)
{
    using Args = std::vector<std::string>;
    control.add("show pools", false, [this](const Args& a, const ControlPeer&) {
        if (!a.empty())
            return ControlReply{400, "usage: show pools\n"};
        return ControlReply{200, show_pools()};
    });
    control.add("show nodes", false, [this](const Args& a, const ControlPeer&) {
        if (!a.empty())
            return ControlReply{400, "usage: show nodes\n"};
        return ControlReply{200, show_nodes()};
    });
    control.add("show stats", false, [this](const Args& a, const ControlPeer&) {
        if (!a.empty())
            return ControlReply{400, "usage: show stats\n"};
        return ControlReply{200, show_stats()};
    });
    control.add("show metrics", false,
                [this](const Args& a, const ControlPeer&) {
                    if (!a.empty())
                        return ControlReply{400, "usage: show metrics\n"};
                    return ControlReply{200, metrics()};
                });
    auto admin = [this](const char* verb, AdminState st) {
        return [this, verb, st](const Args& a, const ControlPeer& p) {
            if (a.size() != 1)
                return ControlReply{400, std::string("usage: node ") + verb +
                                             " POOL/NODE\n"};
            int slot;
            std::string err;
            if (!find_node(a[0], &slot, &err))
                return ControlReply{404, err};
            ShmNode& n = table_.node(slot);
            uint32_t old = n.admin.exchange(static_cast<uint32_t>(st));
            if (old != static_cast<uint32_t>(st)) {
                n.last_change = wall_ms();
                if (st == AdminState::kEnabled)
                    n.up_since = mono_ms();
                if (n.writer)
                    for (int i = 0; i < kMaxPools; ++i)
                        if (table_.pool(i).in_use &&
                            std::strcmp(table_.pool(i).name, n.pool) == 0)
                            table_.bump_epoch(i);
            }
            log_notice("%s: %s (control socket, uid %d)", a[0].c_str(),
                       admin_name(static_cast<uint32_t>(st)),
                       static_cast<int>(p.uid));
            return ControlReply{
                200,
                a[0] + ": " + admin_name(static_cast<uint32_t>(st)) + "\n"};
        };
    };
    control.add("node enable", true, admin("enable", AdminState::kEnabled));
    control.add("node disable", true, admin("disable", AdminState::kDisabled));
    control.add("node drain", true, admin("drain", AdminState::kDrain));
    control.add("node weight", true, [this](const Args& a, const ControlPeer&) {
        int w;
        if (a.size() != 2 || !parse_weight(a[1], &w))
            return ControlReply{400,
                                "usage: node weight POOL/NODE N (0..1000)\n"};
        int slot;
        std::string err;
        if (!find_node(a[0], &slot, &err))
            return ControlReply{404, err};
        ShmNode& n = table_.node(slot);
        int old = n.weight.exchange(w);
        if (old == 0 && w > 0)
            n.up_since = mono_ms();
        log_notice("%s: weight %d -> %d", a[0].c_str(), old, w);
        return ControlReply{200, a[0] + ": weight " + std::to_string(w) + "\n"};
    });
    control.add("node health", true, [this](const Args& a, const ControlPeer&) {
        if (a.size() < 2 || (a[1] != "up" && a[1] != "down"))
            return ControlReply{
                400, "usage: node health POOL/NODE up|down [reason]\n"};
        int slot;
        std::string err;
        if (!find_node(a[0], &slot, &err))
            return ControlReply{404, err};
        bool up = a[1] == "up";
        table_.set_health(slot, up, HealthSource::kHeartbeat, join_words(a, 2));
        return ControlReply{200, a[0] + ": " + a[1] + "\n"};
    });
    control.add("node role", true, [this](const Args& a, const ControlPeer&) {
        if (a.size() != 2 || a[1] != "writer")
            return ControlReply{400, "usage: node role POOL/NODE writer\n"};
        int slot;
        std::string err;
        if (!find_node(a[0], &slot, &err))
            return ControlReply{404, err};
        ShmNode& target = table_.node(slot);
        bool changed = false;
        for (int i = 0; i < kMaxNodes; ++i) {
            ShmNode& n = table_.node(i);
            if (!n.in_use || std::strcmp(n.pool, target.pool) != 0)
                continue;
            uint32_t want = i == slot ? 1 : 0;
            if (n.writer.exchange(want) != want)
                changed = true;
        }
        if (changed) {
            for (int i = 0; i < kMaxPools; ++i)
                if (table_.pool(i).in_use &&
                    std::strcmp(table_.pool(i).name, target.pool) == 0)
                    table_.bump_epoch(i);
            log_notice("%s: now the writer", a[0].c_str());
        }
        return ControlReply{200, a[0] + ": writer\n"};
    });
}

// ---------------------------------------------------------------- metrics

// One scrape: read a request head (bounded, with a timeout), answer with
// the exposition and close.
struct BalancerState::MetricsConn {
    BalancerState* st = nullptr;
    UniqueFd fd;
    Buffer in{16384};
    Buffer out{64u << 20};
    ev_io rio{}, wio{};
    ev_timer timer{};

    ~MetricsConn()
    {
        ev_io_stop(st->loop_, &rio);
        ev_io_stop(st->loop_, &wio);
        ev_timer_stop(st->loop_, &timer);
    }
    void done() noexcept { st->metrics_conns_.erase(this); }
    void on_read() noexcept
    {
        ssize_t n = in.read_from(fd.get());
        if (n == -EAGAIN)
            return;
        if (n <= 0) {
            done();
            return;
        }
        std::string_view v = in.view();
        if (v.find("\r\n\r\n") == std::string_view::npos &&
            v.find("\n\n") == std::string_view::npos)
            return;
        ev_io_stop(st->loop_, &rio);
        std::string body;
        int status = 200;
        if (v.substr(0, 12) == "GET /metrics" || v.substr(0, 6) == "GET / ") {
            body = st->metrics();
        } else {
            status = 404;
            body = "try /metrics\n";
        }
        std::string head =
            "HTTP/1.1 " + std::to_string(status) +
            (status == 200 ? " OK" : " Not Found") +
            "\r\nContent-Type: text/plain; version=0.0.4\r\n"
            "Content-Length: " +
            std::to_string(body.size()) + "\r\nConnection: close\r\n\r\n";
        out.append(head);
        out.append(body);
        flush();
    }
    void flush() noexcept
    {
        while (!out.empty()) {
            ssize_t n = out.write_to(fd.get());
            if (n == -EAGAIN) {
                ev_io_start(st->loop_, &wio);
                return;
            }
            if (n < 0)
                break;
        }
        done();
    }
};

BalancerState::BalancerState(struct ev_loop* loop) : loop_(loop) {}

BalancerState::~BalancerState()
{
    if (metrics_fd_)
        ev_io_stop(loop_, &metrics_io_);
}

void
BalancerState::after_fork() noexcept
{
    if (metrics_fd_) {
        ev_io_stop(loop_, &metrics_io_);
        metrics_fd_.reset();
    }
    for (auto& [p, c] : metrics_conns_)
        (void)c;
    // The MetricsConn watchers belong to the parent's loop, which the
    // child never runs; their fds close with the objects.
    metrics_conns_.clear();
}

bool
BalancerState::open_metrics(const Config& config, std::string* err)
{
    const std::string& want = config.balancerd.metrics_listen_text;
    if (want == metrics_addr_)
        return true;
    if (metrics_fd_) {
        ev_io_stop(loop_, &metrics_io_);
        metrics_fd_.reset();
        metrics_addr_.clear();
    }
    if (want.empty())
        return true;
    std::string e;
    UniqueFd fd = listen_socket(config.balancerd.metrics_listen, 64, &e);
    if (!fd) {
        *err = "metrics_listen " + want + ": " + e;
        return false;
    }
    metrics_fd_ = std::move(fd);
    metrics_addr_ = want;
    ev_io_init(&metrics_io_, on_metrics_accept, metrics_fd_.get(), EV_READ);
    metrics_io_.data = this;
    ev_io_start(loop_, &metrics_io_);
    log_info("metrics on %s", want.c_str());
    return true;
}

void
BalancerState::on_metrics_accept(struct ev_loop* loop, ev_io* w, int) noexcept
{
    auto* self = static_cast<BalancerState*>(w->data);
    for (int i = 0; i < 16; ++i) {
        int err = 0;
        UniqueFd fd = accept_nonblocking(self->metrics_fd_.get(), nullptr,
                                         nullptr, &err);
        if (!fd)
            return;
        if (self->metrics_conns_.size() >= 64)
            continue;  // closes it: a scraper never needs more
        auto c = std::make_unique<MetricsConn>();
        c->st = self;
        c->fd = std::move(fd);
        MetricsConn* raw = c.get();
        ev_io_init(
            &raw->rio,
            [](struct ev_loop*, ev_io* iw, int) noexcept {
                static_cast<MetricsConn*>(iw->data)->on_read();
            },
            raw->fd.get(), EV_READ);
        ev_io_init(
            &raw->wio,
            [](struct ev_loop*, ev_io* iw, int) noexcept {
                static_cast<MetricsConn*>(iw->data)->flush();
            },
            raw->fd.get(), EV_WRITE);
        ev_timer_init(
            &raw->timer,
            [](struct ev_loop*, ev_timer* t, int) noexcept {
                static_cast<MetricsConn*>(t->data)->done();
            },
            5.0, 0.);
        raw->rio.data = raw->wio.data = raw->timer.data = raw;
        ev_io_start(loop, &raw->rio);
        ev_timer_start(loop, &raw->timer);
        self->metrics_conns_.emplace(raw, std::move(c));
    }
}

}  // namespace sj
