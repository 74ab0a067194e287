#pragma once
// cached's connections to its origin (cached.origin: balancerd's Unix
// socket or any host:port), kept alive between requests in an idle pool.
//
// States of an OriginConn: connecting -> busy (owned by one user, carrying
// one request) -> idle (in the pool, watched so that a close by the origin
// is noticed, closed after origin_idle_timeout) -> busy ... -> closed.
// Invariant: user != nullptr exactly when connecting or busy.

#include <ev.h>

#include <memory>
#include <set>
#include <vector>

#include "common/address.h"
#include "common/buffer.h"
#include "common/unique_fd.h"

namespace sj {

class OriginConn;

// What a connection's owner hears. Called on the loop; the callee may
// release or close the connection inside the call.
class OriginUser {
public:
    virtual ~OriginUser() = default;
    virtual void origin_connected() noexcept = 0;
    virtual void origin_readable() noexcept = 0;
    virtual void origin_writable() noexcept = 0;
    // Connect failure (err = errno) or connect/response timeout.
    virtual void origin_failed(int err, bool timeout) noexcept = 0;
};

class OriginPool;

class OriginConn {
public:
    OriginConn(OriginPool* pool, UniqueFd fd, bool connecting);
    ~OriginConn();

    int fd() const noexcept { return fd_.get(); }
    bool connecting() const noexcept { return connecting_; }
    // It carried an earlier request: a failure before any response byte
    // may be the origin closing an idle connection, worth one retry.
    bool reused() const noexcept { return reused_; }
    Buffer& in() noexcept { return in_; }

    // Which events the user wants; the timer is restarted with `secs`
    // (the response timeout) on each call to arm().
    void want_write(bool on) noexcept;
    void want_read(bool on) noexcept;
    void arm(double secs) noexcept;
    // No timeout: the origin is waiting for us (a request body the client
    // is still sending), not we for it.
    void disarm() noexcept;

private:
    friend class OriginPool;
    static void on_io(struct ev_loop*, ev_io* w, int revents) noexcept;
    static void on_timer(struct ev_loop*, ev_timer* w, int) noexcept;
    void stop() noexcept;

    OriginPool* pool_;
    OriginUser* user_ = nullptr;
    UniqueFd fd_;
    Buffer in_;
    bool connecting_ = false;
    bool reused_ = false;
    ev_io rio_{}, wio_{};
    ev_timer timer_{};
};

class OriginPool {
public:
    OriginPool(struct ev_loop* loop, const Address& origin,
               double connect_timeout, double idle_timeout);
    ~OriginPool();
    OriginPool(const OriginPool&) = delete;
    OriginPool& operator=(const OriginPool&) = delete;

    // A connection for `user`: an idle one, or a new one whose
    // origin_connected() (or origin_failed()) follows. nullptr with *err
    // set when connect() failed at once.
    OriginConn* acquire(OriginUser* user, int* err) noexcept;
    // The user is done and the connection may carry another request.
    void release(OriginConn* c) noexcept;
    // The user is done and the connection must close.
    void close(OriginConn* c) noexcept;
    size_t idle() const noexcept { return idle_.size(); }

private:
    friend class OriginConn;
    struct ev_loop* loop_;
    Address origin_;
    double connect_timeout_;
    double idle_timeout_;
    std::vector<OriginConn*> idle_;  // most recently used last
    std::set<OriginConn*> all_;
};

}  // namespace sj
