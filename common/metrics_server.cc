#include "common/metrics_server.h"

#include <sys/socket.h>

#include <cerrno>
#include <string_view>

#include "common/buffer.h"
#include "common/log.h"
#include "common/net.h"

namespace sj {

struct MetricsServer::Conn {
    MetricsServer* server = nullptr;
    UniqueFd fd;
    Buffer in{16384};
    Buffer out{64u << 20};
    ev_io rio{}, wio{};
    ev_timer timer{};

    ~Conn()
    {
        ev_io_stop(server->loop_, &rio);
        ev_io_stop(server->loop_, &wio);
        ev_timer_stop(server->loop_, &timer);
    }

    void on_read() noexcept
    {
        ssize_t n = in.read_from(fd.get());
        if (n == -EAGAIN)
            return;
        std::string_view v = in.view();
        bool head = v.find("\r\n\r\n") != std::string_view::npos ||
                    v.find("\n\n") != std::string_view::npos;
        if (n <= 0 || in.size() >= 16384) {
            // Closed before a whole head, or a head too large to be a
            // scraper's: nothing to answer.
            if (!head) {
                server->done(this);
                return;
            }
        } else if (!head) {
            return;
        }
        ev_io_stop(server->loop_, &rio);
        std::string body;
        int status = 200;
        if (v.substr(0, 13) == "GET /metrics " ||
            v.substr(0, 13) == "GET /metrics?" || v.substr(0, 6) == "GET / ") {
            body = server->body_();
        } else {
            status = 404;
            body = "try /metrics\n";
        }
        std::string h =
            "HTTP/1.1 " + std::to_string(status) +
            (status == 200 ? " OK" : " Not Found") +
            "\r\nContent-Type: text/plain; version=0.0.4\r\n"
            "Content-Length: " +
            std::to_string(body.size()) + "\r\nConnection: close\r\n\r\n";
        if (!out.append(h) || !out.append(body)) {
            log_warn("metrics: a %zu-byte answer does not fit its buffer",
                     body.size());
            server->done(this);
            return;
        }
        flush();
    }

    void flush() noexcept
    {
        while (!out.empty()) {
            ssize_t n = out.write_to(fd.get());
            if (n == -EAGAIN) {
                ev_io_start(server->loop_, &wio);
                return;
            }
            if (n < 0)
                break;
        }
        server->done(this);
    }
};

MetricsServer::MetricsServer(struct ev_loop* loop, Body body)
    : loop_(loop), body_(std::move(body))
{}

MetricsServer::~MetricsServer()
{
    close();
}

bool
MetricsServer::listen(const Address& addr, const std::string& text,
                      std::string* err)
{
    if (text == text_)
        return true;
    close();
    if (text.empty())
        return true;
    UniqueFd fd = listen_socket(addr, 64, err);
    if (!fd)
        return false;
    fd_ = std::move(fd);
    text_ = text;
    acceptor_ = std::make_unique<Acceptor>(loop_, on_accept, this);
    acceptor_->set_limit(kMaxConns, "the most it holds", "metrics " + text_);
    acceptor_->add(fd_.get());
    log_info("metrics on %s", text_.c_str());
    return true;
}

void
MetricsServer::close() noexcept
{
    conns_.clear();
    acceptor_.reset();  // stops watching fd_, which it does not own
    fd_.reset();
    text_.clear();
}

size_t
MetricsServer::on_accept(void* owner, size_t, UniqueFd fd,
                         const sockaddr_storage&, socklen_t) noexcept
{
    auto* self = static_cast<MetricsServer*>(owner);
    auto c = std::make_unique<Conn>();
    Conn* raw = c.get();
    raw->server = self;
    raw->fd = std::move(fd);
    ev_io_init(
        &raw->rio,
        [](struct ev_loop*, ev_io* w, int) noexcept {
            static_cast<Conn*>(w->data)->on_read();
        },
        raw->fd.get(), EV_READ);
    ev_io_init(
        &raw->wio,
        [](struct ev_loop*, ev_io* w, int) noexcept {
            static_cast<Conn*>(w->data)->flush();
        },
        raw->fd.get(), EV_WRITE);
    ev_timer_init(
        &raw->timer,
        [](struct ev_loop*, ev_timer* t, int) noexcept {
            auto* conn = static_cast<Conn*>(t->data);
            conn->server->done(conn);
        },
        kTimeout, 0.);
    raw->rio.data = raw->wio.data = raw->timer.data = raw;
    ev_io_start(self->loop_, &raw->rio);
    ev_timer_start(self->loop_, &raw->timer);
    self->conns_.emplace(raw, std::move(c));
    return self->conns_.size();
}

void
MetricsServer::done(Conn* c) noexcept
{
    conns_.erase(c);
    if (acceptor_)
        acceptor_->update(conns_.size());
}

}  // namespace sj
