// pacer: an open-loop HTTP/1.1 load generator, for latency at a fixed rate.
//
// wrk is a closed loop: each connection sends its next request as soon as
// the last answer arrives, so every server is measured at its own
// saturation, and its p99 is the latency at that point (on a machine shared
// with wrk, the point where the scheduler decides the tail). pacer sends at
// a fixed rate instead, the same for every server: request i is due at
// start + i / RATE, on connection i mod CONNS, and its latency runs from
// when it was due, not from when it was sent. A connection still busy with
// an earlier answer holds the due request until it can send it, and the
// wait counts (no "coordinated omission": a server that stalls is charged
// for every request it delayed, as with wrk2).
//
//   pacer -r RATE [-c CONNS] [-d SECONDS] [-H HOST] URL
//
// URL is http://ADDRESS:PORT/PATH (IPv4). Defaults: 50 connections, 10 s.
// Keep-alive, one request in flight per connection; answers must carry
// Content-Length (anything else counts as an error and closes the
// connection, which is then opened again). After the run it waits at most
// 5 s for answers still due, then prints one line of key=value pairs:
//
//   rate=R sent=N done=N errors=N late=N p50=US p90=US p99=US p999=US max=US
//
// (rate: answers per second that arrived within SECONDS, so a server
// that falls behind shows a rate below RATE; late: due requests never
// answered within the 5 s after.) Bounded in time and count: it stops after
// SECONDS + 5 s whatever the server does.
//
// Standalone, like responder.cc: c++ -std=c++20 -O2 -o pacer pacer.cc
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <string>
#include <vector>

namespace {

constexpr std::size_t kReadSize = 256 * 1024;
constexpr std::size_t kMaxHead = 64 * 1024;
constexpr int64_t kDrainNs = 5'000'000'000;

int64_t
now_ns()
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return int64_t{ts.tv_sec} * 1'000'000'000 + ts.tv_nsec;
}

struct Conn {
    int fd = -1;
    bool connecting = false;
    bool busy = false;        // a request is in flight
    std::deque<int64_t> due;  // due times of requests not yet answered
    std::string head;         // the answer's head so far
    int64_t body_left = -1;   // body bytes still to read; -1: in head
};

struct Run {
    sockaddr_in addr{};
    std::string request;
    int ep = -1;
    std::vector<Conn> conns;
    std::vector<uint32_t> lat_us;  // answered requests' latencies
    int64_t stop = 0;              // the end of the run proper
    uint64_t in_time = 0;          // answered before it
    uint64_t sent = 0;
    uint64_t errors = 0;
};

void
die(const char* what)
{
    std::fprintf(stderr, "pacer: %s: %s\n", what, std::strerror(errno));
    std::exit(1);
}

