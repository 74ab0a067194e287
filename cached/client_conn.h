#pragma once
// One client connection of cached and the request it carries.
//
// States (one request at a time; pipelined requests wait in `in_`):
//   kIdle       between requests: idle timer, reading
//   kHead       reading a request head (and body): header timer
//   kWaitFetch  waiting for this worker's fetch of the same key
//   kWaitOther  waiting for another worker's fetch: polls the store
//   kStream     a Fetch writes the response into out_ as it arrives
//   kSendHit    a stored object is being written from shared memory
//   kWaitTier   asking the shared memcached tier before the origin
//   kClosing    no more input; closes once everything is written
// Invariants: fetch_ != nullptr exactly in kWaitFetch and kStream; ref_
// holds a pinned object only in kSendHit; the parser is fed only while
// kIdle/kHead, or in kStream while the request body is still being
// forwarded (body_pending_: the parser stops at the body's end), so the
// next pipelined request stays unparsed until this response is complete.
// A response that ends before its request body closes the connection.

#include <ev.h>
#include <sys/uio.h>

#include <memory>
#include <string>

#include "cached/http_cache.h"
#include "cached/store.h"
#include "common/buffer.h"
#include "common/http_parser.h"
#include "common/tls.h"
#include "common/unique_fd.h"

namespace sj {

class CacheWorker;
class Fetch;

// How a response from the store was arrived at, for Cache-Status, the
// access log and the counters.
enum class Served : uint8_t {
    kHit,          // fresh
    kStale,        // stale within max-stale or stale-while-revalidate
    kStaleError,   // stale because the origin failed (stale-if-error)
    kStaleDown,    // stale because the origin is marked down
    kRevalidated,  // a 304 from the origin refreshed it
    kCollapsed,    // filled by another request's fetch while we waited
    kTier,         // from the shared memcached tier
};

class ClientConn {
public:
    enum class State : uint8_t {
        kIdle,
        kHead,
        kWaitFetch,
        kWaitOther,
        kStream,
        kSendHit,
        kWaitTier,
        kClosing
    };

    ClientConn(CacheWorker* w, UniqueFd fd, std::string peer,
               std::string peer_ip, SSL_CTX* tls);
    ~ClientConn();

    void start() noexcept;
    void stop_watchers() noexcept;
    bool idle() const noexcept;
    // Shutting down: takes in what the client already sent, if anything.
    void read_pending() noexcept;
    // Shutting down and idle: closes.
    void close_idle() noexcept { close(); }

    // From the Fetch that answers this request.
    // The response head (complete, with its framing) is ready.
    void stream_head(const std::string& head, bool has_body,
                     bool close) noexcept;
    // Body bytes, already framed for the client (chunked or not); queued
    // until stream_flush().
    void stream_body(const char* data, size_t len) noexcept;
    // Sends what stream_body() queued, as far as the socket takes it (the
    // rest goes when it is writable). May close the connection, which
    // detaches it from the fetch.
    void stream_flush() noexcept { flush(); }
    // The response ended: cleanly, or cut short (the connection closes).
    void stream_end(bool ok) noexcept;
    // Serve a stored object instead (304 revalidation, stale-if-error).
    void fetch_serve(ObjectRef ref, Served how, int origin_status) noexcept;
    // The fetch failed with nothing to serve: answer `status`.
    void fetch_error(int status, const char* why) noexcept;
    // A fetch this request waited on ended; `pass`: it was uncacheable.
    void fetch_finished(bool pass) noexcept;
    // Fetch detaching (the worker stops it): forget it.
    void forget_fetch() noexcept { fetch_ = nullptr; }
    // The fetch forwarding this request's body took what it had: read
    // more of it (on the next loop iteration, outside the fetch's call).
    void body_drained() noexcept;
    // The fetch streaming this response hands it over: the rest of the
    // body, from `offset`, comes from the fill `ref` of `key`.
    void follow_from(ObjectRef ref, const std::string& key,
                     uint64_t offset) noexcept;
    // The fill this connection follows moved: send more (soon, not from
    // inside the caller).
    void follow_wake() noexcept;
    // What it waits for in another worker moved (CacheWorker::on_wake).
    void remote_wake() noexcept;
    // Bytes waiting in out_: a streaming fetch pauses above a mark.
    size_t pending() const noexcept { return out_.size(); }
    bool http10() const noexcept { return http10_; }
    bool head_request() const noexcept { return head_req_; }
    const std::string& peer_ip() const noexcept { return peer_ip_; }
    bool tls() const noexcept { return ssl_ != nullptr; }
    void set_cache_status(const char* s) noexcept { log_cache_ = s; }
    void set_status(int s) noexcept { status_ = s; }
    void set_origin_time(double t) noexcept { origin_time_ = t; }

private:
    static void on_read_cb(struct ev_loop*, ev_io* w, int) noexcept;
    static void on_write_cb(struct ev_loop*, ev_io* w, int) noexcept;
    static void on_timer_cb(struct ev_loop*, ev_timer* w, int) noexcept;
    static void on_poll_cb(struct ev_loop*, ev_timer* w, int) noexcept;

