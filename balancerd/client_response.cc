// The response half of a proxied request: relaying the node's response to
// the client, finishing a request, answering errors, the timers and the
// access log line.

#include <sys/socket.h>

#include <cerrno>
#include <cinttypes>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <initializer_list>
#include <string_view>

#include "balancerd/client_conn.h"
#include "balancerd/proxy.h"
#include "common/http_writer.h"
#include "common/log.h"

namespace sj {

namespace {

constexpr size_t kWatermark = 256 * 1024;
// Largest buffer an idle keep-alive connection keeps.
constexpr size_t kKeepCapacity = 32 * 1024;

// Appends the pieces to `b`; false (and `b` possibly partly written) when
// the buffer is over its limit.
bool
put_all(Buffer* b, std::initializer_list<std::string_view> parts) noexcept
{
    size_t total = 0;
    for (std::string_view p : parts)
        total += p.size();
    if (!b->ensure(total))
        return false;
    char* w = b->write_ptr();
    for (std::string_view p : parts) {
        std::memcpy(w, p.data(), p.size());
        w += p.size();
    }
    b->commit(total);
    return true;
}

// Appends the fields of `m` that are not hop-by-hop, as "name: value".
bool
put_fields(Buffer* b, const HttpMessage& m) noexcept
{
    HopFilter hop(m, false);
    bool ok = true;
    for (size_t i = 0; i < m.header_count() && ok; ++i) {
        std::string_view n = m.header_name(i);
        if (!hop.skip(n))
            ok = put_all(b, {n, ": ", m.header_value(i), "\r\n"});
    }
    return ok;
}

// "HTTP/1.1 NNN reason\r\n"; a missing reason gets the standard phrase.
bool
put_status_line(Buffer* b, int status, std::string_view reason) noexcept
{
    char code[4] = {static_cast<char>('0' + status / 100 % 10),
                    static_cast<char>('0' + status / 10 % 10),
                    static_cast<char>('0' + status % 10), ' '};
    if (reason.empty())
        reason = http_reason_phrase(status);
    return put_all(b, {"HTTP/1.1 ", std::string_view(code, 4), reason, "\r\n"});
}

int
status_class(int status) noexcept
{
    return status >= 100 && status < 600 ? status / 100 : 0;
}

}  // namespace

void
ClientConn::server_readable() noexcept
{
    ssize_t n = srv->in.read_from(srv->fd.get());
    if (n == -EAGAIN)
        return;
    if (n == -ENOBUFS) {
        ev_io_stop(proxy->loop(), &srv->rio);
        return;
    }
    if (n < 0) {
        server_failed(static_cast<int>(-n), false);
        return;
    }
    if (n == 0) {
        if (!resp_any) {
            server_failed(0, false);
            return;
        }
        if (!resp.finish()) {
            ShmNode& sn = proxy->table().node(node);
            log_info("%s/%s: truncated response to %s %s", sn.pool, sn.name,
                     method.c_str(), target.c_str());
            server_failed(0, false);
            return;
        }
        if (resp.done()) {
            // A body delimited by the close: complete now. (body() still
            // holds the previous feed's spans; nothing new arrived.)
            if (!resp_head_sent)
                begin_response();
            if (resp_chunk)
                out.append("0\r\n\r\n", 5);
            finish_request();
            return;
        }
        server_failed(0, false);
        return;
    }
    proxy->table().node(node).bytes_in.fetch_add(static_cast<uint64_t>(n),
                                                 std::memory_order_relaxed);
    if (!resp_any) {
        resp_any = true;
        ttfb = ev_now(proxy->loop()) - t_start;
        resp.set_request_method(method);
    }
    ev_timer_again(proxy->loop(), &srv->timer);
    relay_response();
}

bool
ClientConn::relay_response() noexcept
{
    for (;;) {
        if (srv->in.empty() && !resp.done())
            break;
        size_t used =
            srv->in.empty() ? 0 : resp.feed(srv->in.data(), srv->in.size());
        if (resp.failed()) {
            ShmNode& sn = proxy->table().node(node);
            log_warn("%s/%s: invalid response to %s %s: %s", sn.pool, sn.name,
                     method.c_str(), target.c_str(), resp.error_message());
            sn.errors.fetch_add(1, std::memory_order_relaxed);
            error_response(502, "invalid response from the node",
                           "bad-response");
            return false;
        }
        if (resp.headers_done() && !resp_head_sent) {
            int st = resp.message().status;
            if (st < 200) {
                if (st == 101 || !resp.done()) {
                    error_response(502, "unexpected protocol switch",
                                   "bad-response");
                    return false;
                }
                // RFC 9110 §15.2: an HTTP/1.0 client gets no 1xx.
                if (!http10) {
                    const HttpMessage& m = resp.message();
                    if (!put_status_line(&out, st, m.reason()) ||
                        !put_fields(&out, m) || !out.append("\r\n", 2)) {
                        abort("client-slow");
                        return false;
                    }
                }
                srv->in.consume(used);
                resp.reset();
                resp.set_request_method(method);
                continue;
            }
            begin_response();
        }
        bool ok = true;
        if (resp_head_sent) {
            size_t total = 0;
            for (auto s : resp.body())
                total += s.size();
            if (total > 0) {
                if (resp_chunk) {
                    char hdr[24];
                    int k = std::snprintf(hdr, sizeof hdr, "%zx\r\n", total);
                    ok = out.append(hdr, static_cast<size_t>(k));
                }
                for (auto s : resp.body())
                    ok = ok && out.append(s);
                if (resp_chunk)
                    ok = ok && out.append("\r\n", 2);
            }
        }
        srv->in.consume(used);
        if (!ok) {
            abort("client-slow");
            return false;
        }
        if (resp.done()) {
            if (resp_chunk)
                append_last_chunk(&out, resp.message());
            finish_request();
            return false;
        }
        if (used == 0)
            break;
    }
    if (out.size() > kWatermark)
        ev_io_stop(proxy->loop(), &srv->rio);
    flush();
    return true;
}

void
ClientConn::begin_response() noexcept
{
    using namespace std::string_view_literals;
    const HttpMessage& m = resp.message();
    status = m.status;
    // Written straight into `out`: no string is built per response.
    bool ok = put_status_line(&out, status, m.reason()) && put_fields(&out, m);
    resp_chunk = false;
    bool is_head = method == "HEAD"sv;
    bool bodyless = is_head || status == 204 || status == 304;
    if (!bodyless && (m.framing == BodyFraming::kChunked ||
                      m.framing == BodyFraming::kUntilClose)) {
        if (http10)
            close_after = true;  // a 1.0 client reads until the close
        else {
            resp_chunk = true;
            ok = ok && out.append("Transfer-Encoding: chunked\r\n"sv);
        }
    } else if (bodyless && m.framing == BodyFraming::kChunked && !http10 &&
               is_head) {
        ok = ok && out.append("Transfer-Encoding: chunked\r\n"sv);
    }
    if (!client_keep || proxy->shutting_down())
        close_after = true;
    if (insert_cookie)
        ok = ok &&
             put_all(&out, {"Set-Cookie: ", proxy->pool().config->sticky_cookie,
                            "=", node_name, "; Path=/; HttpOnly\r\n"});
    if (close_after)
        ok = ok && out.append("Connection: close\r\n"sv);
    else if (http10)
        ok = ok && out.append("Connection: keep-alive\r\n"sv);
    ok = ok && out.append("\r\n"sv);
    if (!ok) {
        abort("client-slow");
        return;
    }
    resp_head_sent = true;
    proxy->table().node(node).status[status_class(status)].fetch_add(
        1, std::memory_order_relaxed);
}

void
ClientConn::release_node() noexcept
{
    if (node < 0)
        return;
    proxy->table().release(node);
    node = -1;
    proxy->serve_queue();
}

void
ClientConn::finish_request() noexcept
{
    struct ev_loop* loop = proxy->loop();
    ShmNode& sn = proxy->table().node(node);
    bool reusable = resp.message().keep_alive && req_done && srv->in.empty() &&
                    !proxy->shutting_down() && !resp.message().upgrade;
    srv->client = nullptr;
    // park() restarts the timer as the idle timeout, close_server() stops
    // it: no stop here.
    if (reusable)
        proxy->park(srv);
    else
        proxy->close_server(srv);
    srv = nullptr;
    double total = ev_now(loop) - t_start;
    sn.requests.fetch_add(1, std::memory_order_relaxed);
    uint64_t us = static_cast<uint64_t>(total * 1e6);
    sn.time_sum_us.fetch_add(us, std::memory_order_relaxed);
    int b = 0;
    while (b < kHistBuckets - 1 && total * 1000.0 > kHistBoundsMs[b])
        ++b;
    sn.hist[b].fetch_add(1, std::memory_order_relaxed);
    proxy->table()
        .pool(proxy->pool().layout->slot)
        .requests.fetch_add(1, std::memory_order_relaxed);
    if (proxy->table().node(node).fails.load(std::memory_order_relaxed))
        proxy->table().passive_success(node);
    if (!req_done)
        close_after = true;  // the rest of its body cannot be skipped safely
    release_node();
    end = "ok";
    log_request();
    // Ready for the next request.
    req.reset();
    req.set_max_body(proxy->config().max_body);
    resp.reset();
    if (close_after) {
        state = State::kClosing;
        reading = false;
        ev_io_stop(loop, &rio);
        ev_timer_stop(loop, &timer);
        flush();
        return;
    }
    state = State::kIdle;
    arm_timer(proxy->config().idle_timeout);
    flush();
    if (state == State::kIdle && !in.empty())
        process();
    else if (state == State::kIdle)
        update_client_read();
}

void
ClientConn::error_response(int st, const char* why, const char* end_tag,
                           bool retry_after) noexcept
{
    struct ev_loop* loop = proxy->loop();
    log_info("client %s: %d %s: %s%s%s", peer.c_str(), st,
             http_reason_phrase(st), why, method.empty() ? "" : " for ",
             target.c_str());
    if (in_queue) {
        proxy->dequeue(this);
        queue_wait += ev_now(loop) - t_queue;
        ev_timer_stop(loop, &qtimer);
    }
    if (srv != nullptr) {
        srv->client = nullptr;
        proxy->close_server(srv);
        srv = nullptr;
    }
    if (node >= 0)
        proxy->table().node(node).status[0].fetch_add(
            1, std::memory_order_relaxed);
    release_node();
    status = st;
    end = end_tag;
    if (resp_head_sent) {
        abort(end_tag);
        return;
    }
    bool keep = req_done && client_keep && !proxy->shutting_down() &&
                st >= 502 && st <= 504;
    std::string body = std::string(http_reason_phrase(st)) + ": " + why + "\n";
    std::string r = "HTTP/1.1 " + std::to_string(st) + " " +
                    http_reason_phrase(st) +
                    "\r\nServer: sunjammer\r\nContent-Type: text/plain\r\n"
                    "Content-Length: " +
                    std::to_string(body.size()) + "\r\n";
    if (retry_after)
        r += "Retry-After: 1\r\n";
    r += keep ? (http10 ? "Connection: keep-alive\r\n" : "")
              : "Connection: close\r\n";
    r += "\r\n";
    if (method != "HEAD")
        r += body;
    out.append(r);
    log_request();
    req.reset();
    req.set_max_body(proxy->config().max_body);
    resp.reset();
    if (!keep) {
        state = State::kClosing;
        reading = false;
        ev_io_stop(loop, &rio);
        ev_timer_stop(loop, &timer);
        close_after = true;
        flush();
        return;
    }
    state = State::kIdle;
    arm_timer(proxy->config().idle_timeout);
    flush();
    if (state == State::kIdle && !in.empty())
        process();
    else if (state == State::kIdle)
        update_client_read();
}

void
ClientConn::abort(const char* end_tag) noexcept
{
    if (in_queue)
        proxy->dequeue(this);
    if (srv != nullptr) {
        srv->client = nullptr;
        proxy->close_server(srv);
        srv = nullptr;
    }
    release_node();
    if (state != State::kIdle && state != State::kClosing) {
        end = end_tag;
        if (status == 0)
            status = 0;
        log_request();
    }
    state = State::kClosing;
    proxy->close_client(this);
}

void
ClientConn::flush() noexcept
{
    if (proxy->defer_send(this, false))
        return;
    while (!out.empty()) {
        ssize_t n = out.write_to(fd.get());
        if (!client_sent(n))
            return;
        if (n == -EAGAIN)
            break;
    }
    client_flushed();
}

bool
ClientConn::client_sent(ssize_t n) noexcept
{
    struct ev_loop* loop = proxy->loop();
    if (n == -EAGAIN) {
        ev_io_start(loop, &wio);
        if (!ev_is_active(&stimer)) {
            ev_timer_set(&stimer, proxy->config().send_timeout, 0.);
            ev_timer_start(loop, &stimer);
        }
        return true;
    }
    if (n < 0) {
        abort("client-closed");
        return false;
    }
    bytes_out += static_cast<uint64_t>(n);
    last_sent = ev_now(loop);
    return true;
}

void
ClientConn::client_flushed() noexcept
{
    struct ev_loop* loop = proxy->loop();
    if (srv != nullptr && !srv->connecting && out.size() <= kWatermark / 2 &&
        state == State::kForward)
        ev_io_start(loop, &srv->rio);
    if (!out.empty())
        return;
    ev_io_stop(loop, &wio);
    if (ev_is_active(&stimer))
        ev_timer_stop(loop, &stimer);
    if (state == State::kClosing) {
        // Half-close first so a client still sending sees our answer
        // rather than a reset.
        ::shutdown(fd.get(), SHUT_WR);
        proxy->close_client(this);
        return;
    }
    if (state == State::kIdle) {
        // Buffers of a usual size stay for the next request on the
        // connection (allocating them again per request costs more than
        // the rest of relaying a small response); large ones go.
        if (out.capacity() > kKeepCapacity)
            out.release_memory();
        if (in.empty() && in.capacity() > kKeepCapacity)
            in.release_memory();
        if (proxy->shutting_down() && in.empty())
            proxy->close_client(this);
    }
}

void
ClientConn::batch_sent(bool to_node, ssize_t n) noexcept
{
    Buffer& buf = to_node ? req_out : out;
    if (n > 0)
        buf.consume(static_cast<size_t>(n));
    if (to_node) {
        if (!node_sent(n) || n == -EAGAIN)
            return;
        // Short: the rest once the socket has room again.
        if (!req_out.empty()) {
            node_sent(-EAGAIN);
            return;
        }
        node_flushed();
        return;
    }
    if (!client_sent(n))
        return;
    if (n > 0 && !out.empty())
        client_sent(-EAGAIN);
    client_flushed();
}

void
ClientConn::on_writable() noexcept
{
    flush();
}

void
ClientConn::on_timer() noexcept
{
    switch (state) {
    case State::kIdle: proxy->close_client(this); return;
    case State::kHead:
        error_response(408, "request header timeout", "header-timeout");
        return;
    case State::kClosing: proxy->close_client(this); return;
    default:
        if (!req_done) {
            error_response(408, "request body timeout", "body-timeout");
            return;
        }
    }
}

void
ClientConn::on_queue_timeout() noexcept
{
    proxy->table()
        .pool(proxy->pool().layout->slot)
        .queue_timeouts.fetch_add(1, std::memory_order_relaxed);
    error_response(503, "queue timeout", "queue-timeout", true);
}

void
ClientConn::on_send_timeout() noexcept
{
    if (out.empty())
        return;
    double limit = proxy->config().send_timeout;
    double stalled = ev_now(proxy->loop()) - last_sent;
    if (stalled < limit) {
        ev_timer_set(&stimer, limit - stalled, 0.);
        ev_timer_start(proxy->loop(), &stimer);
        return;
    }
    log_warn("client %s: took no response byte for %g s; closing", peer.c_str(),
             limit);
    proxy->table()
        .pool(proxy->pool().layout->slot)
        .send_timeouts.fetch_add(1, std::memory_order_relaxed);
    if (status == 0 && resp_head_sent)
        status = resp.message().status;
    abort("client-timeout");
}

void
ClientConn::log_request() noexcept
{
    AccessLog& al = proxy->access_log();
    if (al.enabled()) {
        double now = ev_now(proxy->loop());
        time_t secs = static_cast<time_t>(now);
        struct tm tm;
        gmtime_r(&secs, &tm);
        char ts[40];
        size_t k = std::strftime(ts, sizeof ts, "%Y-%m-%dT%H:%M:%S", &tm);
        std::snprintf(
            ts + k, sizeof ts - k, ".%03dZ",
            static_cast<int>((now - static_cast<double>(secs)) * 1000));
        auto sec = [](double v) {
            if (v < 0)
                return std::string("-");
            char b[32];
            std::snprintf(b, sizeof b, "%.3f", v);
            return std::string(b);
        };
        std::string line;
        line.reserve(256);
        line += ts;
        line += ' ';
        line += peer;
        line += " \"";
        line += method.empty() ? "-" : method;
        line += ' ';
        line += target.empty() ? "-" : target;
        line += http10 ? " HTTP/1.0\" " : " HTTP/1.1\" ";
        line += std::to_string(status);
        line += ' ';
        line += std::to_string(bytes_in);
        line += ' ';
        line += std::to_string(bytes_out + out.size());
        line += ' ';
        line += node_name.empty() ? "-" : node_name;
        line += ' ';
        line += std::to_string(retries);
        line += ' ';
        line += sec(queue_wait);
        line += ' ';
        line += sec(connect_time);
        line += ' ';
        line += sec(ttfb);
        line += ' ';
        line += sec(ev_now(proxy->loop()) - t_start);
        line += ' ';
        line += end;
        al.write(line);
    }
    ++served;
    // Per-request fields start again for the next request.
    method.clear();
    target.clear();
    node_name.clear();
    bytes_in = 0;
    bytes_out = 0;
    out_mark = 0;
    retries = 0;
    nexcluded = 0;
    queue_wait = 0;
    connect_time = -1;
    ttfb = -1;
    resp_any = resp_head_sent = resp_chunk = false;
    req_done = req_sent_any = false;
    reuse_retry_done = false;
    insert_cookie = false;
    timing_body = false;
    status = 0;
}

}  // namespace sj
