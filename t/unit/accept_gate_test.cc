// common/accept_gate: two worker processes share a listening socket and
// a pair of AcceptSlots in shared memory, as cached's workers do.
// - New connections go to the first worker while it is idle.
// - A stopped first worker costs a new connection a few milliseconds: the
//   second takes it once the first has taken nothing meanwhile.
// - A first worker at its connection limit, or out of file descriptors,
//   leaves them to the second.
// - A first worker that never waits (busy) leaves them to the second.
#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "common/accept_gate.h"
#include "common/acceptor.h"
#include "t/unit/loopback.h"
#include "t/unit/tap.h"

using sj::AcceptGate;
using sj::Acceptor;
using sj::AcceptSlot;
using sj::monotonic_us;
using sj::UniqueFd;

namespace {

size_t
take(void* arg, size_t, UniqueFd fd, const sockaddr_storage&,
     socklen_t) noexcept
{
    auto* held = static_cast<std::vector<UniqueFd>*>(arg);
    held->push_back(std::move(fd));
    return held->size();
}

void
burn(struct ev_loop*, ev_idle*, int) noexcept
{
    int64_t until = monotonic_us() + 5000;
    while (monotonic_us() < until) {
    }
}

// A worker: accepts on `lfd` through a gate on slot `self` until killed
// (or 60 s pass). `busy`: an idle watcher burns 5 ms per loop turn, so the
// loop never waits. `starved`: no descriptor left for a connection.
pid_t
worker(AcceptSlot* slots, int lfd, size_t self, size_t limit, bool busy,
       bool starved = false)
{
    pid_t pid = ::fork();
    if (pid != 0)
        return pid;
    ::alarm(60);
    struct ev_loop* loop = ev_loop_new(EVBACKEND_EPOLL);
    auto* held = new std::vector<UniqueFd>;
    auto* gate = new AcceptGate(loop, slots, 2, self);
    auto* acceptor = new Acceptor(loop, take, held);
    acceptor->set_gate(gate);
    acceptor->set_limit(limit, "test.max_connections");
    acceptor->add(lfd);
    ev_idle idle;
    ev_idle_init(&idle, burn);
    if (busy)
        ev_idle_start(loop, &idle);
    if (starved) {
        int probe = ::fcntl(lfd, F_DUPFD, 0);  // the lowest free descriptor
        ::close(probe);
        rlimit low{};
        ::getrlimit(RLIMIT_NOFILE, &low);
        low.rlim_cur = static_cast<rlim_t>(probe);
        ::setrlimit(RLIMIT_NOFILE, &low);
    }
    ev_run(loop, 0);
    ::_exit(0);
}

// Ends a part of the test: kills both workers, closes the clients.
void
finish(pid_t w0, pid_t w1, std::vector<int>* clients)
{
    for (pid_t pid : {w0, w1}) {
        ::kill(pid, SIGKILL);
        ::waitpid(pid, nullptr, 0);
    }
    for (int c : *clients)
        if (c >= 0)
            ::close(c);
    clients->clear();
}

uint64_t
taken(const AcceptSlot* s)
{
    return s[0].accepted.load() + s[1].accepted.load();
}

// Dials; waits until a worker took the connection. Returns the seconds
// that took (-1: not within 2 s).
double
dial(const AcceptSlot* slots, uint16_t port, std::vector<int>* clients)
{
    uint64_t before = taken(slots);
    int64_t t0 = monotonic_us();
    clients->push_back(sjtest::dial_loopback(port, 5));
    while (taken(slots) == before) {
        if (monotonic_us() - t0 > 2000000)
            return -1;
        ::usleep(100);
    }
    double took = static_cast<double>(monotonic_us() - t0) / 1e6;
    ::usleep(3000);  // the workers go back to waiting
    return took;
}

bool
started(const AcceptSlot* slots)
{
    for (int i = 0; i < 200; ++i) {
        if (slots[0].pid.load() != 0 && slots[1].pid.load() != 0)
            break;
        ::usleep(10000);
    }
    ::usleep(20000);
    return slots[0].pid.load() != 0 && slots[1].pid.load() != 0;
}

}  // namespace

