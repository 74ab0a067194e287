// common/acceptor: connections are handed over with their listener's
// index; at the limit accepting stops (the clients wait in the backlog)
// and starts again below it; out of descriptors it stops for a spell
// instead of spinning (every time), then takes the waiting clients.
#include <fcntl.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <string>
#include <vector>

#include "common/acceptor.h"
#include "t/unit/loopback.h"
#include "t/unit/tap.h"

using sj::Acceptor;
using sj::UniqueFd;

namespace {

struct Owner {
    std::vector<UniqueFd> conns;
    std::vector<size_t> index;
};

size_t
take(void* arg, size_t index, UniqueFd fd, const sockaddr_storage& ss,
     socklen_t) noexcept
{
    auto* o = static_cast<Owner*>(arg);
    if (ss.ss_family != AF_INET)
        return o->conns.size();  // counted as missing below
    o->conns.push_back(std::move(fd));
    o->index.push_back(index);
    return o->conns.size();
}

int
listener(uint16_t* port)
{
    int fd = sjtest::bind_loopback(64, port);
    ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) | O_NONBLOCK);
    return fd;
}

void
spin(struct ev_loop* loop, int n = 8)
{
    for (int i = 0; i < n; ++i)
        ev_run(loop, EVRUN_NOWAIT);
}

}  // namespace

int
main()
{
    struct ev_loop* loop = ev_loop_new(EVFLAG_AUTO);
    Owner o;
    uint16_t p0 = 0, p1 = 0;
    int l0 = listener(&p0), l1 = listener(&p1);
    std::vector<int> clients;
    {
        Acceptor a(loop, take, &o);
        a.add(l0);
        a.add(l1);
        a.set_limit(4, "test.max_connections");
        clients.push_back(sjtest::dial_loopback(p0, 5));
        clients.push_back(sjtest::dial_loopback(p1, 5));
        clients.push_back(sjtest::dial_loopback(p1, 5));
        spin(loop);
        tap::is(o.conns.size(), size_t{3}, "three connections taken");
        tap::ok(std::count(o.index.begin(), o.index.end(), 0) == 1 &&
                    std::count(o.index.begin(), o.index.end(), 1) == 2,
                "each with its listener's index");
        tap::ok(!a.paused(), "below the limit: accepting");

        // The limit: the fourth is taken, the fifth waits in the backlog.
        clients.push_back(sjtest::dial_loopback(p0, 5));
        clients.push_back(sjtest::dial_loopback(p0, 5));
        spin(loop);
        tap::is(o.conns.size(), size_t{4}, "at the limit: four taken");
        tap::ok(a.paused(), "and accepting stops");
        spin(loop);
        tap::is(o.conns.size(), size_t{4}, "the fifth waits");
        a.update(4);
        spin(loop);
        tap::is(o.conns.size(), size_t{4}, "still at the limit: it waits");
        o.conns.pop_back();
        a.update(o.conns.size());
        tap::ok(!a.paused(), "one closed: accepting again");
        spin(loop);
        tap::is(o.conns.size(), size_t{4}, "the fifth is taken");

        // Out of descriptors: accept() fails with EMFILE while a client
        // waits. The acceptor stops watching for a spell, then retries.
        // Twice: the second spell waits as long as the first. (A one-shot
        // libev timer restarted without being set again fires at once: the
        // acceptor then retried on every turn of the loop.)
        a.set_limit(100, "test.max_connections");
        a.update(o.conns.size());
        rlimit old{};
        ::getrlimit(RLIMIT_NOFILE, &old);
        for (int spell = 1; spell <= 2; ++spell) {
            std::string tag = "EMFILE spell " + std::to_string(spell) + ": ";
            size_t before = o.conns.size();
            clients.push_back(sjtest::dial_loopback(p0, 5));
            int probe = ::fcntl(l0, F_DUPFD, 0);  // the lowest free one
            ::close(probe);
            rlimit low = old;
            low.rlim_cur = static_cast<rlim_t>(probe);
            ::setrlimit(RLIMIT_NOFILE, &low);
            spin(loop);
            tap::ok(a.starved(), tag + "not accepting for a while");
            tap::is(o.conns.size(), before, tag + "nothing taken");
            // The loop now sleeps (the retry timer) instead of spinning.
            ev_tstamp t0 = ev_time();
            ev_run(loop, EVRUN_ONCE);
            double slept = ev_time() - t0;
            tap::ok(slept >= 0.05, tag + "the loop waits for the retry (" +
                                       std::to_string(slept) + " s)");
            ::setrlimit(RLIMIT_NOFILE, &old);
            for (int i = 0; i < 5 && o.conns.size() == before; ++i)
                ev_run(loop, EVRUN_ONCE);
            tap::is(o.conns.size(), before + 1,
                    tag + "descriptors back: it is taken");
            tap::ok(!a.starved(), tag + "and accepting goes on as before");
        }

        a.close_all();
        clients.push_back(sjtest::dial_loopback(p0, 5));
        tap::ok(clients.back() < 0, "after close_all: refused");
        spin(loop);
        tap::is(o.conns.size(), size_t{6}, "nothing more taken");
    }
    for (int c : clients)
        if (c >= 0)
            ::close(c);
    ev_loop_destroy(loop);
    return tap::done_testing();
}
