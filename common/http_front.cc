#include "common/http_front.h"

#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "common/address.h"
#include "common/buffer.h"
#include "common/check.h"
#include "common/http_writer.h"
#include "common/log.h"
#include "common/net.h"

namespace sj {

// One client connection.
// States: waiting (between requests; idle timer), reading (a request head
// or body in progress; header timer), closing (close_after: no more input
// is read, the connection closes once `out` is flushed).
// Invariant: the read watcher runs exactly when !close_after.
struct HttpFront::Conn {
    HttpFront* front = nullptr;
    UniqueFd fd;
    std::string peer;
    Buffer in;
    Buffer out;
    HttpParser parser;
    bool close_after = false;
    bool timing_head = false;  // the timer measures header_timeout
    ev_io rio{};
    ev_io wio{};
    ev_timer timer{};

    Conn(HttpFront* f, UniqueFd s, std::string p)
        : front(f), fd(std::move(s)), peer(std::move(p)),
          in(f->opts_.limits.header_total + Buffer::kReadChunk),
          out(Buffer::kDefaultLimit),
          parser(HttpParserType::kRequest, f->opts_.limits)
    {}

    void start() noexcept;
    void stop_watchers() noexcept;
    void on_read() noexcept;
    void process() noexcept;
    void answer(const HttpAnswer& a, bool head, bool keep_alive) noexcept;
    void refuse(int status, const char* why) noexcept;
    void flush() noexcept;
    void arm_timer(bool head) noexcept;

