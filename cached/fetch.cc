#include "cached/fetch.h"

#include <sys/socket.h>
#include <time.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>

#include "cached/mc_tier.h"
#include "cached/tier_codec.h"
#include "cached/worker.h"
#include "common/check.h"
#include "common/http_writer.h"
#include "common/log.h"

namespace sj {

namespace {

// Above this many bytes waiting for a client, the origin is not read: a
// slow client must not make the worker buffer a whole response.
constexpr size_t kClientHighWater = 256 * 1024;
// Above this many request body bytes waiting for the origin, the client is
// not read: a slow origin must not make the worker buffer a whole upload.
constexpr size_t kBodyHighWater = 256 * 1024;

bool
hop_by_hop_request(std::string_view n) noexcept
{
    static constexpr std::string_view kNames[] = {
        "connection", "keep-alive",        "proxy-connection",
        "te",         "transfer-encoding", "upgrade",
        "trailer",    "content-length",    "x-forwarded-proto"};
    for (std::string_view k : kNames)
        if (http_iequals(n, k))
            return true;
    return false;
}

// Fields a cacheable fetch leaves out: the cache wants the whole, current
// object, and answers the client's conditionals and ranges itself.
bool
conditional_field(std::string_view n) noexcept
{
    static constexpr std::string_view kNames[] = {
        "if-none-match", "if-modified-since", "if-range", "range"};
    for (std::string_view k : kNames)
        if (http_iequals(n, k))
            return true;
    return false;
}

bool
listed_in_connection(const HttpMessage& m, std::string_view name) noexcept
{
    for (size_t i = 0; i < m.header_count(); ++i) {
        if (!http_iequals(m.header_name(i), "connection"))
            continue;
        std::string_view v = m.header_value(i);
        while (!v.empty()) {
            size_t comma = v.find(',');
            std::string_view t = v.substr(0, comma);
            while (!t.empty() && (t.front() == ' ' || t.front() == '\t'))
                t.remove_prefix(1);
            while (!t.empty() && (t.back() == ' ' || t.back() == '\t'))
                t.remove_suffix(1);
            if (http_iequals(t, name))
                return true;
            if (comma == std::string_view::npos)
                break;
            v.remove_prefix(comma + 1);
        }
    }
    return false;
}

}  // namespace

int64_t
wall_now() noexcept
{
    return static_cast<int64_t>(time(nullptr));
}

StoredFreshness
stored_freshness(const ObjectMeta& m, int64_t now) noexcept
{
    StoredFreshness f;
    f.lifetime = m.freshness_lifetime;
    f.age = current_age(
        AgeInputs{m.age_value, m.date_value, m.request_time, m.response_time},
        now);
    f.must_revalidate = (m.flags & kStoredMustRevalidate) != 0;
    f.no_cache = (m.flags & kStoredNoCache) != 0;
    f.stale_while_revalidate = m.stale_while_revalidate;
    f.stale_if_error = m.stale_if_error;
    return f;
}

void
append_block_without(std::string* out, std::string_view block,
                     std::string_view skip)
{
    HeaderBlock hb(block);
    std::string_view n, v;
    while (hb.next(&n, &v)) {
        if (http_iequals(n, skip))
            continue;
        out->append(n);
        out->append(": ");
        out->append(v);
        out->append("\r\n");
    }
}

Fetch::Fetch(CacheWorker* w, ClientConn* client, Kind kind,
             const HttpMessage& req, std::string body, std::string primary,
             ObjectRef stale)
    : w_(w), client_(client), kind_(kind), req_(req), body_(std::move(body)),
      primary_(std::move(primary)), hash_(key_hash(primary_)),
      stale_(std::move(stale)), resp_(HttpParserType::kResponse)
{
    req_cc_ = cache_control_of(req_);
    collapsible_ = kind_ == Kind::kCacheable && !req.header("authorization");
    if (client_ != nullptr)
        client_body_ = !client_->head_request();
}

Fetch::~Fetch()
{
    close_origin();
}

void
Fetch::close_origin() noexcept
{
    if (oc_ != nullptr) {
        w_->origin().close(oc_);
        oc_ = nullptr;
    }
}

void
Fetch::build_request() noexcept
{
    out_.clear();
    out_off_ = 0;
    bool full = kind_ != Kind::kPass;
    std::string_view method = req_.method();
    if (full && method == "HEAD")
        method = "GET";  // fetch the whole object, so it can be stored
    http_write_request_line(&out_, method, req_.target());
    std::string xff;
    for (size_t i = 0; i < req_.header_count(); ++i) {
        std::string_view n = req_.header_name(i);
        std::string_view v = req_.header_value(i);
        if (hop_by_hop_request(n) || listed_in_connection(req_, n))
            continue;
        if (full && conditional_field(n))
            continue;
        if (http_iequals(n, "x-forwarded-for")) {
            if (!xff.empty())
                xff += ", ";
            xff.append(v);
            continue;
        }
        out_.append(n);
        out_.append(": ");
        out_.append(v);
        out_.append("\r\n");
    }
    std::string ip = client_ ? client_->peer_ip() : std::string();
    if (!ip.empty()) {
        if (!xff.empty())
            xff += ", ";
        xff += ip;
    }
    if (!xff.empty())
        http_write_header(&out_, "X-Forwarded-For", xff);
    http_write_header(&out_, "X-Forwarded-Proto",
                      client_ && client_->tls() ? "https" : "http");
    out_ += "Via: 1.1 ";
    out_ += w_->config().via;
    out_ += "\r\n";
    if (stale_ && (kind_ == Kind::kRevalidate || kind_ == Kind::kBackground))
        revalidation_headers(stale_.meta().etag, stale_.meta().last_modified,
                             &out_);
    if (body_stream_ && body_chunked_) {
        out_ += "Transfer-Encoding: chunked\r\n";
    } else if (body_stream_) {
        http_write_header(&out_, "Content-Length", req_.content_length);
    } else if (!body_.empty() || req_.has_body()) {
        http_write_header(&out_, "Content-Length",
                          static_cast<uint64_t>(body_.size()));
    }
    http_end_head(&out_);
    if (body_stream_) {
        std::string first;
        first.swap(body_);
        add_body(first);
    } else {
        out_ += body_;
    }
    resp_.reset();
    resp_.set_request_method(method);
}

void
Fetch::stream_body(bool chunked) noexcept
{
    body_stream_ = true;
    body_chunked_ = chunked;
    body_done_ = false;
}

void
Fetch::add_body(std::string_view data) noexcept
{
    if (data.empty() || ended_)
        return;
    if (out_off_ > 0 && out_off_ == out_.size()) {
        out_.clear();
        out_off_ = 0;
    }
    if (body_chunked_) {
        scratch_.clear();
        http_write_chunk_header(&scratch_, data.size());
        out_ += scratch_;
        out_.append(data);
        out_ += "\r\n";
    } else {
        out_.append(data);
    }
    if (oc_ != nullptr && !oc_->connecting())
        send();
}

void
Fetch::body_end() noexcept
{
    if (body_done_ || ended_)
        return;
    body_done_ = true;
    if (body_chunked_)
        out_ += "0\r\n\r\n";
    if (oc_ != nullptr && !oc_->connecting())
        send();
}

bool
Fetch::body_full() const noexcept
{
    return out_.size() - out_off_ > kBodyHighWater;
}

bool
Fetch::idempotent() const noexcept
{
    // A streamed body is gone once sent: it cannot be sent again.
    if (body_stream_)
        return false;
    // A request the origin may have acted on is not sent twice.
    std::string_view m = req_.method();
    return m == "GET" || m == "HEAD" || m == "OPTIONS";
}

void
Fetch::start() noexcept
{
    t_start_ = ev_now(w_->loop());
    request_time_ = wall_now();
    if (collapsible_ && !marked_) {
        pass_set(w_->shared(), hash_, PassKind::kFetching,
                 w_->config().collapse_wait, w_->pid());
        marked_ = true;
    }
    build_request();
    w_->counters().origin_requests.fetch_add(1, std::memory_order_relaxed);
    int err = 0;
    oc_ = w_->origin().acquire(this, &err);
    if (oc_ == nullptr) {
        log_info("origin %s: connect: %s", w_->config().origin_text.c_str(),
                 std::strerror(err));
        fail(502, "origin refused the connection", true);
        return;
    }
    if (!oc_->connecting())
        send();
}

void
Fetch::origin_connected() noexcept
{
    send();
}

void
Fetch::origin_writable() noexcept
{
    send();
}

void
Fetch::send() noexcept
{
    while (out_off_ < out_.size()) {
        ssize_t n = ::send(oc_->fd(), out_.data() + out_off_,
                           out_.size() - out_off_, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno == EAGAIN) {
            oc_->want_write(true);
            oc_->arm(w_->config().origin_timeout);
            return;
        }
        if (n <= 0) {
            int e = errno;
            if (oc_->reused() && !retried_ && idempotent()) {
                // The origin closed the idle connection as we reused it.
                retried_ = true;
                close_origin();
                start();
                return;
            }
            log_info("origin %s: send: %s", w_->config().origin_text.c_str(),
                     std::strerror(e));
            fail(502, "origin send failed", true);
            return;
        }
        out_off_ += static_cast<size_t>(n);
    }
    oc_->want_write(false);
    oc_->want_read(!paused_);
    if (!body_done_) {
        // The rest of the body is the client's to send; the client's own
        // timeout bounds that wait. An early answer is still read.
        out_.clear();
        out_off_ = 0;
        oc_->disarm();
        if (client_ != nullptr)
            client_->body_drained();
        return;
    }
    oc_->arm(w_->config().origin_timeout);
}

void
Fetch::origin_failed(int err, bool timeout) noexcept
{
    if (timeout) {
        log_info("origin %s: timed out", w_->config().origin_text.c_str());
        fail(504, "origin timed out", true);
        return;
    }
    log_info("origin %s: connect: %s", w_->config().origin_text.c_str(),
             std::strerror(err));
    fail(502, "origin refused the connection", true);
}

void
Fetch::origin_readable() noexcept
{
    Buffer& in = oc_->in();
    ssize_t n = in.read_from(oc_->fd());
    if (n == -EAGAIN)
        return;
    if (n <= 0 && n != -ENOBUFS) {
        if (!got_any_ && oc_->reused() && !retried_ && out_off_ > 0 &&
            idempotent()) {
            retried_ = true;
            close_origin();
            start();
            return;
        }
        if (n == 0 && resp_.finish() && resp_.done()) {
            complete();
            return;
        }
        log_info("origin %s: closed inside a response",
                 w_->config().origin_text.c_str());
        fail(502, "origin closed the connection", true);
        return;
    }
    got_any_ = true;
    oc_->arm(w_->config().origin_timeout);
    while (!in.empty() && !ended_) {
        size_t used = resp_.feed(in.data(), in.size());
        if (resp_.failed()) {
            log_info("origin %s: bad response: %s",
                     w_->config().origin_text.c_str(), resp_.error_message());
            fail(502, "bad response from the origin", true);
            return;
        }
        if (resp_.done() && resp_.message().status >= 100 &&
            resp_.message().status < 200 && resp_.message().status != 101) {
            // An interim response (100 Continue, 103): not ours to relay.
            in.consume(used);
            std::string_view m = req_.method();
            resp_.reset();
            resp_.set_request_method(kind_ != Kind::kPass && m == "HEAD"
                                         ? std::string_view("GET")
                                         : m);
            continue;
        }
        if (resp_.headers_done() && !head_done_) {
            head_done_ = true;
            on_head();
            if (ended_)
                return;
        }
        for (std::string_view span : resp_.body())
            on_body(span);
        in.consume(used);
        if (resp_.done()) {
            complete();
            return;
        }
        if (used == 0)
            break;
    }
    if (client_ == nullptr)
        return;
    // What this read brought goes to the client now, not at the end of
    // the response. A client that does not keep up follows the fill from
    // the store if it is being stored (so the origin is read at its own
    // pace, for the object's other readers), else pauses the origin.
    client_->stream_flush();
    if (client_ != nullptr && oc_ != nullptr &&
        client_->pending() > kClientHighWater && !hand_to_store()) {
        paused_ = true;
        oc_->want_read(false);
    }
}

bool
Fetch::hand_to_store() noexcept
{
    if (!writer_ || chunk_out_ || !client_body_)
        return false;
    ObjectRef ref = w_->store().follow(store_key_);
    // The client has had, queued or sent, exactly the bytes stored so far.
    if (!ref || ref.body_size() <= writer_.size())
        return false;
    ClientConn* c = client_;
    client_ = nullptr;
    c->set_origin_time(ev_now(w_->loop()) - t_start_);
    c->follow_from(std::move(ref), store_key_, writer_.size());
    return true;
}

void
Fetch::resume() noexcept
{
    if (!paused_ || oc_ == nullptr)
        return;
    paused_ = false;
    oc_->want_read(true);
}

bool
Fetch::start_store(const HttpMessage& r, const CacheControl& rcc) noexcept
{
    const CachedConfig& cfg = w_->config();
    int64_t now = wall_now();
    bool heuristic = false;
    int64_t dv = date_value(r, now);
    int64_t life = freshness_lifetime(r, rcc, dv, w_->freshness(), &heuristic);
    std::string names;
    bool star = false;
    vary_names(r, &names, &star);
    if (star)
        return false;
    bool keep_cookie = w_->cookie_ok(req_.target());
    std::string block, stored;
    stored_header_block(r, keep_cookie, &block);
    append_block_without(&stored, block, "content-length");
    ObjectMeta m;
    m.status = r.status;
    m.flags = stored_flags(rcc, heuristic);
    if (rcc.public_ || rcc.s_maxage >= 0 || rcc.must_revalidate)
        m.flags |= kStoredAuthOk;
    m.request_time = request_time_;
    m.response_time = now;
    m.date_value = dv;
    m.age_value = age_value(r);
    m.freshness_lifetime = life;
    m.stale_while_revalidate = rcc.stale_while_revalidate;
    m.stale_if_error = rcc.stale_if_error;
    m.headers = stored;
    auto etag = r.header("etag");
    auto lm = r.header("last-modified");
    m.etag = etag ? *etag : std::string_view();
    m.last_modified = lm ? *lm : std::string_view();
    uint64_t expected = r.has_content_length ? r.content_length : 0;
    bool to_tier = w_->tier() != nullptr && expected <= cfg.tier_max_object;
    tier_index_.clear();
    if (!names.empty()) {
        // The primary key holds the Vary names; each variant has its own
        // key, so one stored variant per request-header combination.
        ObjectMeta im = m;
        im.flags |= kStoredVaryIndex;
        im.vary_names = names;
        std::string nonce_line;
        if (w_->tier() != nullptr) {
            if (tier_nonce_.empty()) {
                static uint64_t seq = 0;
                char buf[64];
                std::snprintf(buf, sizeof buf, "%x.%llx.%llx",
                              static_cast<unsigned>(w_->pid()),
                              static_cast<unsigned long long>(now),
                              static_cast<unsigned long long>(++seq));
                tier_nonce_ = buf;
            }
            nonce_line = "Tier-Nonce: " + tier_nonce_ + "\r\n";
        }
        im.headers = nonce_line;
        StoreWriter iw = w_->store().begin_insert(primary_, im, 0);
        if (!iw || !iw.commit())
            return false;
        w_->store_changed();
        if (to_tier)
            tier_encode_meta(im, &tier_index_);
        scratch_.clear();
        vary_values(req_, names, &scratch_);
        store_key_.clear();
        variant_key(primary_, scratch_, &store_key_);
        tier_variant_key(primary_, scratch_, tier_nonce_, &tier_key_);
        m.vary_names = names;
        m.vary_values = scratch_;
    } else {
        store_key_ = primary_;
        tier_key_ = primary_;
    }
    writer_ = w_->store().begin_insert(store_key_, m, expected);
    if (!writer_)
        return false;
    w_->fill_begun(store_key_);
    fill_begun_ = true;
    if (marked_)
        w_->notify_watchers(hash_);  // those waiting elsewhere can follow
    if (to_tier) {
        tier_store_ = true;
        tier_value_.clear();
        tier_encode_meta(m, &tier_value_);
        int64_t ttl =
            life + std::max<int64_t>(static_cast<int64_t>(cfg.stale_grace),
                                     std::max<int64_t>(rcc.stale_if_error, 0));
        tier_ttl_ = static_cast<uint32_t>(
            std::clamp<int64_t>(ttl, 1, 30 * 86400));
    }
    return true;
}

void
Fetch::on_head() noexcept
{
    const HttpMessage& r = resp_.message();
    CacheControl rcc = cache_control_of(r);
    int64_t now = wall_now();
    const CachedConfig& cfg = w_->config();
    if (stale_) {
        const ObjectMeta& sm = stale_.meta();
        if (r.status == 304 &&
            not_modified_matches(r, sm.etag, sm.last_modified)) {
            // RFC 9111 §4.3.4: freshen the stored response's headers.
            std::string block;
            apply_304(sm.headers, r, w_->cookie_ok(req_.target()), &block);
            std::string text = "HTTP/1.1 " + std::to_string(sm.status) +
                               " X\r\n" + block + "\r\n";
            HttpParser p(HttpParserType::kResponse);
            p.set_request_method("HEAD");
            p.feed(text.data(), text.size());
            std::string key(stale_.key());
            if (p.headers_done()) {
                const HttpMessage& nm = p.message();
                CacheControl ncc = cache_control_of(nm);
                bool heuristic = false;
                ObjectMeta m = sm;
                m.headers = block;
                m.request_time = request_time_;
                m.response_time = now;
                m.date_value = date_value(r, now);
                m.age_value = age_value(r);
                m.freshness_lifetime = freshness_lifetime(
                    nm, ncc, m.date_value, w_->freshness(), &heuristic);
                m.flags = stored_flags(ncc, heuristic) |
                          (sm.flags & (kStoredAuthOk | kStoredVaryIndex));
                m.stale_while_revalidate = ncc.stale_while_revalidate;
                m.stale_if_error = ncc.stale_if_error;
                auto etag = nm.header("etag");
                auto lm = nm.header("last-modified");
                m.etag = etag ? *etag : std::string_view();
                m.last_modified = lm ? *lm : std::string_view();
                // Only the response that was revalidated: another worker
                // may have stored a new one under the key meanwhile.
                w_->store().update_meta(key, m, &sm);
                w_->store_changed();
            }
            w_->counters().revalidated.fetch_add(1, std::memory_order_relaxed);
            stale_.reset();
            if (client_ != nullptr) {
                ObjectRef fresh = w_->store().lookup(key);
                ClientConn* c = client_;
                client_ = nullptr;
                c->set_origin_time(ev_now(w_->loop()) - t_start_);
                if (fresh)
                    c->fetch_serve(std::move(fresh), Served::kRevalidated, 304);
                else
                    c->fetch_error(503, "revalidated object was evicted");
            }
            client_body_ = false;
            return;
        }
        if (r.status >= 500 &&
            usable_on_error(stored_freshness(sm, now), req_cc_,
                            static_cast<int64_t>(cfg.stale_grace))) {
            w_->counters().origin_errors.fetch_add(1,
                                                   std::memory_order_relaxed);
            log_info("origin %s: %d for %s: serving stale",
                     cfg.origin_text.c_str(), r.status, primary_.c_str());
            ClientConn* c = client_;
            client_ = nullptr;
            if (c != nullptr)
                c->fetch_serve(std::move(stale_), Served::kStaleError,
                               r.status);
            close_origin();
            end(false);
            return;
        }
        stale_.reset();
    }
    if (r.status >= 500)
        w_->counters().origin_errors.fetch_add(1, std::memory_order_relaxed);

    bool stored = false;
    bool pass = false;
    if (kind_ != Kind::kPass) {
        StorePolicy sp;
        sp.store_set_cookie = w_->cookie_ok(req_.target());
        StoreVerdict v = storable(req_, req_cc_, r, rcc, true, sp);
        if (v == StoreVerdict::kMethod && req_.method() == "HEAD")
            v = StoreVerdict::kStorable;  // we fetched it with GET
        if (v == StoreVerdict::kStorable && r.status != 206 &&
            (!r.has_content_length || r.content_length <= cfg.max_object))
            stored = start_store(r, rcc);
        if (!stored && v != StoreVerdict::kAuthorization &&
            !(v == StoreVerdict::kNoStore && req_cc_.no_store)) {
            // Remember the key as pass, so that later requests go to the
            // origin at once instead of queueing behind each other.
            pass = true;
            w_->wake_watchers(pass_set(w_->shared(), hash_, PassKind::kPass,
                                       cfg.pass_ttl, w_->pid()),
                              hash_);
            marked_ = false;
        }
        log_debug("fetch %s: %d, %s%s", primary_.c_str(), r.status,
                  store_verdict_name(v), stored ? ", storing" : "");
    } else if (is_unsafe_method(req_.method()) && r.status < 400) {
        std::vector<std::string> keys;
        invalidation_keys(req_, r, w_->key_policy(), &keys);
        for (const std::string& k : keys)
            w_->purge_key(k);
    }
    if (!stored) {
        // Waiters must not wait for a response they cannot share.
        collapsible_ = false;
        w_->uncollapse(this);
        release_waiters(pass);
    } else {
        // Those who can follow the fill get its body as it arrives; the
        // others come back to wait for the whole object.
        release_waiters(false);
    }
    if (client_ == nullptr) {
        if (!stored) {
            close_origin();
            end(pass);
        }
        return;
    }
    std::string head;
    http_write_status_line(&head, r.status, r.reason());
    std::string block;
    stored_header_block(r, true, &block);
    append_block_without(&head, block, "content-length");
    if (age_value(r) > 0) {
        head += "Age: ";
        head += std::to_string(age_value(r));
        head += "\r\n";
    }
    head += "Via: 1.1 ";
    head += cfg.via;
    head += "\r\nCache-Status: ";
    CacheStatusInfo ci;
    ci.outcome = kind_ == Kind::kPass         ? CacheOutcome::kBypass
                 : kind_ == Kind::kRevalidate ? CacheOutcome::kStale
                                              : CacheOutcome::kMiss;
    ci.fwd_status = r.status;
    ci.stored = stored;
    cache_status(cfg.via, ci, &head);
    head += "\r\n";
    bool has_body = r.has_body() || r.framing == BodyFraming::kUntilClose;
    bool close = false;
    if (r.has_content_length) {
        // Also for HEAD and 304: the length of the body a GET would get.
        http_write_header(&head, "Content-Length", r.content_length);
    } else if (has_body) {
        if (client_->http10())
            close = true;  // delimited by closing
        else if (client_body_) {
            head += "Transfer-Encoding: chunked\r\n";
            chunk_out_ = true;
        }
    } else if (r.status != 204 && r.status != 304 &&
               !(r.status >= 100 && r.status < 200) &&
               req_.method() != "HEAD") {
        head += "Content-Length: 0\r\n";
    }
    client_->set_status(r.status);
    client_->set_cache_status(kind_ == Kind::kPass         ? "PASS"
                              : pass                       ? "PASS"
                              : kind_ == Kind::kRevalidate ? "EXPIRED"
                                                           : "MISS");
    client_->stream_head(head, has_body && client_body_, close);
}

void
Fetch::on_body(std::string_view data) noexcept
{
    if (data.empty())
        return;
    if (writer_) {
        if (!writer_.append(data.data(), data.size())) {
            log_debug("fetch %s: too large to store", primary_.c_str());
            tier_store_ = false;
        }
        w_->fill_progress(store_key_);
        if (marked_)
            w_->notify_watchers(hash_);
    }
    if (tier_store_) {
        if (tier_value_.size() + data.size() >
            w_->config().tier_max_object + 65536)
            tier_store_ = false;
        else
            tier_value_.append(data);
    }
    to_client(data.data(), data.size());
}

void
Fetch::to_client(const char* data, size_t len) noexcept
{
    if (client_ == nullptr || !client_body_)
        return;
    if (chunk_out_) {
        scratch_.clear();
        http_write_chunk_header(&scratch_, len);
        client_->stream_body(scratch_.data(), scratch_.size());
        client_->stream_body(data, len);
        client_->stream_body("\r\n", 2);
    } else {
        client_->stream_body(data, len);
    }
}

void
Fetch::complete() noexcept
{
    if (ended_)
        return;
    bool keep = resp_.message().keep_alive;
    if (writer_) {
        if (writer_.commit()) {
            w_->store_changed();
            if (tier_store_ && w_->tier() != nullptr) {
                w_->tier()->set(tier_key_, tier_value_, tier_ttl_);
                // The index after its variant: whoever finds it finds
                // at least this variant.
                if (!tier_index_.empty())
                    w_->tier()->set(primary_, tier_index_, tier_ttl_);
            }
        } else {
            log_debug("fetch %s: not stored (purged while filling)",
                      primary_.c_str());
        }
    }
    if (oc_ != nullptr) {
        // An answer before the whole request body was sent leaves the
        // connection in the middle of a request.
        if (keep && oc_->in().empty() && body_done_ && out_off_ == out_.size())
            w_->origin().release(oc_);
        else
            w_->origin().close(oc_);
        oc_ = nullptr;
    }
    if (client_ != nullptr) {
        ClientConn* c = client_;
        client_ = nullptr;
        if (chunk_out_ && client_body_)
            c->stream_body("0\r\n\r\n", 5);
        c->set_origin_time(ev_now(w_->loop()) - t_start_);
        c->stream_end(true);
    }
    end(false);
}

void
Fetch::fail(int status, const char* why, bool origin_fault) noexcept
{
    if (ended_)
        return;
    writer_.abort();
    if (origin_fault)
        w_->counters().origin_errors.fetch_add(1, std::memory_order_relaxed);
    close_origin();
    // Those waiting for this fetch have waited for the same failure: they
    // get its answer now, rather than each trying the origin in turn.
    if (marked_) {
        w_->wake_watchers(pass_fail_fetch(w_->shared(), hash_, w_->pid(),
                                          status, w_->config().collapse_wait),
                          hash_);
        marked_ = false;
    }
    w_->uncollapse(this);
    std::vector<ClientConn*> ws;
    ws.swap(waiters_);
    for (ClientConn* c : ws)
        c->fetch_error(status, why);
    ClientConn* c = client_;
    client_ = nullptr;
    if (c != nullptr) {
        c->set_origin_time(ev_now(w_->loop()) - t_start_);
        if (head_done_) {
            c->stream_end(false);
        } else if (stale_ &&
                   usable_on_error(
                       stored_freshness(stale_.meta(), wall_now()), req_cc_,
                       static_cast<int64_t>(w_->config().stale_grace))) {
            c->fetch_serve(std::move(stale_), Served::kStaleError, 0);
        } else {
            c->fetch_error(status, why);
        }
    }
    end(false);
}

void
Fetch::detach(ClientConn* c) noexcept
{
    if (client_ == c) {
        client_ = nullptr;
        if (paused_)
            resume();
        // Without a store to fill the response is of no use to anyone;
        // without the rest of the request body there is no response.
        if (!ended_ && (!body_done_ || (!writer_ && head_done_))) {
            if (!body_done_)
                writer_.abort();
            close_origin();
            end(false);
        }
    }
    remove_waiter(c);
}

void
Fetch::remove_waiter(ClientConn* c) noexcept
{
    waiters_.erase(std::remove(waiters_.begin(), waiters_.end(), c),
                   waiters_.end());
}

void
Fetch::release_waiters(bool pass) noexcept
{
    std::vector<ClientConn*> ws;
    ws.swap(waiters_);
    for (ClientConn* c : ws)
        c->fetch_finished(pass);
}

void
Fetch::end(bool pass) noexcept
{
    if (ended_)
        return;
    ended_ = true;
    // The fill is committed or, from here on, discarded: either way its
    // followers in this worker look now.
    writer_.abort();
    if (fill_begun_) {
        w_->fill_ended(store_key_);
        fill_begun_ = false;
    }
    if (!store_key_.empty())
        w_->fill_progress(store_key_);
    if (marked_) {
        w_->wake_watchers(pass_clear_fetch(w_->shared(), hash_, w_->pid()),
                          hash_);
        marked_ = false;
    }
    w_->uncollapse(this);
    release_waiters(pass);
    if (client_ != nullptr) {
        client_->forget_fetch();
        client_ = nullptr;
    }
    w_->fetch_done(this);
}

}  // namespace sj
