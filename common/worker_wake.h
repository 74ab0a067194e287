#pragma once
// Wake-up datagrams between the worker processes of one daemon instance.
//
// Each worker binds an abstract Unix datagram socket (no file to clean up)
// named after the daemon, its parent's pid and its worker index, so that
// two instances on one machine never wake each other's workers. Any worker
// can then send any other a short message: balancerd's workers say "a node
// slot is free, look at your queue"; cached's say "the fill or fetch you
// wait for moved" with the key's hash.
//
// Delivery is best effort: a message to a worker whose socket is full (the
// kernel queues only net.unix.max_dgram_qlen datagrams, 10 by default), or
// that has just ended, is dropped, and send() says so. A full socket means
// the worker has wake-ups to read: a sender that must not lose its message
// records it where the receiver looks on every wake-up, then sends again
// (cached does). Receivers also keep a slow safety poll, so a lost wake-up
// costs latency, never a request.

#include <ev.h>
#include <sys/types.h>

#include <cstddef>

#include "common/unique_fd.h"

namespace sj {

class WorkerWake {
public:
    // Called once per message received, with its bytes.
    using Handler = void (*)(void* arg, const char* msg, size_t len) noexcept;

    WorkerWake(struct ev_loop* loop, Handler handler, void* arg) noexcept;
    ~WorkerWake();
    WorkerWake(const WorkerWake&) = delete;
    WorkerWake& operator=(const WorkerWake&) = delete;

    // Binds worker `index`'s socket of instance (`daemon`, `parent`) and
    // starts watching it. False (errno set) if it could not be bound;
    // messages can still be sent.
    bool open(const char* daemon, pid_t parent, int index) noexcept;
    // Only sends, to the workers of instance (`daemon`, `parent`): for the
    // parent itself, which has no index.
    bool open_sender(const char* daemon, pid_t parent) noexcept;
    void stop() noexcept;

    // Sends `msg` to worker `index` of the same instance; false if it was
    // dropped (that worker's socket is full, or there is no such worker).
    bool send(int index, const void* msg, size_t len) noexcept;

    static constexpr size_t kMaxMessage = 64;

private:
    static void on_read(struct ev_loop*, ev_io* w, int) noexcept;

    struct ev_loop* loop_;
    Handler handler_;
    void* arg_;
    const char* daemon_ = "";
    pid_t parent_ = 0;
    UniqueFd fd_;
    ev_io io_{};
};

}  // namespace sj
