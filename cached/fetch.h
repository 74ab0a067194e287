#pragma once
// One request to the origin and what becomes of its response: streamed to
// the client that asked (if it is still there), appended to the store as
// it arrives when it may be stored (committed only when it completed
// cleanly, aborted otherwise: a truncated response is never stored), and
// announced to the requests of this worker that waited for it.
//
// Kinds: a cacheable GET (may store; others may wait for it), a pass
// (anything else: forwarded as it is, never stored), a revalidation (a
// conditional GET for a stale stored object: a 304 refreshes it), and a
// background revalidation (stale-while-revalidate: no client).
//
// States: sending the request -> reading the response head -> streaming
// the body -> done (the worker frees it). Invariant: writer_ is open only
// while streaming a storable response; client_ may become null at any
// time (the client left) and the fetch then goes on only to fill the store.

#include <memory>
#include <string>
#include <vector>

#include "cached/client_conn.h"
#include "cached/http_cache.h"
#include "cached/origin.h"
#include "cached/store.h"
#include "common/http_parser.h"

namespace sj {

class CacheWorker;

class Fetch : public OriginUser {
public:
    enum class Kind : uint8_t { kCacheable, kPass, kRevalidate, kBackground };

    // `req` is copied; `body` is the request body to send. `stale`: the
    // stored object a revalidation refreshes (kRevalidate, kBackground).
    Fetch(CacheWorker* w, ClientConn* client, Kind kind, const HttpMessage& req,
          std::string body, std::string primary, ObjectRef stale);
    ~Fetch() override;

    // Connects (or reuses a connection) and sends the request.
    void start() noexcept;
    // The client left: finish only if the store still wants the body.
    void detach(ClientConn* c) noexcept;
    // The client drained its output: resume reading the origin.
    void resume() noexcept;
    void add_waiter(ClientConn* c) { waiters_.push_back(c); }
    void remove_waiter(ClientConn* c) noexcept;
    // The request body follows: `body` given to the constructor is its
    // beginning, the rest comes through add_body() and body_end().
    // Forwarded chunked or with the request's Content-Length. Call before
    // start().
    void stream_body(bool chunked) noexcept;
    // More request body bytes, sent to the origin as it takes them.
    void add_body(std::string_view data) noexcept;
    // The request body is complete.
    void body_end() noexcept;
    // The origin is not taking the body as fast as the client sends it:
    // the client stops reading until body_drained() tells it to go on.
    bool body_full() const noexcept;
    const std::string& primary() const noexcept { return primary_; }
    // The nonce of the Vary index this key has in the shared tier (or in
    // the local store), so a new variant joins its siblings; "" for none.
    void set_tier_nonce(std::string n) { tier_nonce_ = std::move(n); }
    bool collapsible() const noexcept { return collapsible_; }
    // Other requests must not wait for this one (hit-for-pass, retries).
    void set_collapsible(bool b) noexcept { collapsible_ = collapsible_ && b; }
    Kind kind() const noexcept { return kind_; }

    void origin_connected() noexcept override;
    void origin_readable() noexcept override;
    void origin_writable() noexcept override;
    void origin_failed(int err, bool timeout) noexcept override;

private:
    void build_request() noexcept;
    // The origin connection closed before answering: may we resend?
    bool idempotent() const noexcept;
    void send() noexcept;
    void on_head() noexcept;
    void on_body(std::string_view data) noexcept;
    void complete() noexcept;
    void fail(int status, const char* why, bool origin_fault) noexcept;
    void end(bool pass) noexcept;
    void release_waiters(bool pass) noexcept;
    // The client is slow and the object is being stored: it goes on
    // reading the body from the store. False if that cannot be done.
    bool hand_to_store() noexcept;
    bool start_store(const HttpMessage& resp, const CacheControl& cc) noexcept;
    void to_client(const char* data, size_t len) noexcept;
    void close_origin() noexcept;

    CacheWorker* w_;
    ClientConn* client_;
    Kind kind_;
    HttpMessage req_;
    CacheControl req_cc_;
    std::string body_;
    std::string primary_;
    uint64_t hash_;
    ObjectRef stale_;
    std::vector<ClientConn*> waiters_;
    bool collapsible_ = false;
    bool marked_ = false;  // we set kFetching in the pass table

    OriginConn* oc_ = nullptr;
    std::string out_;  // the request bytes
    size_t out_off_ = 0;
    HttpParser resp_;
    bool got_any_ = false;
    bool head_done_ = false;
    bool retried_ = false;
    bool paused_ = false;
    bool ended_ = false;
    bool chunk_out_ = false;  // re-chunked to an HTTP/1.1 client
    bool client_body_ = true;
    bool fill_begun_ = false;    // counted in the worker's fill_begun()
    bool body_stream_ = false;   // the request body arrives while we send
    bool body_chunked_ = false;  // ... and is forwarded chunked
    bool body_done_ = true;      // all of the request body is in out_
    int64_t request_time_ = 0;
    double t_start_ = 0;

    StoreWriter writer_;
    std::string store_key_;
    std::string tier_value_;  // the object for the shared tier, if any
    std::string tier_key_;    // ... and its key there
    std::string tier_index_;  // a Vary index record for the primary key
    std::string tier_nonce_;
    bool tier_store_ = false;
    uint32_t tier_ttl_ = 0;
    std::string scratch_;
};

// Header block helpers shared by the hit and miss paths.
// Appends the lines of `block` except those named `skip` (lowercase).
void append_block_without(std::string* out, std::string_view block,
                          std::string_view skip);

}  // namespace sj

namespace sj {

// The StoredFreshness of a stored object at `now`.
StoredFreshness stored_freshness(const ObjectMeta& m, int64_t now) noexcept;

// Wall-clock seconds and a monotonic clock in seconds.
int64_t wall_now() noexcept;

}  // namespace sj
