#pragma once
// cached's optional shared tier: a pool of memcached servers in which
// several cached instances share the objects they fetched, so a local miss
// costs a memcached round trip instead of an origin request (issue 4,
// "Optional memcached tier").
//
// Contract: never blocks the worker's loop. Every call is answered through
// its callback exactly once, on the loop, within `timeout` seconds (a dead
// or silent server costs at most one timeout, after which it is skipped
// until it answers again or heartbeatd reports it up). Keys are spread over
// the servers that are up by consistent hashing, so one server's death
// moves only its share of the keys.
//
// It speaks memcached's text protocol itself over non-blocking sockets on
// the loop (libmemcached waits inside its calls even in its non-blocking
// mode): one persistent connection per server, requests pipelined and
// answered in order, every request awaiting its reply so that a server that
// stops answering is noticed by the oldest request's deadline. The key and
// value format is in cached/mc_proto.h.

#include <ev.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "common/config.h"

namespace sj {

struct McTierOptions {
    double timeout = 0.05;  // per request, seconds
    // Larger values are not stored there. memcached's own item limit (-I,
    // 1 MiB by default) must exceed this plus the cache key plus about 100
    // bytes, or memcached refuses the largest objects (counted in errors).
    size_t max_object = 1000000;
    double retry_after = 1.0;  // a failed server is skipped this long
};

// Counters over the tier's life. A get counts as exactly one of hits and
// misses when it is answered; a miss includes errors, timeouts and skips.
struct McTierStats {
    uint64_t gets = 0, hits = 0, misses = 0;
    uint64_t sets = 0;      // sets sent to a server
    uint64_t errors = 0;    // server errors, bad replies, lost connections
    uint64_t timeouts = 0;  // servers failed because a request timed out
    uint64_t skipped = 0;   // requests with no server up to send them to
    uint64_t dropped = 0;   // sets over max_object, requests over the queues
};

class McTier {
public:
    // `pool` lists the memcached servers (cached.shared_tier names it); a
    // node's weight sets its share of the keys (0: none). Connections are
    // made on first use, not here.
    McTier(struct ev_loop* loop, const PoolConfig& pool,
           const McTierOptions& opts);
    // Closes every connection. Pending gets are dropped without their
    // callbacks being called (the objects they refer to may already be
    // gone); call fail_pending() first to answer them.
    ~McTier();
    McTier(const McTier&) = delete;
    McTier& operator=(const McTier&) = delete;

    // Looks `key` up (any bytes; hashed into a memcached-safe key). `done`
    // gets found=false on a miss, an error or a timeout. The value's bytes
    // are valid only during the callback. `done` is never called from
    // inside get() itself, always later from the loop, and it may call back
    // into this McTier (including destroying it).
    void get(std::string_view key,
             std::function<void(bool found, std::string_view value)> done);

    // Stores `value` under `key` for `ttl` seconds (0: no expiry), fire and
    // forget; values above max_object are dropped.
    void set(std::string_view key, std::string_view value, uint32_t ttl);

    // Deletes `key` (PURGE), fire and forget, on every server that is up:
    // while its server was failed, a key may have been stored on another.
    void remove(std::string_view key);

    // heartbeatd's word on a server ("node health memcache/mc1 down"):
    // a down server gets no requests until it is reported up. `node` is the
    // node's name, alone or as "pool/name". False if no such node.
    bool set_health(const std::string& node, bool up);

    // Answers every pending get with found=false now and closes the
    // connections (servers are not marked failed), e.g. before the tier is
    // replaced on a reload while the gets' callers are still alive.
    void fail_pending();

    const McTierStats& stats() const noexcept { return stats_; }

    // One line per server: name, address, weight, state ("up", "failed,
    // retry in 0.42s", "down (heartbeatd)"), connection and counters.
    std::string describe() const;

private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
    McTierStats stats_;
};

}  // namespace sj