    void on_read() noexcept;
    void on_writable() noexcept;
    bool handshake() noexcept;
    ssize_t do_read() noexcept;
    ssize_t do_writev(const struct iovec* iov, int n) noexcept;

    void process() noexcept;
    // Parses request body bytes from in_ into the fetch forwarding them.
    void feed_body() noexcept;
    // The request body cannot be completed (too large, malformed, timed
    // out): give up the fetch, answer `status` if no answer began.
    void abort_body(int status, const char* why) noexcept;
    void handle_request() noexcept;
    void purge() noexcept;
    void lookup() noexcept;
    void go_origin(bool cacheable, ObjectRef stale) noexcept;
    void serve(ObjectRef ref, Served how, int origin_status) noexcept;
    // A hit from the worker's hot-object table.
    void serve_hot(std::shared_ptr<ObjectRef> ref, Served how) noexcept;
    // Serves the object being filled under `key` as it arrives; false if
    // this request or that fill does not allow it.
    bool follow(const std::string& key, int64_t now) noexcept;
    // A followed fill has no more bytes yet: wait, or end if it failed.
    void follow_starved() noexcept;
    void end_follow() noexcept;
    // Waits for a wake-up from the worker fetching `hash` (registered
    // with the worker; the poll timer stays as the safety net).
    void wait_remote(uint64_t hash);
    // Waits (kWaitOther) for another worker's fetch of `hash`: woken by
    // it if `watched` (recorded as its watcher), else polling the store.
    // `was` is what the lookup of `key` found.
    void wait_other(uint64_t hash, bool watched, const std::string& key,
                    LookupStatus was) noexcept;
    void end_remote_wait() noexcept;
    void simple_response(int status, std::string_view text,
                         bool close) noexcept;
    void refuse(int status, const char* why) noexcept;
    void finish_request() noexcept;
    void log_request() noexcept;
    void flush() noexcept;
    void close() noexcept;
    void arm_timer(double secs) noexcept;
    void write_tail(std::string* h, bool has_body, uint64_t len) noexcept;
    void ask_tier() noexcept;
    void tier_result(bool found, std::string_view value) noexcept;
    void build_hit(const ObjectRef& ref, Served how, int origin_status,
                   int64_t now) noexcept;

public:
    uint64_t id() const noexcept { return id_; }
    // Counts the connection's id up (CacheWorker gives each one).
    void set_id(uint64_t id) noexcept { id_ = id; }

private:
    uint64_t id_ = 0;
    bool closed_ = false;
    bool tier_asked_ = false;
    // A Vary index for the key, from the store or the tier: its names and
    // nonce, so the tier is asked for the variant (tier_codec.h).
    std::string tier_names_;
    std::string tier_nonce_;
    bool tier_variant_ = false;  // the tier get in flight is for a variant
    bool continued_ = false;     // decided about 100 Continue
    std::string mp_;             // a multipart/byteranges body

    CacheWorker* w_;
    UniqueFd fd_;
    SslPtr ssl_;
    bool handshaking_ = false;
    std::string peer_;
    std::string peer_ip_;
    State state_ = State::kIdle;
    Buffer in_;
    Buffer out_;
    HttpParser req_;
    std::string body_;  // the start of the request body, for the origin
    // The request body is still arriving and fetch_ forwards it as it
    // comes; the parser then is fed in kStream too, up to the body's end.
    bool body_pending_ = false;
    bool resp_started_ = false;  // a response head went into out_
    bool body_eof_ = false;      // the client closed while body_pending_

    // The request.
    std::string primary_;  // the cache key without variant
    std::string key_;      // the key looked up (primary or variant)
    std::string scratch_;  // vary values
    CacheControl req_cc_;
    bool head_req_ = false;
    bool http10_ = false;
    bool keep_ = false;
    bool no_collapse_ = false;
    bool auth_ = false;
    double wait_until_ = 0;   // kWaitOther: when to stop waiting (ev time)
    int64_t wait_since_ = 0;  // kWaitOther: since when (now_ms()), else 0
    Fetch* fetch_ = nullptr;
    bool in_process_ = false;
    bool close_after_ = false;

    // A stored object being sent: head_ then body [body_off_, body_end_).
    ObjectRef ref_;
    std::shared_ptr<ObjectRef> hot_ref_;   // or a hot object's shared pin
    const ObjectRef* send_ref_ = nullptr;  // whichever of the two is sent
    bool following_ = false;       // ref_ is a fill still arriving (follow())
    bool fill_waiting_ = false;    // registered with the worker's wait_fill
    bool remote_waiting_ = false;  // registered with wait_remote
    uint64_t remote_hash_ = 0;     // under this hash
    std::string follow_key_;       // the store key of that fill
    std::string head_;
    size_t head_off_ = 0;
    uint64_t body_off_ = 0;
    uint64_t body_end_ = 0;

    // The access log.
    double t_start_ = 0;
    double origin_time_ = -1;
    int status_ = 0;
    uint64_t bytes_out_ = 0;
    const char* log_cache_ = "-";
    uint64_t served_ = 0;

    ev_io rio_{}, wio_{};
    ev_timer timer_{};
    ev_timer poll_{};
    bool reading_ = false;
};

}  // namespace sj
