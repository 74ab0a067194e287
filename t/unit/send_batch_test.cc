// common/send_batch: sends on many sockets in one submission answer what
// send() would have: all the bytes, a short count on a nearly full socket,
// -EAGAIN on a full one, -EPIPE once the peer has gone; and nothing is left
// in flight when submit() returns.
#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <string>
#include <vector>

#include "common/send_batch.h"
#include "t/unit/tap.h"

namespace {

struct Pair {
    int a = -1;  // the end we send on (non-blocking)
    int b = -1;  // the peer
};

Pair
make_pair(int sndbuf = 0)
{
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) != 0)
        return {};
    fcntl(sv[0], F_SETFL, O_NONBLOCK);
    fcntl(sv[1], F_SETFL, O_NONBLOCK);
    if (sndbuf > 0)
        setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof sndbuf);
    return {sv[0], sv[1]};
}

std::string
drain(int fd)
{
    std::string got;
    char buf[65536];
    for (;;) {
        ssize_t n = read(fd, buf, sizeof buf);
        if (n <= 0)
            return got;
        got.append(buf, static_cast<size_t>(n));
    }
}

// Fills a's send path until send() says EAGAIN.
void
fill(const Pair& p)
{
    std::string chunk(4096, 'f');
    while (send(p.a, chunk.data(), chunk.size(), MSG_DONTWAIT) > 0) {
    }
}

}  // namespace

int
main()
{
    sj::SendBatch batch;
    std::string why;
    if (!batch.open(&why)) {
        tap::skip("send batching", "io_uring not available here: " + why);
        return tap::done_testing();
    }
    tap::ok(batch.is_open(), "the ring is open");

    // Three sockets, three messages, one submission.
    std::vector<Pair> pairs;
    std::vector<std::string> msgs = {"GET / HTTP/1.1\r\n\r\n",
                                     std::string(1024, 'x'),
                                     std::string(70000, 'y')};
    for (size_t i = 0; i < msgs.size(); ++i)
        pairs.push_back(make_pair());
    for (size_t i = 0; i < msgs.size(); ++i)
        tap::is(batch.add(pairs[i].a, msgs[i].data(), msgs[i].size()), i,
                "add " + std::to_string(i) + " is result " + std::to_string(i));
    tap::is(batch.size(), msgs.size(), "three queued");
    std::vector<ssize_t> res;
    batch.submit(&res);
    tap::is(batch.size(), size_t{0}, "the queue is empty after submit");
    tap::is(res.size(), msgs.size(), "a result for each");
    for (size_t i = 0; i < msgs.size(); ++i) {
        tap::is(res[i], static_cast<ssize_t>(msgs[i].size()),
                "send " + std::to_string(i) + " wrote all its bytes");
        tap::ok(drain(pairs[i].b) == msgs[i],
                "and the peer got them, in order");
    }

    // A full socket: -EAGAIN, at once, beside a send that goes.
    Pair full = make_pair();
    fill(full);
    batch.add(full.a, "z", 1);
    batch.add(pairs[0].a, "ok", 2);
    batch.submit(&res);
    tap::is(res[0], static_cast<ssize_t>(-EAGAIN), "a full socket: -EAGAIN");
    tap::is(res[1], ssize_t{2}, "the other send in the batch still goes");
    tap::is(drain(pairs[0].b), std::string("ok"), "and arrives");

    // Room for part of a message: a short count, as send() gives.
    Pair small = make_pair(4096);
    std::string big(1 << 20, 'b');
    batch.add(small.a, big.data(), big.size());
    batch.submit(&res);
    tap::ok(res[0] > 0 && res[0] < static_cast<ssize_t>(big.size()),
            "a large send on a small socket is short (" +
                std::to_string(res[0]) + " bytes)");
    tap::is(drain(small.b).size(), static_cast<size_t>(res[0]),
            "the peer has exactly that many");

    // The peer gone: -EPIPE, and no SIGPIPE (the test would die of it).
    Pair gone = make_pair();
    close(gone.b);
    batch.add(gone.a, "x", 1);
    batch.submit(&res);
    tap::is(res[0], static_cast<ssize_t>(-EPIPE), "a closed peer: -EPIPE");

    // More sends than the ring has entries: submitted in pieces, all done.
    std::vector<Pair> many(300);
    for (Pair& p : many) {
        p = make_pair();
        batch.add(p.a, "m", 1);
    }
    batch.submit(&res);
    size_t good = 0;
    for (size_t i = 0; i < many.size(); ++i)
        if (res[i] == 1 && drain(many[i].b) == "m")
            ++good;
    tap::is(good, many.size(),
            "300 sends in one submit() (more than the ring holds) all went");

    // A submit with nothing queued is harmless.
    batch.submit(&res);
    tap::ok(res.empty(), "an empty submit gives no results");
    return tap::done_testing();
}
