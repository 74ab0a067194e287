#pragma once
// One client connection of the HTTP proxy and the request it carries.
//
// States (one request at a time; pipelined requests wait in `in`):
//   kIdle       between requests: idle timer, reading
//   kHead       reading a request head: header timer
//   kQueued     head read, waiting for a node slot: queue timer
//   kForward    a node connection is attached: the request is sent as
//               the client supplies it, the response is relayed as the
//               node supplies it
//   kClosing    no more input; closes once `out` is flushed
// Invariants: srv != nullptr only in kForward; node >= 0 exactly while
// an in-flight slot of that node is held; the request parser is fed only
// until its message is done, so the bytes of the next pipelined request
// stay in `in` until the response to this one is complete.

#include <ev.h>

#include <list>
#include <string>

#include "common/buffer.h"
#include "common/http_parser.h"
#include "common/unique_fd.h"

namespace sj {

class Proxy;
struct ServerConn;

struct ClientConn {
    enum class State : uint8_t { kIdle, kHead, kQueued, kForward, kClosing };

    ClientConn(Proxy* p, UniqueFd s, std::string peer, bool unix_peer);
    ~ClientConn();

    void start() noexcept;
    void stop_watchers() noexcept;

    // Events.
    void on_read() noexcept;
    void on_writable() noexcept;
    void on_timer() noexcept;
    void on_queue_timeout() noexcept;
    void on_send_timeout() noexcept;
    // A node slot was found for the queued request.
    void dispatch(int node) noexcept;
    // From the node connection.
    void server_connected() noexcept;
    void server_readable() noexcept;
    void server_writable() noexcept;
    void server_failed(int err, bool timeout) noexcept;

    // Helpers.
    void process() noexcept;
    bool head_complete() noexcept;
    void feed_body() noexcept;
    void try_node() noexcept;
    void attempt(int node) noexcept;
    void retry_or_fail(bool timeout, const char* why) noexcept;
    bool build_request_head() noexcept;
    bool relay_response() noexcept;
    void begin_response() noexcept;
    void finish_request() noexcept;
    void error_response(int status, const char* why, const char* end,
                        bool retry_after = false) noexcept;
    void abort(const char* end) noexcept;
    void release_node() noexcept;
    void log_request() noexcept;
    void flush() noexcept;
    void flush_server() noexcept;
    // The result of a batched send (Proxy::defer_send): bytes written or
    // -errno, as send() answers.
    void batch_sent(bool to_node, ssize_t n) noexcept;
    // One send's result to the client or the node, its bytes already taken
    // out of the buffer; false once the connection is given up.
    bool client_sent(ssize_t n) noexcept;
    bool node_sent(ssize_t n) noexcept;
    // What follows once a buffer is written out, or waits for the socket.
    void client_flushed() noexcept;
    void node_flushed() noexcept;
    void update_client_read() noexcept;
    void arm_timer(double secs) noexcept;
    std::string_view cookie(std::string_view name) const noexcept;
    std::string hash_key() const;

    Proxy* proxy;
    UniqueFd fd;
    std::string peer;     // "1.2.3.4:5" or "unix"
    std::string peer_ip;  // "1.2.3.4", "" for a Unix peer
    bool unix_peer;
    bool trusted;
    State state = State::kIdle;
    Buffer in;
    Buffer out;
    Buffer req_out;  // request bytes for the node, not yet written
    HttpParser req;
    HttpParser resp;
    ServerConn* srv = nullptr;
    int node = -1;
    std::list<ClientConn*>::iterator qpos;
    bool in_queue = false;
    bool send_deferred = false;       // out is in the proxy's next batch
    bool node_send_deferred = false;  // req_out is
    uint64_t ticket = 0;       // its place in the pool's queue, all workers
    bool sticky_wait = false;  // queued for its sticky node, at its maxconn

    // The request.
    std::string method;
    std::string target;
    std::string head;  // the rewritten head, kept for a resend
    bool req_chunked = false;
    bool req_done = false;      // the whole request was read
    bool req_sent_any = false;  // some bytes reached the node
    bool client_keep = false;
    bool http10 = false;
    bool idempotent = false;
    bool has_body = false;
    std::string sticky_node;  // the node the sticky cookie names
    int sticky_slot = -1;
    int excluded[8];
    size_t nexcluded = 0;
    int retries = 0;
    bool reuse_retry_done = false;

    // The response.
    bool resp_any = false;        // a byte of the response arrived
    bool resp_head_sent = false;  // its head went to the client
    bool resp_chunk = false;      // re-chunked to the client
    bool close_after = false;
    int status = 0;
    bool insert_cookie = false;

    // Accounting for the access log.
    double t_start = 0, t_queue = 0, queue_wait = 0, connect_time = -1,
           ttfb = -1, t_attempt = 0;
    uint64_t bytes_in = 0, bytes_out = 0;
    std::string node_name;
    const char* end = "ok";
    int64_t out_mark = 0;  // bytes_out counted from `out` writes

    ev_io rio{}, wio{};
    ev_timer timer{};   // header, idle or body timeout
    ev_timer qtimer{};  // queue timeout
    // Runs while `out` holds bytes the client did not take; checks
    // last_sent lazily, so a write costs no timer update.
    ev_timer stimer{};
    double last_sent = 0;  // when the client last accepted a byte
    bool reading = false;
    uint64_t served = 0;  // requests answered on this connection
    bool timing_body = false;
};

// The fields of one message that stay on their hop: the fixed hop-by-hop
// names (RFC 9110 §7.6.1) and the tokens of the message's Connection
// fields, collected in one pass so that filtering a head costs one scan
// of it rather than one per field. `m` must outlive the filter. Requests
// also drop Proxy-Authorization and Proxy-Authenticate.
class HopFilter {
public:
    HopFilter(const HttpMessage& m, bool request) noexcept;
    bool skip(std::string_view name) const noexcept;

private:
    static constexpr size_t kMaxTokens = 16;
    const HttpMessage& m_;
    bool request_;
    bool overflow_ = false;  // more tokens than kept: look them up again
    size_t ntokens_ = 0;
    std::string_view tokens_[kMaxTokens];
};

// Whether `name` is one of the fixed hop-by-hop field names; `request`
// adds the proxy authentication fields.
bool http_hop_by_hop(std::string_view name, bool request) noexcept;

// Appends the last chunk of a chunked body and the trailer section of
// `m` (its trailers, less hop-by-hop fields and any the writer refuses).
// False if `b` is over its limit.
bool append_last_chunk(Buffer* b, const HttpMessage& m);

}  // namespace sj
