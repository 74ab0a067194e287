// The client side of the HTTP proxy: reading requests, rewriting their
// heads, streaming bodies to the node and responses back (see the state
// comment in client_conn.h).

#include "balancerd/client_conn.h"

#include <sys/socket.h>

#include <cerrno>
#include <cinttypes>
#include <cstdio>
#include <cstring>
#include <ctime>

#include "balancerd/proxy.h"
#include "common/check.h"
#include "common/http_writer.h"
#include "common/log.h"
#include "common/net.h"

namespace sj {

namespace {

// Stop reading a side when the buffer towards the other side holds this
// much: backpressure without buffering whole messages.
constexpr size_t kWatermark = 256 * 1024;

// Appends "name: value\r\n" with one size change of `s` (its capacity
// carries over from request to request), not four appends.
void
put(std::string* s, std::string_view name, std::string_view value)
{
    size_t at = s->size();
    s->resize(at + name.size() + value.size() + 4);
    char* w = s->data() + at;
    std::memcpy(w, name.data(), name.size());
    w += name.size();
    *w++ = ':';
    *w++ = ' ';
    std::memcpy(w, value.data(), value.size());
    w += value.size();
    *w++ = '\r';
    *w = '\n';
}

bool
is_idempotent(std::string_view m) noexcept
{
    return m == "GET" || m == "HEAD" || m == "OPTIONS" || m == "PUT" ||
           m == "DELETE" || m == "TRACE";
}

void
append_chunked(Buffer* b, const std::vector<std::string_view>& spans,
               bool chunked, bool* ok)
{
    size_t total = 0;
    for (auto s : spans)
        total += s.size();
    if (total == 0)
        return;
    if (chunked) {
        char hdr[24];
        int n = std::snprintf(hdr, sizeof hdr, "%zx\r\n", total);
        *ok = *ok && b->append(hdr, static_cast<size_t>(n));
    }
    for (auto s : spans)
        *ok = *ok && b->append(s);
    if (chunked)
        *ok = *ok && b->append("\r\n", 2);
}

// Calls f(token) for each comma-separated token of a Connection value.
template <typename F>
void
for_each_token(std::string_view v, F f) noexcept
{
    while (!v.empty()) {
        size_t c = v.find(',');
        std::string_view tok = v.substr(0, c);
        while (!tok.empty() && (tok.front() == ' ' || tok.front() == '\t'))
            tok.remove_prefix(1);
        while (!tok.empty() && (tok.back() == ' ' || tok.back() == '\t'))
            tok.remove_suffix(1);
        if (!tok.empty())
            f(tok);
        if (c == std::string_view::npos)
            break;
        v.remove_prefix(c + 1);
    }
}

}  // namespace

bool
http_hop_by_hop(std::string_view n, bool request) noexcept
{
    using namespace std::string_view_literals;
    // By length first: most fields are none of these and cost one switch.
    switch (n.size()) {
    case 2: return http_iequals(n, "te"sv);
    case 7: return http_iequals(n, "trailer"sv) || http_iequals(n, "upgrade"sv);
    case 10:
        return http_iequals(n, "connection"sv) ||
               http_iequals(n, "keep-alive"sv);
    case 16: return http_iequals(n, "proxy-connection"sv);
    case 17: return http_iequals(n, "transfer-encoding"sv);
    case 18: return request && http_iequals(n, "proxy-authenticate"sv);
    case 19: return request && http_iequals(n, "proxy-authorization"sv);
    default: return false;
    }
}

HopFilter::HopFilter(const HttpMessage& m, bool request) noexcept
    : m_(m), request_(request)
{
    using namespace std::string_view_literals;
    for (size_t i = 0; i < m.header_count(); ++i) {
        std::string_view n = m.header_name(i);
        if (n.size() != 10 || !http_iequals(n, "connection"sv))
            continue;
        for_each_token(m.header_value(i), [this](std::string_view tok) {
            if (ntokens_ < kMaxTokens)
                tokens_[ntokens_++] = tok;
            else
                overflow_ = true;
        });
    }
}

bool
HopFilter::skip(std::string_view n) const noexcept
{
    if (http_hop_by_hop(n, request_))
        return true;
    for (size_t i = 0; i < ntokens_; ++i)
        if (http_iequals(tokens_[i], n))
            return true;
    if (!overflow_)
        return false;
    bool named = false;
    for (size_t i = 0; i < m_.header_count() && !named; ++i)
        if (http_iequals(m_.header_name(i), "connection"))
            for_each_token(m_.header_value(i), [&](std::string_view tok) {
                named = named || http_iequals(tok, n);
            });
    return named;
}

bool
append_last_chunk(Buffer* b, const HttpMessage& m)
{
    if (m.trailer_count() == 0)
        return b->append("0\r\n\r\n", 5);
    // The parser has refused framing fields in the trailer section
    // already (RFC 9110 §6.5.1); fields for one hop stay on that hop, and
    // http_write_header refuses anything that could split the message.
    std::string t = "0\r\n";
    for (size_t i = 0; i < m.trailer_count(); ++i) {
        std::string_view n = m.trailer_name(i);
        if (!http_hop_by_hop(n, true))
            (void)http_write_header(&t, n, m.trailer_value(i));
    }
    http_end_head(&t);
    return b->append(t);
}

ClientConn::ClientConn(Proxy* p, UniqueFd s, std::string pr, bool u)
    : proxy(p), fd(std::move(s)), peer(std::move(pr)), unix_peer(u),
      in(p->config().limits.header_total + Buffer::kReadChunk),
      out(Buffer::kDefaultLimit), req_out(Buffer::kDefaultLimit),
      req(HttpParserType::kRequest, p->config().limits),
      resp(HttpParserType::kResponse, p->config().limits)
{
    if (!unix_peer) {
        if (!peer.empty() && peer[0] == '[')
            peer_ip = peer.substr(1, peer.find(']') - 1);
        else
            peer_ip = peer.substr(0, peer.rfind(':'));
    }
    trusted = proxy->trusted(peer_ip, unix_peer);
    req.set_max_body(p->config().max_body);
}

ClientConn::~ClientConn()
{
    stop_watchers();
}

void
ClientConn::start() noexcept
{
    struct ev_loop* loop = proxy->loop();
    ev_io_init(
        &rio,
        [](struct ev_loop*, ev_io* w, int) noexcept {
            static_cast<ClientConn*>(w->data)->proxy->ready().push(
                w, [](ev_io* r) noexcept {
                    static_cast<ClientConn*>(r->data)->on_read();
                });
        },
        fd.get(), EV_READ);
    ev_io_init(
        &wio,
        [](struct ev_loop*, ev_io* w, int) noexcept {
            static_cast<ClientConn*>(w->data)->on_writable();
        },
        fd.get(), EV_WRITE);
    ev_init(&timer, [](struct ev_loop*, ev_timer* w, int) noexcept {
        static_cast<ClientConn*>(w->data)->on_timer();
    });
    ev_init(&qtimer, [](struct ev_loop*, ev_timer* w, int) noexcept {
        static_cast<ClientConn*>(w->data)->on_queue_timeout();
    });
    ev_init(&stimer, [](struct ev_loop*, ev_timer* w, int) noexcept {
        static_cast<ClientConn*>(w->data)->on_send_timeout();
    });
    rio.data = wio.data = timer.data = qtimer.data = stimer.data = this;
    reading = true;
    ev_io_start(loop, &rio);
    arm_timer(proxy->config().idle_timeout);
}

void
ClientConn::stop_watchers() noexcept
{
    struct ev_loop* loop = proxy->loop();
    ev_io_stop(loop, &rio);
    ev_io_stop(loop, &wio);
    ev_timer_stop(loop, &timer);
    ev_timer_stop(loop, &qtimer);
    ev_timer_stop(loop, &stimer);
}

void
ClientConn::arm_timer(double secs) noexcept
{
    timer.repeat = secs;
    ev_timer_again(proxy->loop(), &timer);
}

void
ClientConn::update_client_read() noexcept
{
    bool want;
    switch (state) {
    case State::kIdle:
    case State::kHead: want = in.room() > 0; break;
    case State::kQueued:
    case State::kForward:
        // After the whole request, reading goes on into `in`, where the
        // next pipelined request waits unparsed (and a close is seen at
        // once): stopping the watcher here and starting it again after
        // the response would cost a system call per request.
        want = in.room() > 0 && (req_done || req_out.size() < kWatermark);
        break;
    default: want = false;
    }
    if (want != reading) {
        reading = want;
        if (want)
            ev_io_start(proxy->loop(), &rio);
        else
            ev_io_stop(proxy->loop(), &rio);
    }
}

void
ClientConn::on_read() noexcept
{
    ssize_t n = in.read_from(fd.get());
    if (n == -EAGAIN)
        return;
    if (n == 0 || (n < 0 && n != -ENOBUFS)) {
        if ((state == State::kIdle && !req.in_progress()) ||
            state == State::kClosing) {
            proxy->close_client(this);
            return;
        }
        if (req_done && (state == State::kForward || state == State::kQueued)) {
            // Half-closed after a complete request: answer it, then close.
            close_after = true;
            client_keep = false;
            reading = false;
            ev_io_stop(proxy->loop(), &rio);
            return;
        }
        abort("client-closed");
        return;
    }
    if (n == -ENOBUFS) {
        if (state == State::kHead || state == State::kIdle) {
            error_response(431, "request header too large", "bad-request");
            return;
        }
        reading = false;
        ev_io_stop(proxy->loop(), &rio);
        return;
    }
    process();
}

void
ClientConn::process() noexcept
{
    while (!in.empty()) {
        if (state == State::kIdle || state == State::kHead) {
            bool was = req.in_progress();
            size_t used = req.feed(in.data(), in.size());
            if (req.failed()) {
                in.consume(std::min(used, in.size()));
                error_response(http_error_status(req.error()),
                               req.error_message(), "bad-request");
                return;
            }
            if (!was && (req.in_progress() || req.headers_done())) {
                state = State::kHead;
                t_start = ev_now(proxy->loop());
                if (!req.headers_done())
                    arm_timer(proxy->config().header_timeout);
            }
            if (req.headers_done()) {
                if (!head_complete()) {
                    in.consume(used);
                    return;
                }
                bool ok = true;
                append_chunked(&req_out, req.body(), req_chunked, &ok);
                in.consume(used);
                bytes_in += used;
                if (req.done())
                    req_done = true;
                if (req_done && req_chunked)
                    ok = ok && append_last_chunk(&req_out, req.message());
                if (!ok) {
                    error_response(500, "request buffer overflow", "error");
                    return;
                }
                // A timer left running once the request is read does
                // nothing when it fires (on_timer), and the next request
                // re-arms it: cheaper than a stop and a start each time.
                try_node();
                break;
            }
            in.consume(used);
            bytes_in += used;
            if (used == 0)
                break;
            continue;
        }
        if ((state == State::kQueued || state == State::kForward) &&
            !req_done) {
            feed_body();
            break;
        }
        break;
    }
    if (state != State::kClosing)
        update_client_read();
}

void
ClientConn::feed_body() noexcept
{
    while (!in.empty() && !req_done && req_out.size() < kWatermark) {
        size_t used = req.feed(in.data(), in.size());
        if (req.failed()) {
            // The node has part of a request and must never read what
            // follows as another one: its connection goes.
            error_response(http_error_status(req.error()), req.error_message(),
                           "bad-request");
            return;
        }
        bool ok = true;
        append_chunked(&req_out, req.body(), req_chunked, &ok);
        in.consume(used);
        bytes_in += used;
        if (req.done()) {
            req_done = true;
            if (req_chunked)
                ok = ok && append_last_chunk(&req_out, req.message());
        }
        if (!ok) {
            error_response(500, "request buffer overflow", "error");
            return;
        }
        if (used == 0)
            break;
    }
    if (state == State::kForward)
        flush_server();
}

bool
ClientConn::head_complete() noexcept
{
    const HttpMessage& m = req.message();
    if (m.upgrade) {
        error_response(501, "protocol upgrades are not supported",
                       "bad-request");
        return false;
    }
    method.assign(m.method());
    target.assign(m.target());
    http10 = m.version_minor == 0;
    client_keep = m.keep_alive && !proxy->shutting_down();
    idempotent = is_idempotent(method);
    req_chunked = m.framing == BodyFraming::kChunked;
    has_body = m.has_body();
    const std::string& sc = proxy->pool().config->sticky_cookie;
    sticky_node.clear();
    if (!sc.empty())
        sticky_node.assign(cookie(sc));
    build_request_head();
    req_out.clear();
    if (!req_out.append(head)) {
        error_response(431, "request header too large", "bad-request");
        return false;
    }
    if (!req.done()) {
        timing_body = true;
        arm_timer(proxy->config().body_timeout);
    } else {
        timing_body = false;
    }
    return true;
}

bool
ClientConn::build_request_head() noexcept
{
    const HttpMessage& m = req.message();
    const BalancerdConfig& cfg = proxy->config();
    head.clear();
    head.append(method);
    head.push_back(' ');
    head.append(target);
    head.append(" HTTP/1.1\r\n");
    std::string xff, xfp, xfh, fwd;
    std::string_view host;
    bool have_host = false;
    HopFilter hop(m, true);
    for (size_t i = 0; i < m.header_count(); ++i) {
        std::string_view n = m.header_name(i), v = m.header_value(i);
        if (hop.skip(n))
            continue;
        // By length first: most fields are none of these and cost one
        // switch, not five compares.
        switch (n.size()) {
        case 15:
            if (http_iequals(n, "x-forwarded-for")) {
                if (trusted) {
                    if (!xff.empty())
                        xff += ", ";
                    xff += v;
                }
                continue;
            }
            break;
        case 17:
            if (http_iequals(n, "x-forwarded-proto")) {
                if (trusted && xfp.empty())
                    xfp = v;
                continue;
            }
            break;
        case 16:
            if (http_iequals(n, "x-forwarded-host")) {
                if (trusted && xfh.empty())
                    xfh = v;
                continue;
            }
            break;
        case 9:
            if (http_iequals(n, "forwarded")) {
                if (trusted) {
                    if (!fwd.empty())
                        fwd += ", ";
                    fwd += v;
                }
                continue;
            }
            break;
        case 4:
            if (http_iequals(n, "host")) {
                host = v;
                have_host = true;
            }
            break;
        default: break;
        }
        put(&head, n, v);
    }
    if (!have_host) {
        // An HTTP/1.0 request may lack Host; HTTP/1.1 to the node needs one.
        host = "localhost";
        put(&head, "Host", host);
    }
    if (!peer_ip.empty()) {
        if (!xff.empty())
            xff += ", ";
        xff += peer_ip;
    }
    if (!xff.empty())
        put(&head, "X-Forwarded-For", xff);
    put(&head, "X-Forwarded-Proto", xfp.empty() ? "http" : xfp);
    put(&head, "X-Forwarded-Host", xfh.empty() ? host : std::string_view(xfh));
    if (cfg.forwarded) {
        // RFC 7239 §6: an IPv6 node name is quoted and bracketed.
        std::string f = fwd.empty() ? "" : fwd + ", ";
        if (peer_ip.empty())
            f += "for=unknown";
        else if (peer_ip.find(':') != std::string::npos)
            f += "for=\"[" + peer_ip + "]\"";
        else
            f += "for=" + peer_ip;
        f += ";proto=http;host=\"" + std::string(host) + "\"";
        put(&head, "Forwarded", f);
    }
    if (req_chunked)
        put(&head, "Transfer-Encoding", "chunked");
    head.append("\r\n");
    return true;
}

std::string_view
ClientConn::cookie(std::string_view name) const noexcept
{
    const HttpMessage& m = req.message();
    for (size_t i = 0; i < m.header_count(); ++i) {
        if (!http_iequals(m.header_name(i), "cookie"))
            continue;
        std::string_view v = m.header_value(i);
        while (!v.empty()) {
            while (!v.empty() && (v.front() == ' ' || v.front() == ';'))
                v.remove_prefix(1);
            size_t semi = v.find(';');
            std::string_view pair = v.substr(0, semi);
            size_t eq = pair.find('=');
            if (eq != std::string_view::npos && pair.substr(0, eq) == name)
                return pair.substr(eq + 1);
            if (semi == std::string_view::npos)
                break;
            v.remove_prefix(semi + 1);
        }
    }
    return {};
}

std::string
ClientConn::hash_key() const
{
    const std::string& on = proxy->pool().config->hash_on;
    if (on == "uri")
        return target;
    if (on == "source") {
        // Behind a trusted hop (cached on the Unix socket) the client is
        // the last address that hop added.
        if (trusted) {
            auto x = req.message().header("x-forwarded-for");
            if (x) {
                std::string_view v = *x;
                size_t c = v.rfind(',');
                if (c != std::string_view::npos)
                    v.remove_prefix(c + 1);
                while (!v.empty() && v.front() == ' ')
                    v.remove_prefix(1);
                return std::string(v);
            }
        }
        return peer_ip;
    }
    if (on.rfind("header:", 0) == 0) {
        auto h = req.message().header(std::string_view(on).substr(7));
        return h ? std::string(*h) : std::string();
    }
    if (on.rfind("cookie:", 0) == 0)
        return std::string(cookie(std::string_view(on).substr(7)));
    return target;
}

void
ClientConn::try_node() noexcept
{
    const PoolConfig& pc = *proxy->pool().config;
    ShmPool& sp = proxy->table().pool(proxy->pool().layout->slot);
    bool saturated = false;
    int n = -1;
    if (pc.queue_timeout > 0 && sp.queued.load() > 0) {
        // Requests are waiting, in this worker or another: take a place
        // behind them (serve_queue() below lets this one go at once if
        // it is the oldest that a free node can take).
        saturated = true;
        sticky_wait = false;
    } else {
        n = proxy->pick_http(*this, &saturated);
    }
    if (n >= 0) {
        dispatch(n);
        return;
    }
    if (!saturated) {
        sp.no_node.fetch_add(1, std::memory_order_relaxed);
        error_response(503, "no node available", "no-node", true);
        return;
    }
    if (pc.queue_timeout <= 0 ||
        (pc.maxqueue > 0 &&
         sp.queued.load() >= static_cast<uint32_t>(pc.maxqueue))) {
        sp.queue_full.fetch_add(1, std::memory_order_relaxed);
        error_response(503, "queue full", "queue-full", true);
        return;
    }
    state = State::kQueued;
    t_queue = ev_now(proxy->loop());
    proxy->enqueue(this);
    ev_timer_set(&qtimer, pc.queue_timeout, 0.);
    ev_timer_start(proxy->loop(), &qtimer);
    update_client_read();
    proxy->serve_queue();
}

void
ClientConn::dispatch(int n) noexcept
{
    if (in_queue) {
        proxy->dequeue(this);
        double w = ev_now(proxy->loop()) - t_queue;
        queue_wait += w;
        proxy->table()
            .pool(proxy->pool().layout->slot)
            .queue_wait_us.fetch_add(static_cast<uint64_t>(w * 1e6));
        ev_timer_stop(proxy->loop(), &qtimer);
    }
    node = n;
    attempt(n);
}

void
ClientConn::attempt(int n) noexcept
{
    ShmNode& sn = proxy->table().node(n);
    node_name = sn.name;
    t_attempt = ev_now(proxy->loop());
    state = State::kForward;
    int err = 0;
    srv = proxy->server_for(n, &err);
    if (srv == nullptr) {
        sn.connect_fails.fetch_add(1, std::memory_order_relaxed);
        proxy->table().passive_failure(n, proxy->config().passive_fall,
                                       proxy->config().passive_hold,
                                       std::strerror(err));
        log_info("%s/%s: connect: %s", sn.pool, sn.name, std::strerror(err));
        retry_or_fail(false, std::strerror(err));
        return;
    }
    srv->client = this;
    if (!srv->connecting)
        server_connected();
}

void
ClientConn::server_connected() noexcept
{
    struct ev_loop* loop = proxy->loop();
    if (!srv->reused) {
        connect_time = ev_now(loop) - t_attempt;
        proxy->table().passive_success(node);
    } else if (connect_time < 0) {
        connect_time = 0;
    }
    ev_io_stop(loop, &srv->wio);
    ev_io_start(loop, &srv->rio);
    srv->timer.repeat = proxy->config().server_timeout;
    ev_timer_again(loop, &srv->timer);
    flush_server();
}

void
ClientConn::flush_server() noexcept
{
    if (srv == nullptr || srv->connecting)
        return;
    if (proxy->defer_send(this, true))
        return;
    while (!req_out.empty()) {
        ssize_t n = req_out.write_to(srv->fd.get());
        if (!node_sent(n) || n == -EAGAIN)
            return;
    }
    node_flushed();
}

bool
ClientConn::node_sent(ssize_t n) noexcept
{
    if (n == -EAGAIN) {
        ev_io_start(proxy->loop(), &srv->wio);
        return true;
    }
    if (n < 0) {
        ev_io_stop(proxy->loop(), &srv->wio);
        // The node may have answered and closed (e.g. refusing the
        // body): read what it sent before deciding.
        server_failed(static_cast<int>(-n), false);
        return false;
    }
    req_sent_any = true;
    proxy->table().node(node).bytes_out.fetch_add(static_cast<uint64_t>(n),
                                                  std::memory_order_relaxed);
    return true;
}

void
ClientConn::node_flushed() noexcept
{
    ev_io_stop(proxy->loop(), &srv->wio);
    if (!req_done && !in.empty())
        feed_body();
    else
        update_client_read();
}

void
ClientConn::server_writable() noexcept
{
    if (srv->connecting) {
        int err = finish_connect(srv->fd.get());
        if (err != 0) {
            server_failed(err, false);
            return;
        }
        srv->connecting = false;
        server_connected();
        return;
    }
    flush_server();
}

void
ClientConn::server_failed(int err, bool timeout) noexcept
{
    if (timeout && !srv->connecting && !out.empty() &&
        !ev_is_active(&srv->rio)) {
        // The node is not read because the client does not take the
        // response: the node is not the one being slow (send_timeout
        // deals with the client).
        ev_timer_again(proxy->loop(), &srv->timer);
        return;
    }
    ShmNode& sn = proxy->table().node(node);
    const BalancerdConfig& cfg = proxy->config();
    const char* why = timeout ? "timed out"
                      : err   ? std::strerror(err)
                              : "connection closed";
    if (srv->connecting) {
        sn.connect_fails.fetch_add(1, std::memory_order_relaxed);
        if (timeout)
            sn.timeouts.fetch_add(1, std::memory_order_relaxed);
        proxy->table().passive_failure(node, cfg.passive_fall, cfg.passive_hold,
                                       timeout ? "connect timeout" : why);
        log_info("%s/%s: connect: %s", sn.pool, sn.name, why);
        retry_or_fail(timeout, why);
        return;
    }
    if (!resp_any) {
        if (timeout) {
            sn.timeouts.fetch_add(1, std::memory_order_relaxed);
            sn.errors.fetch_add(1, std::memory_order_relaxed);
            proxy->table().passive_failure(
                node, cfg.passive_fall, cfg.passive_hold, "response timeout");
            error_response(504, "node did not answer in time",
                           "server-timeout");
            return;
        }
        bool resendable = idempotent && !has_body;
        if (srv->reused && !reuse_retry_done && resendable) {
            // A keep-alive connection the node closed just as we reused
            // it: the request never got a chance; send it on a new one.
            reuse_retry_done = true;
            proxy->close_server(srv);
            srv = nullptr;
            req_out.clear();
            req_out.append(head);
            attempt(node);
            return;
        }
        sn.errors.fetch_add(1, std::memory_order_relaxed);
        if (resendable) {
            log_info("%s/%s: %s before answering", sn.pool, sn.name, why);
            retry_or_fail(false, why);
            return;
        }
        error_response(502, "node closed the connection without answering",
                       "server-error");
        return;
    }
    sn.errors.fetch_add(1, std::memory_order_relaxed);
    if (timeout)
        sn.timeouts.fetch_add(1, std::memory_order_relaxed);
    error_response(timeout ? 504 : 502,
                   timeout ? "node stopped answering" : "truncated response",
                   timeout ? "server-timeout" : "server-error");
}

void
ClientConn::retry_or_fail(bool timeout, const char* why) noexcept
{
    if (srv != nullptr) {
        proxy->close_server(srv);
        srv = nullptr;
    }
    if (nexcluded < sizeof excluded / sizeof excluded[0])
        excluded[nexcluded++] = node;
    int failed = node;
    release_node();
    const PoolConfig& pc = *proxy->pool().config;
    if (retries < pc.retries) {
        bool saturated = false;
        int n = proxy->pick_http(*this, &saturated);
        if (n >= 0) {
            ++retries;
            proxy->table().node(failed).retries.fetch_add(
                1, std::memory_order_relaxed);
            if (req_sent_any) {
                req_out.clear();
                req_out.append(head);
                req_sent_any = false;
            }
            node = n;
            attempt(n);
            return;
        }
    }
    // As HAProxy does: 503 whenever no node could be connected to, a
    // timeout included; 504 is kept for a node that took the request and
    // then did not answer.
    std::string text = std::string("no node could take the request (") + why +
                       ")";
    error_response(503, text.c_str(),
                   timeout ? "connect-timeout" : "connect-failed", true);
}

}  // namespace sj