void
open_conn(Run& r, std::size_t i)
{
    Conn& c = r.conns[i];
    c.fd = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (c.fd < 0)
        die("socket");
    int one = 1;
    ::setsockopt(c.fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    int rc = ::connect(c.fd, reinterpret_cast<sockaddr*>(&r.addr),
                       sizeof r.addr);
    if (rc < 0 && errno != EINPROGRESS)
        die("connect");
    c.connecting = rc < 0;
    c.busy = false;
    c.head.clear();
    c.body_left = -1;
    epoll_event ev{};
    ev.events = EPOLLIN | (c.connecting ? EPOLLOUT : 0u);
    ev.data.u64 = i;
    if (::epoll_ctl(r.ep, EPOLL_CTL_ADD, c.fd, &ev) < 0)
        die("epoll_ctl");
}

// A failed connection: its request in flight is an error; the due ones
// wait for the new connection.
void
reopen(Run& r, std::size_t i)
{
    Conn& c = r.conns[i];
    ::close(c.fd);
    if (c.busy && !c.due.empty()) {
        c.due.pop_front();
        ++r.errors;
    }
    open_conn(r, i);
}

void
send_next(Run& r, std::size_t i)
{
    Conn& c = r.conns[i];
    if (c.busy || c.connecting || c.due.empty())
        return;
    // A request is a few dozen bytes: the socket takes it whole or the
    // connection is in trouble.
    ssize_t n = ::send(c.fd, r.request.data(), r.request.size(), MSG_NOSIGNAL);
    if (n != static_cast<ssize_t>(r.request.size())) {
        ++r.errors;
        c.due.pop_front();
        reopen(r, i);
        return;
    }
    c.busy = true;
    ++r.sent;
}

// Parses what arrived; an answer complete: its latency, and the next.
void
on_read(Run& r, std::size_t i, int64_t now)
{
    static char buf[kReadSize];
    Conn& c = r.conns[i];
    for (;;) {
        ssize_t n = ::recv(c.fd, buf, sizeof buf, 0);
        if (n < 0 && errno == EAGAIN)
            return;
        if (n <= 0) {
            reopen(r, i);
            return;
        }
        std::size_t off = 0;
        auto len = static_cast<std::size_t>(n);
        while (off < len) {
            if (c.body_left < 0) {
                std::size_t before = c.head.size();
                c.head.append(buf + off, len - off);
                std::size_t end = c.head.find("\r\n\r\n");
                if (end == std::string::npos) {
                    if (c.head.size() > kMaxHead) {
                        ++r.errors;
                        reopen(r, i);
                        return;
                    }
                    off = len;
                    break;
                }
                off += end + 4 - before;
                c.head.resize(end + 4);
                int64_t cl = -1;
                for (std::size_t p = c.head.find("\r\n"); p < end;
                     p = c.head.find("\r\n", p + 2)) {
                    if (strncasecmp(c.head.c_str() + p + 2,
                                    "content-length:", 15) == 0)
                        cl = std::strtoll(c.head.c_str() + p + 17, nullptr, 10);
                }
                bool ok = c.head.compare(0, 9, "HTTP/1.1 ") == 0 &&
                          c.head.compare(9, 1, "2") == 0;
                if (cl < 0 || !ok || !c.busy) {
                    ++r.errors;
                    reopen(r, i);
                    return;
                }
                c.body_left = cl;
            }
            auto take = std::min<int64_t>(c.body_left,
                                          static_cast<int64_t>(len - off));
            c.body_left -= take;
            off += static_cast<std::size_t>(take);
            if (c.body_left > 0)
                break;
            // Complete.
            int64_t due = c.due.front();
            c.due.pop_front();
            if (now <= r.stop)
                ++r.in_time;
            r.lat_us.push_back(static_cast<uint32_t>(
                std::min<int64_t>((now - due) / 1000, UINT32_MAX)));
            c.busy = false;
            c.head.clear();
            c.body_left = -1;
            send_next(r, i);
        }
    }
}

[[noreturn]] void
usage()
{
    std::fprintf(stderr,
                 "usage: pacer -r RATE [-c CONNS] [-d SECONDS] [-H HOST] "
                 "http://ADDRESS:PORT/PATH\n");
    std::exit(2);
}

}  // namespace