int
main()
{
    void* mem = ::mmap(nullptr, 2 * sizeof(AcceptSlot), PROT_READ | PROT_WRITE,
                       MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (mem == MAP_FAILED)
        std::abort();
    std::memset(mem, 0, 2 * sizeof(AcceptSlot));
    auto* slots = static_cast<AcceptSlot*>(mem);
    uint16_t port = 0;
    int lfd = sjtest::bind_loopback(128, &port);
    ::fcntl(lfd, F_SETFL, ::fcntl(lfd, F_GETFL) | O_NONBLOCK);
    std::vector<int> clients;

    pid_t w0 = worker(slots, lfd, 0, 25, false);
    pid_t w1 = worker(slots, lfd, 1, 1000, false);
    tap::ok(started(slots), "two workers publish their slots");

    // Idle workers: the first takes them all. (Left to the kernel, the
    // two race for each connection.) A connection the first is slow to
    // take goes to the second, so allow for one or two on a loaded box.
    bool all_taken = true;
    for (int i = 0; i < 20; ++i)
        all_taken = dial(slots, port, &clients) >= 0 && all_taken;
    tap::ok(all_taken, "20 connections taken");
    uint64_t first = slots[0].accepted.load();
    tap::ok(first >= 18,
            "packed: " + std::to_string(first) + " of 20 in the first worker");

    // The first stopped: the second takes each within a few ms.
    ::kill(w0, SIGSTOP);
    double worst = 0;
    uint64_t second = slots[1].accepted.load();
    for (int i = 0; i < 5; ++i) {
        double took = dial(slots, port, &clients);
        worst = took < 0 || worst < 0 ? -1 : std::max(worst, took);
    }
    tap::is(slots[1].accepted.load() - second, uint64_t{5},
            "first worker stopped: the second takes them");
    tap::ok(worst >= 0 && worst < 0.5,
            "each within " + std::to_string(worst) + " s");
    ::kill(w0, SIGCONT);

    // The first at its limit (25): the second takes the rest.
    for (int i = 0; i < 40 && slots[0].open.load() != 0; ++i)
        dial(slots, port, &clients);
    tap::is(slots[0].accepted.load(), uint64_t{25},
            "the first worker takes them up to its limit");
    second = slots[1].accepted.load();
    for (int i = 0; i < 3; ++i)
        dial(slots, port, &clients);
    tap::is(slots[1].accepted.load() - second, uint64_t{3},
            "then the second takes them");
    finish(w0, w1, &clients);

    // A first worker out of descriptors says so: the second takes them
    // without leaving them to it first.
    std::memset(mem, 0, 2 * sizeof(AcceptSlot));
    w0 = worker(slots, lfd, 0, 1000, false, true);
    w1 = worker(slots, lfd, 1, 1000, false);
    tap::ok(started(slots), "a worker out of descriptors and another");
    tap::ok(slots[0].open.load() == 1, "the first says it accepts");
    bool taken = true;
    for (int i = 0; i < 5; ++i)
        taken = dial(slots, port, &clients) >= 0 && taken;
    tap::ok(taken && slots[1].accepted.load() == 5,
            "the second takes all 5 (" +
                std::to_string(slots[1].accepted.load()) + ")");
    tap::ok(slots[0].open.load() == 0,
            "the first, failing with EMFILE, says it accepts none");
    finish(w0, w1, &clients);

    // A busy first worker (its loop never waits): the second takes them.
    std::memset(mem, 0, 2 * sizeof(AcceptSlot));
    w0 = worker(slots, lfd, 0, 1000, true);
    w1 = worker(slots, lfd, 1, 1000, false);
    tap::ok(started(slots), "a busy worker and an idle one");
    ::usleep(300000);
    tap::ok(slots[0].busy.load() >= AcceptGate::kBusyLimit,
            "the busy one reports " + std::to_string(slots[0].busy.load()) +
                " per mille");
    tap::ok(slots[1].busy.load() < 100,
            "the idle one " + std::to_string(slots[1].busy.load()));
    for (int i = 0; i < 10; ++i)
        dial(slots, port, &clients);
    tap::ok(slots[1].accepted.load() >= 8,
            "the idle second worker takes " +
                std::to_string(slots[1].accepted.load()) + " of 10");
    finish(w0, w1, &clients);
    ::close(lfd);
    ::munmap(mem, 2 * sizeof(AcceptSlot));
    return tap::done_testing();
}
