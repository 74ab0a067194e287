#pragma once
// Which of the workers sharing a listening socket takes a new connection.
//
// Left to the kernel, every worker watching the socket is woken and the
// first to call accept() wins: a light load ends up spread over all the
// workers, each of them waking for a few requests at a time. Where the
// workers share their CPUs with other busy processes (Apache and PHP on a
// front machine, a load generator), every such wake-up is a context switch,
// and a worker that waits for a CPU holds all its clients waiting: on a
// 2-CPU machine, 50 keep-alive clients split over two workers saw a p99 of
// 3-4 ms where the same clients on one worker saw 0.4 ms (bench/README.md).
//
// The gate packs instead: a new connection goes to the lowest-numbered
// worker that is alive, below its connection limit and busy less than
// kBusyLimit of its time, so the others stay asleep until the first has
// more work than it can take. A worker that should leave a connection to
// another stops watching for kDefer and looks again; if by then the other
// has accepted nothing (stopped, stuck, or too slow to wake), it takes the
// connection itself. A connection waits at most about 2 * kDefer for a
// stuck worker.
//
// Each worker publishes its state in an AcceptSlot in shared memory the
// daemon provides, one slot per worker index: whether it is accepting,
// since when it has been waiting in its event loop (if it is), how busy it
// has been lately (the share of its time spent outside that wait, an
// average over about kAverageUs), and how many connections it has accepted
// (its progress). A worker waiting for longer than kIdleUs is idle,
// whatever its average says.

#include <ev.h>

#include <atomic>
#include <cstddef>
#include <cstdint>

#include "common/clock.h"

namespace sj {

struct alignas(64) AcceptSlot {
    std::atomic<int32_t> pid;         // the worker; 0 = none
    std::atomic<uint32_t> open;       // 1: accepting (not at its limit)
    std::atomic<uint32_t> busy;       // per mille of its time, lately
    std::atomic<int64_t> wait_since;  // µs; 0 = not waiting in its loop
    std::atomic<int64_t> woke;        // µs; its loop last woke then
    std::atomic<uint64_t> accepted;
};

class AcceptGate {
public:
    static constexpr uint32_t kBusyLimit = 900;  // per mille
    static constexpr double kDefer = 0.002;      // seconds
    static constexpr int64_t kAverageUs = 100000;
    static constexpr int64_t kIdleUs = 1000;

    // Worker `self` of `nslots` (slots[self] is its own) on `loop`. With
    // `pack` false it only publishes (how busy, how many accepted) and
    // never defers: the kernel's way.
    AcceptGate(struct ev_loop* loop, AcceptSlot* slots, size_t nslots,
               size_t self, bool pack = true) noexcept;
    ~AcceptGate();
    AcceptGate(const AcceptGate&) = delete;
    AcceptGate& operator=(const AcceptGate&) = delete;

    // A listening socket is readable: true if this worker should leave the
    // connection to another (and stop watching for kDefer).
    bool defer() noexcept;
    // kDefer after a deferral: true if the worker deferred to accepted
    // nothing meanwhile, so that this one should accept.
    bool stalled() noexcept;
    // This worker accepted `n` connections.
    void accepted(size_t n) noexcept;
    // This worker accepts (false: at its limit, or stopped for good).
    void set_open(bool open) noexcept;

private:
    static void on_prepare(struct ev_loop*, ev_prepare* w, int) noexcept;
    static void on_check(struct ev_loop*, ev_check* w, int) noexcept;
    AcceptSlot& mine() const noexcept { return slots_[self_]; }
    bool owned() const noexcept;
    // The worker that should take a connection now, or self_.
    size_t target(int64_t now) const noexcept;

    struct ev_loop* loop_;
    AcceptSlot* slots_;
    size_t nslots_;
    size_t self_;
    bool pack_;
    int32_t pid_;
    ev_prepare prepare_{};
    ev_check check_{};
    int64_t wait_start_ = 0;  // when the loop last began to wait
    int64_t last_woke_ = 0;
    double busy_ = 0;  // share of the time outside the wait
    // The last deferral: to whom, and that one's progress then.
    size_t deferred_to_ = static_cast<size_t>(-1);
    uint64_t deferred_progress_ = 0;
};

// How busy the worker of `s` is at `now`, per mille: its published average,
// decayed over the wait it is in (as its next loop turn will compute), so
// that a worker idle for a while reads 0.
uint32_t busy_now(const AcceptSlot& s, int64_t now) noexcept;

}  // namespace sj