int
main(int argc, char** argv)
{
    double rate = 0;
    int conns = 50;
    double seconds = 10;
    std::string host;
    int opt;
    while ((opt = getopt(argc, argv, "r:c:d:H:")) != -1) {
        switch (opt) {
        case 'r': rate = std::atof(optarg); break;
        case 'c': conns = std::atoi(optarg); break;
        case 'd': seconds = std::atof(optarg); break;
        case 'H': host = optarg; break;
        default: usage();
        }
    }
    if (optind != argc - 1 || rate <= 0 || conns < 1 || conns > 10000 ||
        seconds <= 0 || seconds > 3600)
        usage();
    std::string url = argv[optind];
    if (url.rfind("http://", 0) != 0)
        usage();
    std::string rest = url.substr(7);
    std::size_t slash = rest.find('/');
    std::string hostport = rest.substr(0, slash);
    std::string path = slash == std::string::npos ? "/" : rest.substr(slash);
    std::size_t colon = hostport.rfind(':');
    if (colon == std::string::npos)
        usage();
    Run r;
    r.addr.sin_family = AF_INET;
    r.addr.sin_port = htons(
        static_cast<uint16_t>(std::atoi(hostport.c_str() + colon + 1)));
    if (inet_pton(AF_INET, hostport.substr(0, colon).c_str(),
                  &r.addr.sin_addr) != 1)
        usage();
    if (host.empty())
        host = hostport;
    r.request = "GET " + path + " HTTP/1.1\r\nHost: " + host + "\r\n\r\n";

    r.ep = ::epoll_create1(EPOLL_CLOEXEC);
    int tfd = ::timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    if (r.ep < 0 || tfd < 0)
        die("epoll/timerfd");
    r.conns.resize(static_cast<std::size_t>(conns));
    for (std::size_t i = 0; i < r.conns.size(); ++i)
        open_conn(r, i);
    epoll_event tev{};
    tev.events = EPOLLIN;
    tev.data.u64 = UINT64_MAX;
    ::epoll_ctl(r.ep, EPOLL_CTL_ADD, tfd, &tev);
    auto total = static_cast<uint64_t>(rate * seconds);
    r.lat_us.reserve(total);
    double interval = 1e9 / rate;
    int64_t start = now_ns() + 100'000'000;  // 0.1 s to connect
    int64_t stop = start + static_cast<int64_t>(seconds * 1e9);
    r.stop = stop;
    uint64_t next = 0;  // the next request to make due
    std::vector<epoll_event> evs(256);
    for (;;) {
        int64_t now = now_ns();
        while (next < total &&
               start + static_cast<int64_t>(next * interval) <= now) {
            std::size_t i = next % r.conns.size();
            r.conns[i].due.push_back(
                start + static_cast<int64_t>(next * interval));
            ++next;
            send_next(r, i);
        }
        uint64_t outstanding = 0;
        for (const Conn& c : r.conns)
            outstanding += c.due.size();
        if ((next == total && outstanding == 0) || now >= stop + kDrainNs)
            break;
        int64_t wake = next < total
                           ? start + static_cast<int64_t>(next * interval)
                           : stop + kDrainNs;
        itimerspec its{};
        its.it_value.tv_sec = wake / 1'000'000'000;
        its.it_value.tv_nsec = wake % 1'000'000'000;
        ::timerfd_settime(tfd, TFD_TIMER_ABSTIME, &its, nullptr);
        int n = ::epoll_wait(r.ep, evs.data(), static_cast<int>(evs.size()),
                             -1);
        if (n < 0 && errno != EINTR)
            die("epoll_wait");
        now = now_ns();
        for (int k = 0; k < n; ++k) {
            uint64_t id = evs[static_cast<std::size_t>(k)].data.u64;
            if (id == UINT64_MAX) {
                uint64_t ticks;
                (void)!::read(tfd, &ticks, sizeof ticks);
                continue;
            }
            Conn& c = r.conns[id];
            uint32_t e = evs[static_cast<std::size_t>(k)].events;
            if (c.connecting) {
                int err = 0;
                socklen_t el = sizeof err;
                ::getsockopt(c.fd, SOL_SOCKET, SO_ERROR, &err, &el);
                if (err != 0) {
                    std::fprintf(stderr, "pacer: connect: %s\n",
                                 std::strerror(err));
                    return 1;
                }
                c.connecting = false;
                epoll_event ev{};
                ev.events = EPOLLIN;
                ev.data.u64 = id;
                ::epoll_ctl(r.ep, EPOLL_CTL_MOD, c.fd, &ev);
                send_next(r, id);
                continue;
            }
            if (e & (EPOLLIN | EPOLLERR | EPOLLHUP))
                on_read(r, id, now);
        }
    }
    uint64_t late = 0;
    for (const Conn& c : r.conns)
        late += c.due.size();
    // Not yet made due at the end (the generator itself fell behind)
    // counts as late too.
    late += total - next;
    std::vector<uint32_t>& v = r.lat_us;
    std::sort(v.begin(), v.end());
    auto pct = [&](double p) -> uint32_t {
        if (v.empty())
            return 0;
        auto idx = static_cast<std::size_t>(p * static_cast<double>(v.size()));
        return v[std::min(idx, v.size() - 1)];
    };
    std::printf(
        "rate=%.0f sent=%llu done=%zu errors=%llu late=%llu p50=%u "
        "p90=%u p99=%u p999=%u max=%u\n",
        static_cast<double>(r.in_time) / seconds,
        static_cast<unsigned long long>(r.sent), v.size(),
        static_cast<unsigned long long>(r.errors),
        static_cast<unsigned long long>(late), pct(0.5), pct(0.9), pct(0.99),
        pct(0.999), v.empty() ? 0 : v.back());
    return 0;
}
