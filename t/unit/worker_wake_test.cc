// common/worker_wake: messages reach the worker they are addressed to, in
// the instance they belong to, and only it.
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>
#include <vector>

#include "common/worker_wake.h"
#include "t/unit/tap.h"

using sj::WorkerWake;

namespace {

struct Inbox {
    std::vector<std::string> got;
};

void
collect(void* arg, const char* msg, size_t len) noexcept
{
    static_cast<Inbox*>(arg)->got.emplace_back(msg, len);
}

// Runs the loop until nothing more is ready (datagrams to one's own
// machine are queued by the time sendto() returns).
void
drain(struct ev_loop* loop)
{
    for (int i = 0; i < 4; ++i)
        ev_run(loop, EVRUN_NOWAIT);
}

}  // namespace

int
main()
{
    struct ev_loop* loop = ev_loop_new(EVFLAG_AUTO);
    // A made-up parent pid: no real daemon is disturbed by this test.
    pid_t parent = 1000000 + getpid() % 1000000;
    Inbox a, b, other;
    {
        WorkerWake wa(loop, collect, &a), wb(loop, collect, &b);
        tap::ok(wa.open("wake-test", parent, 0), "worker 0 binds");
        tap::ok(wb.open("wake-test", parent, 1), "worker 1 binds");

        WorkerWake dup(loop, collect, &other);
        bool dup_bound = dup.open("wake-test", parent, 1);
        tap::ok(!dup_bound && errno == EADDRINUSE,
                "a second worker 1 of the same instance is refused");

        // Another instance (another parent) has its own names.
        WorkerWake elsewhere(loop, collect, &other);
        tap::ok(elsewhere.open("wake-test", parent + 1, 1),
                "worker 1 of another instance binds");

        wa.send(1, "hello", 5);
        uint64_t h = 0x0123456789abcdefull;
        wb.send(0, &h, sizeof h);
        drain(loop);
        tap::is(b.got.size(), size_t{1}, "worker 1 got one message");
        tap::ok(!b.got.empty() && b.got[0] == "hello", "worker 1: its bytes");
        tap::is(a.got.size(), size_t{1}, "worker 0 got one message");
        uint64_t back = 0;
        if (!a.got.empty() && a.got[0].size() == sizeof back)
            std::memcpy(&back, a.got[0].data(), sizeof back);
        tap::ok(back == h, "worker 0: the 8-byte hash, whole");
        tap::is(other.got.size(), size_t{0},
                "the other instance's worker 1 got nothing");

        // The parent only sends: it reaches its workers by index.
        WorkerWake parent_side(loop, nullptr, nullptr);
        tap::ok(parent_side.open_sender("wake-test", parent), "a sender opens");
        tap::ok(parent_side.send(0, "p", 1), "and sends to worker 0");
        drain(loop);
        tap::ok(a.got.size() == 2 && a.got[1] == "p", "which gets it");

        // A message to a worker that is not there is dropped, and says so.
        tap::ok(!wa.send(7, "x", 1), "a message to no worker: dropped");
        // Many at once: the kernel queues a few (net.unix.max_dgram_qlen);
        // each one send() accepted is delivered, the others are reported.
        int accepted = 0;
        for (int i = 0; i < 100; ++i)
            accepted += wa.send(1, &i, sizeof i) ? 1 : 0;
        tap::diag("of 100 sent at once, " + std::to_string(accepted) +
                  " were queued");
        tap::ok(accepted >= 1, "a burst: some are queued");
        drain(loop);
        tap::is(b.got.size(), size_t{1} + static_cast<size_t>(accepted),
                "a burst: every accepted message is delivered");
        tap::ok(wa.send(1, "more", 4), "once read, there is room again");
        drain(loop);

        // A stopped worker reads nothing.
        size_t before = b.got.size();
        wb.stop();
        wa.send(1, "late", 4);
        drain(loop);
        tap::is(b.got.size(), before, "a stopped worker gets nothing");
    }
    ev_loop_destroy(loop);
    return tap::done_testing();
}
