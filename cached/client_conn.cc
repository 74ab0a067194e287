#include "cached/client_conn.h"

#include <openssl/err.h>
#include <sys/socket.h>
#include <time.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstdio>
#include <cstring>
#include <ctime>

#include "cached/fetch.h"
#include "cached/mc_tier.h"
#include "cached/tier_codec.h"
#include "cached/worker.h"
#include "common/check.h"
#include "common/http_writer.h"
#include "common/log.h"

namespace sj {

namespace {

constexpr double kPollInterval = 0.005;
// A follower of a fill of its own worker is woken as the fill grows; it
// polls only as a safety net.
constexpr double kLocalFillPoll = 0.1;
// A request waiting on a fetch of another worker that will wake it polls
// as a safety net only (a wake-up datagram can be lost).
constexpr double kRemotePoll = 0.1;
// The most bytes a response may queue for a slow client before the origin
// is paused; beyond the Buffer limit the client is dropped.
constexpr size_t kOutLimit = 8u << 20;

const char*
served_name(Served how) noexcept
{
    switch (how) {
    case Served::kHit: return "HIT";
    case Served::kStale: return "STALE";
    case Served::kStaleError: return "STALE-ERROR";
    case Served::kStaleDown: return "STALE-DOWN";
    case Served::kRevalidated: return "REVALIDATED";
    case Served::kCollapsed: return "HIT-COLLAPSED";
    case Served::kTier: return "HIT-TIER";
    }
    return "-";
}

void
append_uint(std::string* out, uint64_t v)
{
    char buf[24];
    int n = std::snprintf(buf, sizeof buf, "%llu",
                          static_cast<unsigned long long>(v));
    out->append(buf, static_cast<size_t>(n));
}

// Fields a 304 carries from the stored response (RFC 9110 §15.4.5).
bool
not_modified_field(std::string_view n) noexcept
{
    static constexpr std::string_view kNames[] = {
        "cache-control", "content-location", "date", "etag", "expires", "vary"};
    for (std::string_view k : kNames)
        if (http_iequals(n, k))
            return true;
    return false;
}

}  // namespace

ClientConn::ClientConn(CacheWorker* w, UniqueFd fd, std::string peer,
                       std::string peer_ip, SSL_CTX* tls)
    : w_(w), fd_(std::move(fd)), peer_(std::move(peer)),
      peer_ip_(std::move(peer_ip)),
      in_(w->config().limits.header_total + Buffer::kReadChunk * 2),
      out_(kOutLimit), req_(HttpParserType::kRequest, w->config().limits)
{
    req_.set_max_body(w->config().max_body);
    if (tls != nullptr) {
        ssl_.reset(SSL_new(tls));
        if (ssl_) {
            SSL_set_fd(ssl_.get(), fd_.get());
            SSL_set_accept_state(ssl_.get());
            handshaking_ = true;
        }
    }
}

ClientConn::~ClientConn()
{
    stop_watchers();
}

void
ClientConn::start() noexcept
{
    struct ev_loop* loop = w_->loop();
    ev_io_init(&rio_, on_read_cb, fd_.get(), EV_READ);
    ev_io_init(&wio_, on_write_cb, fd_.get(), EV_WRITE);
    ev_init(&timer_, on_timer_cb);
    ev_init(&poll_, on_poll_cb);
    rio_.data = wio_.data = timer_.data = poll_.data = this;
    ev_io_start(loop, &rio_);
    reading_ = true;
    // A TLS handshake gets the header timeout: it is the first part of
    // the first request as far as a slow client is concerned.
    arm_timer(ssl_ ? w_->config().header_timeout : w_->config().idle_timeout);
}

void
ClientConn::stop_watchers() noexcept
{
    struct ev_loop* loop = w_->loop();
    ev_io_stop(loop, &rio_);
    ev_io_stop(loop, &wio_);
    ev_timer_stop(loop, &timer_);
    ev_timer_stop(loop, &poll_);
}

bool
ClientConn::idle() const noexcept
{
    return state_ == State::kIdle && !req_.in_progress() && out_.empty();
}

void
ClientConn::read_pending() noexcept
{
    if (!closed_ && reading_)
        on_read();
}

void
ClientConn::arm_timer(double secs) noexcept
{
    timer_.repeat = secs;
    ev_timer_again(w_->loop(), &timer_);
}

void
ClientConn::on_read_cb(struct ev_loop*, ev_io* w, int) noexcept
{
    static_cast<ClientConn*>(w->data)->w_->ready().push(
        w, [](ev_io* r) noexcept {
            static_cast<ClientConn*>(r->data)->on_read();
        });
}

void
ClientConn::on_write_cb(struct ev_loop*, ev_io* w, int) noexcept
{
    static_cast<ClientConn*>(w->data)->on_writable();
}

void
ClientConn::on_timer_cb(struct ev_loop*, ev_timer* w, int) noexcept
{
    auto* c = static_cast<ClientConn*>(w->data);
    if (c->body_pending_ && c->state_ == State::kStream) {
        if (c->fetch_ != nullptr && c->fetch_->body_full()) {
            // The origin is the slow one; its own timeout bounds that.
            c->arm_timer(c->w_->config().idle_timeout);
            return;
        }
        c->abort_body(408, "request body timeout");
        return;
    }
    if (c->state_ == State::kHead && !c->handshaking_) {
        // Slowloris: a head that never completes holds a connection.
        c->refuse(408, "request header timeout");
        return;
    }
    if (c->state_ == State::kWaitFetch || c->state_ == State::kWaitOther ||
        c->state_ == State::kWaitTier ||
        (c->state_ == State::kStream && c->out_.empty()))
        return;  // the origin's timeouts bound these
    log_debug("client %s: timed out", c->peer_.c_str());
    c->close();
}

void
ClientConn::on_poll_cb(struct ev_loop*, ev_timer* w, int) noexcept
{
    auto* c = static_cast<ClientConn*>(w->data);
    c->end_remote_wait();
    if (c->body_pending_) {
        c->feed_body();
        c->flush();
        return;
    }
    if (c->following_) {
        c->flush();
        return;
    }
    if (c->state_ != State::kWaitOther)
        return;
    if (ev_now(c->w_->loop()) >= c->wait_until_) {
        // The other fetch takes too long: go to the origin ourselves.
        c->no_collapse_ = true;
    }
    c->lookup();
}

// ---------------------------------------------------------------- I/O

bool
ClientConn::handshake() noexcept
{
    ERR_clear_error();
    int r = SSL_do_handshake(ssl_.get());
    if (r == 1) {
        handshaking_ = false;
        ev_io_stop(w_->loop(), &wio_);
        arm_timer(w_->config().idle_timeout);
        return true;
    }
    int e = SSL_get_error(ssl_.get(), r);
    if (e == SSL_ERROR_WANT_READ) {
        ev_io_stop(w_->loop(), &wio_);
        return false;
    }
    if (e == SSL_ERROR_WANT_WRITE) {
        ev_io_start(w_->loop(), &wio_);
        return false;
    }
    log_debug("client %s: TLS handshake failed: %s", peer_.c_str(),
              ssl_error_string().c_str());
    close();
    return false;
}

ssize_t
ClientConn::do_read() noexcept
{
    if (!ssl_)
        return in_.read_from(fd_.get());
    ssize_t total = 0;
    // OpenSSL may hold decrypted bytes the socket no longer signals:
    // read until it wants more from the network or our buffer is full.
    for (int i = 0; i < 16; ++i) {
        if (!in_.ensure(4096))
            return total > 0 ? total : -ENOBUFS;
        ERR_clear_error();
        int r = SSL_read(
            ssl_.get(), in_.write_ptr(),
            static_cast<int>(std::min<size_t>(in_.writable(), INT_MAX)));
        if (r > 0) {
            in_.commit(static_cast<size_t>(r));
            total += r;
            continue;
        }
        int e = SSL_get_error(ssl_.get(), r);
        if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
            return total > 0 ? total : -EAGAIN;
        if (e == SSL_ERROR_ZERO_RETURN)
            return total > 0 ? total : 0;
        return total > 0 ? total : -EIO;
    }
    return total;
}

ssize_t
ClientConn::do_writev(const struct iovec* iov, int n) noexcept
{
    if (!ssl_) {
        struct msghdr mh {};
        mh.msg_iov = const_cast<struct iovec*>(iov);
        mh.msg_iovlen = static_cast<size_t>(n);
        for (;;) {
            ssize_t r = ::sendmsg(fd_.get(), &mh, MSG_NOSIGNAL);
            if (r >= 0)
                return r;
            if (errno == EINTR)
                continue;
            return -errno;
        }
    }
    ssize_t total = 0;
    for (int i = 0; i < n; ++i) {
        if (iov[i].iov_len == 0)
            continue;
        ERR_clear_error();
        int len = static_cast<int>(std::min<size_t>(iov[i].iov_len, INT_MAX));
        int r = SSL_write(ssl_.get(), iov[i].iov_base, len);
        if (r > 0) {
            total += r;
            if (r < len)
                return total;
            continue;
        }
        int e = SSL_get_error(ssl_.get(), r);
        if (e == SSL_ERROR_WANT_WRITE || e == SSL_ERROR_WANT_READ)
            return total > 0 ? total : -EAGAIN;
        return total > 0 ? total : -EIO;
    }
    return total;
}

void
ClientConn::on_read() noexcept
{
    if (closed_)
        return;
    if (handshaking_ && !handshake())
        return;
    ssize_t n = do_read();
    if (n == -EAGAIN)
        return;
    if (n == 0) {
        if (req_.in_progress())
            log_debug("client %s: closed inside a request", peer_.c_str());
        if (body_pending_) {
            // What is buffered may still complete the body.
            body_eof_ = true;
            ev_io_stop(w_->loop(), &rio_);
            reading_ = false;
            feed_body();
            return;
        }
        if (state_ == State::kIdle || state_ == State::kHead) {
            close();
            return;
        }
        // Half-closed while we answer: finish the answer, then close.
        close_after_ = true;
        ev_io_stop(w_->loop(), &rio_);
        reading_ = false;
        return;
    }
    if (n == -ENOBUFS) {
        if (state_ == State::kIdle || state_ == State::kHead) {
            refuse(431, "request header too large");
            return;
        }
        // Pipelined requests filled the buffer: read again later.
        ev_io_stop(w_->loop(), &rio_);
        reading_ = false;
        return;
    }
    if (n < 0) {
        log_debug("client %s: read: %s", peer_.c_str(),
                  std::strerror(static_cast<int>(-n)));
        close();
        return;
    }
    process();
}

void
ClientConn::on_writable() noexcept
{
    if (closed_)
        return;
    if (handshaking_) {
        if (handshake())
            on_read();
        return;
    }
    flush();
}

void
ClientConn::flush() noexcept
{
    if (closed_)
        return;
    struct ev_loop* loop = w_->loop();
    while (!out_.empty()) {
        struct iovec iov = {const_cast<char*>(out_.data()), out_.size()};
        ssize_t n = do_writev(&iov, 1);
        if (n == -EAGAIN) {
            if (!ev_is_active(&wio_)) {
                ev_io_start(loop, &wio_);
                arm_timer(w_->config().idle_timeout);
            }
            return;
        }
        if (n <= 0) {
            close();
            return;
        }
        out_.consume(static_cast<size_t>(n));
        bytes_out_ += static_cast<uint64_t>(n);
        w_->counters().bytes_out.fetch_add(static_cast<uint64_t>(n),
                                           std::memory_order_relaxed);
    }
    if (state_ == State::kSendHit) {
        while (head_off_ < head_.size() || body_off_ < body_end_) {
            // A followed fill: send what has arrived, then wait for more.
            uint64_t end = following_
                               ? std::min(body_end_, send_ref_->available())
                               : body_end_;
            if (following_ && head_off_ == head_.size() && body_off_ >= end) {
                follow_starved();
                return;
            }
            struct iovec iov[32];
            int k = 0;
            if (head_off_ < head_.size())
                iov[k++] = {head_.data() + head_off_, head_.size() - head_off_};
            if (body_off_ < end)
                k += static_cast<int>(send_ref_->body_iov(
                    body_off_, end - body_off_, iov + k, 32 - k));
            ssize_t n = do_writev(iov, k);
            if (n == -EAGAIN) {
                if (!ev_is_active(&wio_)) {
                    ev_io_start(loop, &wio_);
                    arm_timer(w_->config().idle_timeout);
                }
                return;
            }
            if (n <= 0) {
                close();
                return;
            }
            auto left = static_cast<uint64_t>(n);
            bytes_out_ += left;
            w_->counters().bytes_out.fetch_add(left, std::memory_order_relaxed);
            size_t h = std::min<uint64_t>(left, head_.size() - head_off_);
            head_off_ += h;
            left -= h;
            body_off_ += left;
        }
        ref_.reset();
        hot_ref_.reset();
        send_ref_ = nullptr;
        end_follow();
        ev_io_stop(loop, &wio_);
        finish_request();
        return;
    }
    ev_io_stop(loop, &wio_);
    if (state_ == State::kStream && fetch_ != nullptr)
        fetch_->resume();
    if (close_after_ && (state_ == State::kIdle || state_ == State::kHead ||
                         state_ == State::kClosing)) {
        // Half-close first so a client still sending sees our answer
        // rather than a reset.
        ::shutdown(fd_.get(), SHUT_WR);
        close();
        return;
    }
    if (state_ == State::kIdle && in_.empty()) {
        // Keep the usual read buffer between requests (freeing it would
        // cost a free and a malloc per hit); give back what a large
        // request or a streamed response made grow.
        if (in_.capacity() > 2 * Buffer::kReadChunk)
            in_.release_memory();
        if (out_.capacity() > 0)
            out_.release_memory();
        if (w_->shutting_down())
            close();
    }
}

void
ClientConn::follow_starved() noexcept
{
    struct ev_loop* loop = w_->loop();
    ev_io_stop(loop, &wio_);
    ev_timer_stop(loop, &timer_);
    if (send_ref_->fill_state() != FillState::kDiscarded) {
        // The fill's own origin timeout bounds this wait; a writer that
        // dies has its fill discarded by the parent. A fetch of this
        // worker wakes us as it appends; others' fills are polled.
        if (!fill_waiting_) {
            w_->wait_fill(follow_key_, this);
            fill_waiting_ = true;
        }
        double interval = kPollInterval;
        if (w_->filling_here(follow_key_)) {
            interval = kLocalFillPoll;
        } else if (w_->watch_slot() >= 0 &&
                   pass_watch(w_->shared(), key_hash(primary_),
                              w_->watch_slot())) {
            // Watching first, then looking: a move the filler made
            // before it saw our bit is seen here.
            wait_remote(key_hash(primary_));
            interval = send_ref_->available() > body_off_ ||
                               send_ref_->fill_state() != FillState::kFilling
                           ? 0.
                           : kRemotePoll;
        }
        ev_timer_set(&poll_, interval, 0.);
        ev_timer_start(loop, &poll_);
        return;
    }
    // The response was announced whole and cannot be: closing is the only
    // way to tell the client.
    log_info("client %s: %s: the fill it followed failed; closing",
             peer_.c_str(), primary_.c_str());
    ref_.reset();
    send_ref_ = nullptr;
    end_follow();
    keep_ = false;
    close_after_ = true;
    log_cache_ = "TRUNCATED";
    finish_request();
}

void
ClientConn::end_follow() noexcept
{
    if (fill_waiting_) {
        w_->unwait_fill(follow_key_, this);
        fill_waiting_ = false;
    }
    following_ = false;
    end_remote_wait();
}

void
ClientConn::wait_remote(uint64_t hash)
{
    end_remote_wait();
    w_->wait_remote(hash, this);
    remote_waiting_ = true;
    remote_hash_ = hash;
}

void
ClientConn::end_remote_wait() noexcept
{
    if (remote_waiting_) {
        w_->unwait_remote(remote_hash_, this);
        remote_waiting_ = false;
    }
}

void
ClientConn::remote_wake() noexcept
{
    remote_waiting_ = false;  // the worker dropped the registration
    ev_timer_stop(w_->loop(), &poll_);
    ev_timer_set(&poll_, 0., 0.);
    ev_timer_start(w_->loop(), &poll_);
}

void
ClientConn::follow_wake() noexcept
{
    fill_waiting_ = false;
    ev_timer_stop(w_->loop(), &poll_);
    ev_timer_set(&poll_, 0., 0.);
    ev_timer_start(w_->loop(), &poll_);
}

void
ClientConn::close() noexcept
{
    if (closed_)
        return;
    closed_ = true;
    state_ = State::kClosing;
    if (fetch_ != nullptr) {
        Fetch* f = fetch_;
        fetch_ = nullptr;
        f->detach(this);
    }
    stop_watchers();
    ref_.reset();
    hot_ref_.reset();
    send_ref_ = nullptr;
    end_follow();
    w_->close_client(this);
}

// ---------------------------------------------------------------- requests

void
ClientConn::process() noexcept
{
    if (in_process_ || closed_)
        return;
    if (body_pending_) {
        feed_body();
        flush();
        return;
    }
    in_process_ = true;
    while (!closed_ && !close_after_ &&
           (state_ == State::kIdle || state_ == State::kHead) && !in_.empty()) {
        bool was_idle = !req_.in_progress();
        size_t used = req_.feed(in_.data(), in_.size());
        if (was_idle && req_.in_progress()) {
            state_ = State::kHead;
            t_start_ = ev_now(w_->loop());
            arm_timer(w_->config().header_timeout);
        }
        for (std::string_view span : req_.body())
            body_.append(span);
        in_.consume(used);
        if (req_.headers_done() && !req_.done() && !continued_ &&
            !req_.failed()) {
            // RFC 9110 §10.1.1: a client that asked to wait gets told to
            // go on, since cached takes the body as it comes.
            continued_ = true;
            auto expect = req_.message().header("expect");
            if (expect && http_iequals(*expect, "100-continue"))
                out_.append(std::string_view("HTTP/1.1 100 Continue\r\n\r\n"));
        }
        if (req_.failed()) {
            refuse(http_error_status(req_.error()), req_.error_message());
            break;
        }
        if (!req_.done()) {
            if (req_.headers_done() && req_.message().has_body() &&
                state_ == State::kHead) {
                // The rest of the body is forwarded as it arrives rather
                // than read whole first (max_body still limits it).
                body_pending_ = true;
                resp_started_ = false;
                body_eof_ = false;
                handle_request();
                break;
            }
            if (used == 0)
                break;
            continue;
        }
        if (was_idle)
            t_start_ = ev_now(w_->loop());
        handle_request();
    }
    in_process_ = false;
    if (closed_)
        return;
    if (body_pending_) {
        feed_body();
        if (!closed_)
            flush();
        return;
    }
    bool want_read = !close_after_ &&
                     (state_ == State::kIdle || state_ == State::kHead) &&
                     in_.room() > 0;
    if (want_read && !reading_) {
        ev_io_start(w_->loop(), &rio_);
        reading_ = true;
        if (ssl_ && SSL_pending(ssl_.get()) > 0)
            ev_feed_event(w_->loop(), &rio_, EV_READ);
    }
    flush();
}

void
ClientConn::handle_request() noexcept
{
    const HttpMessage& m = req_.message();
    w_->counters().requests.fetch_add(1, std::memory_order_relaxed);
    ++served_;
    head_req_ = m.is_head_request();
    http10_ = m.version_minor == 0;
    keep_ = m.keep_alive && !w_->shutting_down();
    status_ = 0;
    bytes_out_ = 0;
    log_cache_ = "-";
    origin_time_ = -1;
    no_collapse_ = false;
    wait_until_ = 0;
    wait_since_ = 0;
    tier_asked_ = false;
    tier_names_.clear();
    tier_nonce_.clear();
    tier_variant_ = false;
    auto host = m.header("host");
    primary_.clear();
    cache_key(host ? *host : std::string_view(), m.target(), w_->key_policy(),
              &primary_);
    if (m.method() == "PURGE") {
        purge();
        return;
    }
    if (m.upgrade || m.method() == "CONNECT") {
        // cached relays HTTP messages, not tunnels (WebSocket, CONNECT).
        keep_ = false;
        simple_response(501, "upgrades and CONNECT are not supported", true);
        return;
    }
    req_cc_ = cache_control_of(m);
    auth_ = m.header("authorization").has_value();
    bool safe = m.method() == "GET" || m.method() == "HEAD";
    // A body still arriving goes where it can be forwarded: the origin.
    if (safe && !body_pending_ && !needs_origin_precondition(m))
        lookup();
    else
        go_origin(false, ObjectRef());
}

void
ClientConn::purge() noexcept
{
    const HttpMessage& m = req_.message();
    if (!w_->purge_allowed(peer_ip_)) {
        log_notice("client %s: PURGE %.*s refused: not in purge_allow",
                   peer_.c_str(), static_cast<int>(m.target().size()),
                   m.target().data());
        simple_response(403, "PURGE is not allowed from this address", false);
        return;
    }
    size_t n = w_->purge_key(primary_);
    if (w_->tier() != nullptr)
        w_->tier()->remove(primary_);
    w_->counters().purges.fetch_add(1, std::memory_order_relaxed);
    log_info("client %s: PURGE %s: %zu objects", peer_.c_str(),
             primary_.c_str(), n);
    log_cache_ = "PURGE";
    simple_response(n ? 200 : 404, n ? "purged" : "not in the cache", false);
}

void
ClientConn::lookup() noexcept
{
    ev_timer_stop(w_->loop(), &poll_);
    const HttpMessage& m = req_.message();
    Store& st = w_->store();
    LookupStatus ls = LookupStatus::kMiss;
    bool waited = state_ == State::kWaitFetch || state_ == State::kWaitOther;
    int64_t now = wall_now();
    if (!auth_ && !waited) {
        if (std::shared_ptr<ObjectRef> hot = w_->hot_get(primary_)) {
            if (reuse_decision(stored_freshness(hot->meta(), now), req_cc_,
                               0) == Reuse::kFresh) {
                serve_hot(std::move(hot), Served::kHit);
                return;
            }
        }
    }
    ObjectRef ref = st.lookup(primary_, &ls);
    const std::string* looked_up = &primary_;
    if (ref && (ref.meta().flags & kStoredVaryIndex)) {
        tier_names_.assign(ref.meta().vary_names);
        tier_nonce_.assign(tier_nonce(ref.meta().headers));
        scratch_.clear();
        vary_values(m, ref.meta().vary_names, &scratch_);
        key_.clear();
        variant_key(primary_, scratch_, &key_);
        ref = st.lookup(key_, &ls);
        looked_up = &key_;
    }
    if (ref && auth_ && !(ref.meta().flags & kStoredAuthOk))
        ref.reset();  // RFC 9111 §3.5: the stored response did not allow it
    const CachedConfig& cfg = w_->config();
    auto grace = static_cast<int64_t>(cfg.stale_grace);
    if (ref) {
        StoredFreshness f = stored_freshness(ref.meta(), now);
        Reuse r = reuse_decision(f, req_cc_, 0);
        bool down = w_->shared()->origin_down.load(std::memory_order_relaxed);
        if (r == Reuse::kFresh) {
            // Variants and answers to credentials stay out of the table.
            if (!auth_ && ref.key() == primary_)
                w_->hot_put(primary_);
            serve(std::move(ref), waited ? Served::kCollapsed : Served::kHit,
                  0);
        } else if (r == Reuse::kStaleAllowed) {
            serve(std::move(ref), Served::kStale, 0);
        } else if (down && usable_on_error(f, req_cc_, grace)) {
            serve(std::move(ref), Served::kStaleDown, 0);
        } else if (r == Reuse::kStaleWhileRevalidate) {
            // RFC 5861 §3: serve it, refresh it in the background once.
            if (w_->fetch_for(primary_) == nullptr &&
                pass_lookup(w_->shared(), key_hash(primary_), nullptr) ==
                    PassKind::kNone) {
                ObjectRef copy = st.lookup(std::string(ref.key()));
                auto bg = std::make_unique<Fetch>(
                    w_, nullptr, Fetch::Kind::kBackground, m, std::string(),
                    primary_, std::move(copy));
                w_->start_fetch(std::move(bg));
            }
            serve(std::move(ref), Served::kStale, 0);
        } else if (req_cc_.only_if_cached) {
            simple_response(504, "not in the cache (only-if-cached)", false);
        } else {
            go_origin(true, std::move(ref));
        }
        return;
    }
    if (req_cc_.only_if_cached) {
        simple_response(504, "not in the cache (only-if-cached)", false);
        return;
    }
    if (ls == LookupStatus::kFilling && !auth_ && !no_collapse_ &&
        follow(*looked_up, now))
        return;
    if (!auth_ && !no_collapse_) {
        if (Fetch* f = w_->fetch_for(primary_)) {
            if (!waited)
                w_->counters().collapsed.fetch_add(1,
                                                   std::memory_order_relaxed);
            state_ = State::kWaitFetch;
            fetch_ = f;
            f->add_waiter(this);
            return;
        }
        uint64_t hash = key_hash(primary_);
        if (ls == LookupStatus::kFilling) {
            // Another worker is filling it, and this request cannot follow
            // the fill (a range, a conditional): it waits for the whole
            // object, woken when that fetch ends (not at every piece), and
            // claims no fetch of its own.
            wait_other(
                hash,
                w_->watch_slot() >= 0 &&
                    pass_watch(w_->shared(), hash, w_->watch_slot(), true),
                *looked_up, ls);
            return;
        }
        // Of several workers missing the key at once, one claims the
        // fetch and the others wait for what it stores.
        PassHeld held = pass_claim(w_->shared(), hash, cfg.collapse_wait,
                                   w_->pid(), wait_since_, w_->watch_slot());
        if (held.kind == PassKind::kFailed) {
            log_cache_ = "ERROR";
            simple_response(
                held.status,
                held.status == 504 ? "origin timed out" : "the origin failed",
                false);
            return;
        }
        if (held.kind == PassKind::kPass) {
            no_collapse_ = true;
        } else if (held.kind == PassKind::kFetching && held.pid != w_->pid()) {
            // Another worker is fetching it: the claim recorded us as a
            // watcher, to be woken as that fetch moves.
            wait_other(hash, w_->watch_slot() >= 0, *looked_up, ls);
            return;
        }
    }
    if (w_->tier() != nullptr && !auth_ && !tier_asked_) {
        ask_tier();
        return;
    }
    go_origin(true, ObjectRef());
}

void
ClientConn::wait_other(uint64_t hash, bool watched, const std::string& key,
                       LookupStatus was) noexcept
{
    if (wait_until_ == 0) {
        wait_until_ = ev_now(w_->loop()) + w_->config().collapse_wait;
        wait_since_ = now_ms();
        w_->counters().collapsed.fetch_add(1, std::memory_order_relaxed);
    }
    state_ = State::kWaitOther;
    double interval = kPollInterval;
    if (watched) {
        wait_remote(hash);
        // Watching first, then looking: a move the fetcher made before it
        // saw our bit is seen here.
        LookupStatus now = LookupStatus::kMiss;
        bool moved = static_cast<bool>(w_->store().lookup(key, &now)) ||
                     now != was;
        interval = moved ? 0.
                         : std::clamp(wait_until_ - ev_now(w_->loop()), 0.,
                                      kRemotePoll);
    }
    ev_timer_set(&poll_, interval, 0.);
    ev_timer_start(w_->loop(), &poll_);
}

void
ClientConn::ask_tier() noexcept
{
    tier_asked_ = true;
    state_ = State::kWaitTier;
    CacheWorker* w = w_;
    ClientConn* self = this;
    uint64_t id = id_;
    tier_variant_ = !tier_nonce_.empty();
    if (tier_variant_) {
        // The index is known: ask for this request's variant directly.
        scratch_.clear();
        vary_values(req_.message(), tier_names_, &scratch_);
        std::string tk;
        tier_variant_key(primary_, scratch_, tier_nonce_, &tk);
        variant_key(primary_, scratch_, &key_);
        w_->tier()->get(tk, [w, self, id](bool found, std::string_view v) {
            if (!w->client_alive(self, id))
                return;
            self->tier_result(found, v);
        });
        return;
    }
    w_->tier()->get(primary_, [w, self, id](bool found, std::string_view v) {
        if (!w->client_alive(self, id))
            return;
        self->tier_result(found, v);
    });
}

void
ClientConn::tier_result(bool found, std::string_view value) noexcept
{
    if (state_ != State::kWaitTier)
        return;
    ObjectMeta m;
    std::string_view body;
    bool ok = found && tier_decode(value, &m, &body);
    if (ok && (m.flags & kStoredVaryIndex) && !tier_variant_ &&
        !m.vary_names.empty()) {
        // A Vary index: keep it, then ask for this request's variant.
        StoreWriter iw = w_->store().begin_insert(primary_, m, 0);
        if (iw && iw.commit())
            w_->store_changed();
        tier_names_.assign(m.vary_names);
        tier_nonce_.assign(tier_nonce(m.headers));
        if (!tier_nonce_.empty()) {
            ask_tier();
            return;
        }
        ok = false;
    }
    const std::string* key = &primary_;
    if (ok && tier_variant_) {
        // Only the variant this request selects, never the index again.
        ok = !(m.flags & kStoredVaryIndex) && m.vary_names == tier_names_ &&
             m.vary_values == scratch_;
        key = &key_;
    } else if (ok && (m.flags & kStoredVaryIndex)) {
        ok = false;
    }
    if (ok) {
        StoreWriter sw = w_->store().begin_insert(*key, m, body.size());
        if (sw && sw.append(body.data(), body.size()) && sw.commit()) {
            w_->store_changed();
            ObjectRef ref = w_->store().lookup(*key);
            if (ref) {
                StoredFreshness f = stored_freshness(ref.meta(), wall_now());
                if (reuse_decision(f, req_cc_, 0) == Reuse::kFresh) {
                    w_->counters().tier_hits.fetch_add(
                        1, std::memory_order_relaxed);
                    serve(std::move(ref), Served::kTier, 0);
                    return;
                }
                go_origin(true, std::move(ref));
                return;
            }
        }
    }
    go_origin(true, ObjectRef());
}

void
ClientConn::go_origin(bool cacheable, ObjectRef stale) noexcept
{
    Fetch::Kind kind = !cacheable ? Fetch::Kind::kPass
                       : stale    ? Fetch::Kind::kRevalidate
                                  : Fetch::Kind::kCacheable;
    if (kind == Fetch::Kind::kPass || no_collapse_)
        w_->counters().passes.fetch_add(1, std::memory_order_relaxed);
    else if (kind == Fetch::Kind::kCacheable)
        w_->counters().misses.fetch_add(1, std::memory_order_relaxed);
    log_cache_ = kind == Fetch::Kind::kPass ? "PASS" : "MISS";
    auto f = std::make_unique<Fetch>(w_, this, kind, req_.message(),
                                     std::move(body_), primary_,
                                     std::move(stale));
    body_.clear();
    if (no_collapse_)
        f->set_collapsible(false);
    f->set_tier_nonce(tier_nonce_);
    if (body_pending_) {
        f->stream_body(req_.message().framing == BodyFraming::kChunked);
        arm_timer(w_->config().idle_timeout);
    }
    state_ = State::kStream;
    fetch_ = f.get();
    w_->start_fetch(std::move(f));
}

void
ClientConn::body_drained() noexcept
{
    if (!body_pending_ || closed_)
        return;
    // Not from inside the fetch's call: feeding may end the fetch.
    ev_timer_stop(w_->loop(), &poll_);
    ev_timer_set(&poll_, 0., 0.);
    ev_timer_start(w_->loop(), &poll_);
}

void
ClientConn::feed_body() noexcept
{
    while (body_pending_ && !closed_ && fetch_ != nullptr &&
           !fetch_->body_full() && !in_.empty()) {
        Fetch* f = fetch_;
        size_t used = req_.feed(in_.data(), in_.size());
        for (std::string_view span : req_.body()) {
            f->add_body(span);
            if (fetch_ != f)
                break;  // it ended (answered early or failed)
        }
        if (closed_)
            return;
        if (fetch_ != f) {
            // The answer is complete or on its way; the connection closes
            // after it (finish_request), the rest of the body unread.
            return;
        }
        in_.consume(used);
        arm_timer(w_->config().idle_timeout);
        if (req_.failed()) {
            abort_body(http_error_status(req_.error()), req_.error_message());
            return;
        }
        if (req_.done()) {
            body_pending_ = false;
            f->body_end();
            return;
        }
        if (used == 0)
            break;
    }
    if (closed_ || !body_pending_)
        return;
    if (body_eof_ && in_.empty()) {
        log_debug("client %s: closed inside a request body", peer_.c_str());
        close();
        return;
    }
    bool want = fetch_ != nullptr && !fetch_->body_full() && !body_eof_ &&
                !close_after_ && in_.room() > 0;
    if (want && !reading_) {
        ev_io_start(w_->loop(), &rio_);
        reading_ = true;
        if (ssl_ && SSL_pending(ssl_.get()) > 0)
            ev_feed_event(w_->loop(), &rio_, EV_READ);
    } else if (!want && reading_) {
        // Backpressure: the origin has not taken what we have.
        ev_io_stop(w_->loop(), &rio_);
        reading_ = false;
    }
}

void
ClientConn::abort_body(int status, const char* why) noexcept
{
    body_pending_ = false;
    if (fetch_ != nullptr) {
        Fetch* f = fetch_;
        fetch_ = nullptr;
        f->detach(this);
    }
    if (resp_started_) {
        log_info("client %s: %s", peer_.c_str(), why);
        close();
        return;
    }
    refuse(status, why);
}

// ---------------------------------------------------------------- answers

void
ClientConn::write_tail(std::string* h, bool has_body, uint64_t len) noexcept
{
    if (has_body) {
        h->append("Content-Length: ");
        append_uint(h, len);
        h->append("\r\n");
    }
    if (!keep_)
        h->append("Connection: close\r\n");
    else if (http10_)
        // An HTTP/1.0 client keeps the connection only if told so.
        h->append("Connection: keep-alive\r\n");
    h->append("\r\n");
}

void
ClientConn::build_hit(const ObjectRef& ref, Served how, int origin_status,
                      int64_t now) noexcept
{
    const HttpMessage& m = req_.message();
    const ObjectMeta& meta = ref.meta();
    const CachedConfig& cfg = w_->config();
    uint64_t size = ref.body_size();
    int64_t age = current_age(AgeInputs{meta.age_value, meta.date_value,
                                        meta.request_time, meta.response_time},
                              now);
    head_.clear();
    head_off_ = 0;
    body_off_ = 0;
    body_end_ = head_req_ ? 0 : size;
    int status = meta.status;
    bool has_body = true;
    std::string_view skip;  // a stored field replaced below
    ByteRange ranges[kMaxRanges];
    size_t nranges = 0;
    RangeResult rr = RangeResult::kIgnore;
    auto range = m.header("range");
    bool conditional = (status == 200 || status == 203) &&
                       evaluate_conditional(m, meta.etag, meta.last_modified,
                                            now) == Conditional::kNotModified;
    if (!conditional && status == 200 && range &&
        if_range_allows(m, meta.etag, meta.last_modified))
        rr = parse_range(*range, size, ranges, &nranges);

    if (conditional) {
        w_->counters().not_modified.fetch_add(1, std::memory_order_relaxed);
        http_write_status_line(&head_, 304);
        HeaderBlock hb(meta.headers);
        std::string_view n, v;
        while (hb.next(&n, &v))
            if (not_modified_field(n)) {
                head_.append(n);
                head_.append(": ");
                head_.append(v);
                head_.append("\r\n");
            }
        status = 304;
        has_body = false;
        body_end_ = 0;
    } else if (rr == RangeResult::kUnsatisfiable) {
        status = 416;
        http_write_status_line(&head_, 416);
        content_range_header(nullptr, size, &head_);
        body_end_ = 0;
        size = 0;
    } else if (rr == RangeResult::kSatisfiable && nranges == 1) {
        status = 206;
        http_write_status_line(&head_, 206);
        append_block_without(&head_, meta.headers, "content-range");
        content_range_header(&ranges[0], size, &head_);
        body_off_ = head_req_ ? 0 : ranges[0].first;
        body_end_ = head_req_ ? 0 : ranges[0].last + 1;
        size = ranges[0].last - ranges[0].first + 1;
    } else if (rr == RangeResult::kSatisfiable) {
        status = 206;
        http_write_status_line(&head_, 206);
        std::string_view ctype;
        HeaderBlock::find(meta.headers, "content-type", &ctype);
        std::vector<MultipartPiece> pieces;
        char boundary[40];
        std::snprintf(boundary, sizeof boundary, "sj%016llx",
                      static_cast<unsigned long long>(
                          key_hash(primary_) ^ static_cast<uint64_t>(now)));
        size = multipart_byteranges(ranges, nranges, ref.body_size(), ctype,
                                    boundary, &pieces);
        append_block_without(&head_, meta.headers, "content-type");
        head_.append("Content-Type: multipart/byteranges; boundary=");
        head_.append(boundary);
        head_.append("\r\n");
        mp_.clear();
        if (!head_req_)
            for (const MultipartPiece& p : pieces) {
                mp_ += p.text;
                if (p.has_range) {
                    size_t len = p.range.last - p.range.first + 1;
                    size_t at = mp_.size();
                    mp_.resize(at + len);
                    ref.copy_body(p.range.first, mp_.data() + at, len);
                }
            }
        body_end_ = 0;
    } else {
        http_write_status_line(&head_, status);
        head_.append(meta.headers);
    }
    (void)skip;
    head_.append("Age: ");
    append_uint(&head_, static_cast<uint64_t>(std::max<int64_t>(age, 0)));
    head_.append("\r\nVia: 1.1 ");
    head_.append(cfg.via);
    head_.append("\r\nCache-Status: ");
    CacheStatusInfo ci;
    ci.outcome = CacheOutcome::kHit;
    ci.ttl = meta.freshness_lifetime - age;
    switch (how) {
    case Served::kHit: break;
    case Served::kCollapsed: ci.collapsed = true; break;
    case Served::kTier: ci.detail = "shared-tier"; break;
    case Served::kStale:
        ci.outcome = CacheOutcome::kStaleHit;
        ci.detail = "stale";
        break;
    case Served::kStaleError:
        ci.outcome = CacheOutcome::kStaleHit;
        ci.detail = "stale-if-error";
        ci.fwd_status = origin_status;
        break;
    case Served::kStaleDown:
        ci.outcome = CacheOutcome::kStaleHit;
        ci.detail = "origin-down";
        break;
    case Served::kRevalidated:
        ci.outcome = CacheOutcome::kStale;
        ci.fwd_status = origin_status;
        break;
    }
    cache_status(cfg.via, ci, &head_);
    head_.append("\r\n");
    write_tail(&head_, has_body, status == 304 ? 0 : size);
    if (!mp_.empty() && status == 206 && !head_req_) {
        head_ += mp_;
        mp_.clear();
    }
    status_ = status;
}

void
ClientConn::serve(ObjectRef ref, Served how, int origin_status) noexcept
{
    WorkerCounters& wc = w_->counters();
    switch (how) {
    case Served::kHit:
    case Served::kCollapsed:
    case Served::kTier: wc.hits.fetch_add(1, std::memory_order_relaxed); break;
    case Served::kStale:
    case Served::kStaleError:
    case Served::kStaleDown:
        wc.stale.fetch_add(1, std::memory_order_relaxed);
        break;
    case Served::kRevalidated: break;
    }
    log_cache_ = served_name(how);
    build_hit(ref, how, origin_status, wall_now());
    ref_ = std::move(ref);
    send_ref_ = &ref_;
    if (body_end_ == 0) {
        ref_.reset();
        end_follow();
    }
    state_ = State::kSendHit;
    flush();
}

void
ClientConn::serve_hot(std::shared_ptr<ObjectRef> ref, Served how) noexcept
{
    w_->counters().hits.fetch_add(1, std::memory_order_relaxed);
    log_cache_ = served_name(how);
    build_hit(*ref, how, 0, wall_now());
    hot_ref_ = std::move(ref);
    send_ref_ = hot_ref_.get();
    if (body_end_ == 0) {
        hot_ref_.reset();
        send_ref_ = nullptr;
    }
    state_ = State::kSendHit;
    flush();
}

bool
ClientConn::follow(const std::string& key, int64_t now) noexcept
{
    // Only a plain request for the whole object: ranges and conditionals
    // are answered from the stored object, once it is complete.
    const HttpMessage& m = req_.message();
    for (const char* f : {"range", "if-none-match", "if-modified-since",
                          "if-match", "if-unmodified-since"})
        if (m.header(f))
            return false;
    ObjectRef ref = w_->store().follow(key);
    if (!ref || reuse_decision(stored_freshness(ref.meta(), now), req_cc_, 0) !=
                    Reuse::kFresh)
        return false;
    ev_timer_stop(w_->loop(), &poll_);
    if (state_ != State::kWaitFetch && state_ != State::kWaitOther)
        w_->counters().collapsed.fetch_add(1, std::memory_order_relaxed);
    following_ = true;
    follow_key_ = key;
    serve(std::move(ref), Served::kCollapsed, 0);
    return true;
}

void
ClientConn::follow_from(ObjectRef ref, const std::string& key,
                        uint64_t offset) noexcept
{
    fetch_ = nullptr;
    if (closed_)
        return;
    head_.clear();
    head_off_ = 0;
    body_off_ = offset;
    body_end_ = ref.body_size();
    ref_ = std::move(ref);
    send_ref_ = &ref_;
    following_ = true;
    follow_key_ = key;
    state_ = State::kSendHit;
    flush();
}

void
ClientConn::simple_response(int status, std::string_view text,
                            bool close) noexcept
{
    if (close)
        keep_ = false;
    std::string h;
    http_write_status_line(&h, status);
    h += "Content-Type: text/plain\r\n";
    std::string body(text);
    body += '\n';
    write_tail(&h, true, body.size());
    if (!head_req_)
        h += body;
    if (!out_.append(h)) {
        close_after_ = true;
        keep_ = false;
    }
    status_ = status;
    if (status >= 400 && status < 500)
        w_->counters().client_errors.fetch_add(1, std::memory_order_relaxed);
    finish_request();
}

void
ClientConn::refuse(int status, const char* why) noexcept
{
    log_info("client %s: %d %s: %s", peer_.c_str(), status,
             http_reason_phrase(status), why);
    std::string text = std::string(http_reason_phrase(status)) + ": " + why;
    head_req_ = false;
    simple_response(status, text, true);
}

void
ClientConn::stream_head(const std::string& head, bool has_body,
                        bool close_conn) noexcept
{
    (void)has_body;
    if (close_conn)
        keep_ = false;
    std::string h = head;
    resp_started_ = true;
    write_tail(&h, false, 0);
    if (!out_.append(h)) {
        close();
        return;
    }
    flush();
}

void
ClientConn::stream_body(const char* data, size_t len) noexcept
{
    if (closed_)
        return;
    if (!out_.append(data, len)) {
        log_info("client %s: not reading its response; closing", peer_.c_str());
        close();
        return;
    }
}

void
ClientConn::stream_end(bool ok) noexcept
{
    fetch_ = nullptr;
    if (closed_)
        return;
    if (!ok) {
        // The response was cut short: closing is the only way to tell.
        keep_ = false;
        close_after_ = true;
        log_cache_ = "TRUNCATED";
    }
    finish_request();
}

void
ClientConn::fetch_serve(ObjectRef ref, Served how, int origin_status) noexcept
{
    fetch_ = nullptr;
    if (closed_)
        return;
    serve(std::move(ref), how, origin_status);
}

void
ClientConn::fetch_error(int status, const char* why) noexcept
{
    fetch_ = nullptr;
    if (closed_)
        return;
    log_cache_ = "ERROR";
    simple_response(status, why, false);
}

void
ClientConn::fetch_finished(bool pass) noexcept
{
    fetch_ = nullptr;
    if (closed_ || state_ != State::kWaitFetch)
        return;
    if (pass)
        no_collapse_ = true;
    lookup();
}

void
ClientConn::finish_request() noexcept
{
    if (closed_)
        return;
    if (body_pending_) {
        // Answered before the request body ended: the rest of it cannot
        // be told from a next request without reading it all; close.
        body_pending_ = false;
        keep_ = false;
        ev_timer_stop(w_->loop(), &poll_);
    }
    resp_started_ = false;
    log_request();
    req_.reset();
    body_.clear();
    continued_ = false;
    state_ = State::kIdle;
    t_start_ = 0;
    if (!keep_)
        close_after_ = true;
    arm_timer(w_->config().idle_timeout);
    if (close_after_) {
        ev_io_stop(w_->loop(), &rio_);
        reading_ = false;
        flush();
        return;
    }
    if (!in_process_)
        process();
}

void
ClientConn::log_request() noexcept
{
    if (!w_->access_log().enabled())
        return;
    const HttpMessage& m = req_.message();
    static time_t last_sec = 0;
    static char date[40];
    time_t now = time(nullptr);
    if (now != last_sec) {
        struct tm tm;
        localtime_r(&now, &tm);
        std::strftime(date, sizeof date, "%d/%b/%Y:%H:%M:%S %z", &tm);
        last_sec = now;
    }
    auto quoted = [](std::string_view v) {
        std::string s;
        for (char c : v) {
            if (c == '"' || c == '\\')
                s += '\\';
            s += c;
        }
        return s.empty() ? std::string("-") : s;
    };
    auto ref = m.header("referer");
    auto ua = m.header("user-agent");
    char tail[160];
    double now_f = ev_now(w_->loop());
    std::snprintf(
        tail, sizeof tail, " cache=%s time=%.6f origin=%s pid=%d", log_cache_,
        t_start_ > 0 ? now_f - t_start_ : 0.0,
        origin_time_ >= 0 ? std::to_string(origin_time_).c_str() : "-",
        static_cast<int>(w_->pid()));
    std::string line =
        (peer_ip_.empty() ? std::string("-") : peer_ip_) + " - - [" + date +
        "] \"" + std::string(m.method()) + " " + std::string(m.target()) +
        " HTTP/" + std::to_string(m.version_major) + "." +
        std::to_string(m.version_minor) + "\" " + std::to_string(status_) +
        " " + std::to_string(bytes_out_) + " \"" + quoted(ref ? *ref : "") +
        "\" \"" + quoted(ua ? *ua : "") + "\"" + tail;
    w_->access_log().write(line);
}

}  // namespace sj