    static void read_cb(struct ev_loop*, ev_io* w, int) noexcept
    {
        static_cast<Conn*>(w->data)->on_read();
    }
    static void write_cb(struct ev_loop*, ev_io* w, int) noexcept
    {
        static_cast<Conn*>(w->data)->flush();
    }
    static void timer_cb(struct ev_loop*, ev_timer* w, int) noexcept
    {
        auto* c = static_cast<Conn*>(w->data);
        if (c->timing_head && c->parser.in_progress()) {
            // Slowloris: a head that never completes holds a connection.
            c->refuse(408, "request header timeout");
            return;
        }
        c->front->close_conn(c);
    }
};

void
HttpFront::Conn::start() noexcept
{
    struct ev_loop* loop = front->loop_;
    ev_io_init(&rio, read_cb, fd.get(), EV_READ);
    ev_io_init(&wio, write_cb, fd.get(), EV_WRITE);
    ev_init(&timer, timer_cb);
    rio.data = wio.data = timer.data = this;
    ev_io_start(loop, &rio);
    arm_timer(false);
}

void
HttpFront::Conn::stop_watchers() noexcept
{
    struct ev_loop* loop = front->loop_;
    ev_io_stop(loop, &rio);
    ev_io_stop(loop, &wio);
    ev_timer_stop(loop, &timer);
}

void
HttpFront::Conn::arm_timer(bool head) noexcept
{
    timing_head = head;
    timer.repeat = head ? front->opts_.header_timeout
                        : front->opts_.idle_timeout;
    ev_timer_again(front->loop_, &timer);
}

void
HttpFront::Conn::on_read() noexcept
{
    ssize_t n = in.read_from(fd.get());
    if (n == -EAGAIN)
        return;
    if (n == 0) {
        // The client closed. Inside a request that is a truncated message
        // nobody is left to answer; between requests it is the normal end.
        if (parser.in_progress())
            log_debug("client %s: closed inside a request", peer.c_str());
        front->close_conn(this);
        return;
    }
    if (n == -ENOBUFS) {
        refuse(431, "request header too large");
        return;
    }
    if (n < 0) {
        log_debug("client %s: read: %s", peer.c_str(),
                  std::strerror(static_cast<int>(-n)));
        front->close_conn(this);
        return;
    }
    process();
}

void
HttpFront::Conn::process() noexcept
{
    // Pipelined requests are answered one after another, in order, from the
    // bytes already read.
    while (!close_after && !in.empty()) {
        bool was_idle = !parser.in_progress();
        size_t used = parser.feed(in.data(), in.size());
        in.consume(used);
        if (parser.failed()) {
            refuse(http_error_status(parser.error()), parser.error_message());
            return;
        }
        if (was_idle && parser.in_progress())
            arm_timer(true);
        if (!parser.done()) {
            if (used == 0)
                break;
            continue;
        }
        const HttpMessage& req = parser.message();
        HttpAnswer a = front->respond(req, peer);
        bool keep = req.keep_alive && !a.close && !front->shutting_down_;
        answer(a, req.is_head_request(), keep);
        parser.reset();
        if (!keep)
            close_after = true;
        else
            arm_timer(false);
    }
    if (close_after)
        ev_io_stop(front->loop_, &rio);
    flush();
}

void
HttpFront::Conn::answer(const HttpAnswer& a, bool head,
                        bool keep_alive) noexcept
{
    std::string text;
    http_write_status_line(&text, a.status);
    http_write_header(&text, "Server", "sunjammer");
    http_write_header(&text, "Content-Type", a.content_type);
    http_write_header(&text, "Content-Length",
                      static_cast<uint64_t>(a.body.size()));
    if (!keep_alive)
        http_write_header(&text, "Connection", "close");
    else if (parser.message().version_minor == 0)
        // An HTTP/1.0 client keeps the connection only if told so.
        http_write_header(&text, "Connection", "keep-alive");
    http_end_head(&text);
    if (!head)
        text += a.body;
    if (!out.append(text)) {
        // A client that pipelines requests but never reads the answers.
        log_info("client %s: not reading its responses; closing", peer.c_str());
        close_after = true;
        out.clear();
    }
}

void
HttpFront::Conn::refuse(int status, const char* why) noexcept
{
    log_info("client %s: %d %s: %s", peer.c_str(), status,
             http_reason_phrase(status), why);
    HttpAnswer a;
    a.status = status;
    a.body = std::string(http_reason_phrase(status)) + ": " + why + "\n";
    answer(a, false, false);
    close_after = true;
    ev_io_stop(front->loop_, &rio);
    flush();
}

void
HttpFront::Conn::flush() noexcept
{
    while (!out.empty()) {
        ssize_t n = out.write_to(fd.get());
        if (n == -EAGAIN) {
            ev_io_start(front->loop_, &wio);
            return;
        }
        if (n < 0) {
            front->close_conn(this);
            return;
        }
    }
    ev_io_stop(front->loop_, &wio);
    if (close_after) {
        // Half-close first so a client still sending its body sees our
        // answer rather than a reset.
        ::shutdown(fd.get(), SHUT_WR);
        front->close_conn(this);
        return;
    }
    in.release_memory();
    out.release_memory();
    if (front->shutting_down_ && !parser.in_progress())
        front->close_conn(this);
}

// ---------------------------------------------------------------- front

HttpFront::HttpFront(WorkerContext& ctx, HttpFrontOptions opts)
    : loop_(ctx.loop), opts_(std::move(opts))
{
    for (const auto& l : ctx.listeners) {
        auto li = std::make_unique<Listener>();
        li->front = this;
        li->fd = l.fd;
        ev_io_init(&li->io, on_accept, l.fd, EV_READ);
        li->io.data = li.get();
        ev_io_start(loop_, &li->io);
        listeners_.push_back(std::move(li));
    }
}

HttpFront::~HttpFront()
{
    for (auto& l : listeners_)
        ev_io_stop(loop_, &l->io);
    for (auto& [p, c] : conns_)
        c->stop_watchers();
}

void
HttpFront::on_accept(struct ev_loop*, ev_io* w, int) noexcept
{
    auto* l = static_cast<Listener*>(w->data);
    l->front->accept_from(l);
}

void
HttpFront::accept_from(Listener* l) noexcept
{
    // Several workers share the listening socket; take a bounded batch so
    // one worker does not starve its own connections.
    for (int i = 0; i < 64; ++i) {
        if (conns_.size() >= opts_.max_connections) {
            log_warn("%zu connections: not accepting more for now",
                     conns_.size());
            return;
        }
        sockaddr_storage ss;
        socklen_t len = sizeof ss;
        int err = 0;
        UniqueFd fd = accept_nonblocking(l->fd, &ss, &len, &err);
        if (!fd) {
            if (err != EAGAIN && err != ECONNABORTED)
                log_warn("accept: %s", std::strerror(err));
            return;
        }
        auto c = std::make_unique<Conn>(
            this, std::move(fd),
            format_sockaddr(reinterpret_cast<sockaddr*>(&ss), len));
        Conn* raw = c.get();
        conns_.emplace(raw, std::move(c));
        raw->start();
    }
}

void
HttpFront::close_conn(Conn* c) noexcept
{
    c->stop_watchers();
    conns_.erase(c);
    maybe_idle();
}

void
HttpFront::shutdown(std::function<void()> idle) noexcept
{
    shutting_down_ = true;
    on_idle_ = std::move(idle);
    // Close our copies of the listening sockets, not just stop watching
    // them: while any process holds one open, the kernel goes on completing
    // handshakes that nobody will ever accept.
    for (auto& l : listeners_) {
        ev_io_stop(loop_, &l->io);
        ::close(l->fd);
        l->fd = -1;
    }
    // Connections between requests close now; the others after their
    // current response.
    std::vector<Conn*> waiting;
    for (auto& [p, c] : conns_)
        if (!c->parser.in_progress() && c->out.empty())
            waiting.push_back(p);
    for (Conn* c : waiting)
        close_conn(c);
    maybe_idle();
}

void
HttpFront::maybe_idle() noexcept
{
    if (shutting_down_ && conns_.empty() && on_idle_) {
        auto done = std::move(on_idle_);
        on_idle_ = nullptr;
        done();
    }
}

namespace {

class UnroutedFront : public HttpFront {
public:
    UnroutedFront(WorkerContext& ctx, HttpFrontOptions opts, const char* daemon)
        : HttpFront(ctx, std::move(opts)), daemon_(daemon)
    {}

protected:
    HttpAnswer respond(const HttpMessage& req,
                       const std::string& peer) noexcept override
    {
        log_debug("client %s: %.*s %.*s: 503, not forwarding yet", peer.c_str(),
                  static_cast<int>(req.method().size()), req.method().data(),
                  static_cast<int>(req.target().size()), req.target().data());
        HttpAnswer a;
        a.status = 503;
        a.body = daemon_ + ": requests are not forwarded in this release\n";
        return a;
    }

private:
    std::string daemon_;
};

}  // namespace

std::unique_ptr<Worker>
make_unrouted_front(WorkerContext& ctx, const HttpLimits& limits,
                    const char* daemon)
{
    HttpFrontOptions opts;
    opts.limits = limits;
    return std::make_unique<UnroutedFront>(ctx, opts, daemon);
}

}  // namespace sj
