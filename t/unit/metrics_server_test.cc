// common/metrics_server: GET /metrics is answered with the owner's text
// and the connection closed; other paths get 404; at most kMaxConns
// connections are held (the next waits in the backlog until one ends);
// a new address replaces the old one.
#include <fcntl.h>
#include <unistd.h>

#include <string>
#include <vector>

#include "common/metrics_server.h"
#include "t/unit/loopback.h"
#include "t/unit/tap.h"

using sj::MetricsServer;

namespace {

struct ev_loop* g_loop;

// Sends `req` on a new connection to `port`, then runs the loop until the
// server closes it or `limit` seconds pass; returns what came back.
std::string
scrape(uint16_t port, const std::string& req, double limit = 3.0)
{
    int fd = sjtest::dial_loopback(port, 3);
    if (fd < 0)
        return "(connect failed)";
    (void)::write(fd, req.data(), req.size());
    ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) | O_NONBLOCK);
    std::string got;
    ev_tstamp end = ev_time() + limit;
    while (ev_time() < end) {
        ev_run(g_loop, EVRUN_NOWAIT);
        char buf[4096];
        ssize_t n = ::read(fd, buf, sizeof buf);
        if (n > 0)
            got.append(buf, static_cast<size_t>(n));
        else if (n == 0)
            break;
        else
            ::usleep(1000);
    }
    ::close(fd);
    return got;
}

}  // namespace

int
main()
{
    g_loop = ev_loop_new(EVFLAG_AUTO);
    int scrapes = 0;
    MetricsServer m(g_loop, [&scrapes] {
        ++scrapes;
        return std::string("up 1\n");
    });
    uint16_t port = sjtest::unused_port();
    std::string text = "127.0.0.1:" + std::to_string(port), err;
    sj::Address a;
    tap::ok(sj::parse_address(text, &a, &err), "address parses");
    tap::ok(m.listen(a, text, &err), "listens: " + err);
    tap::is(m.address(), text, "says where");

    std::string r = scrape(port, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
    tap::ok(r.rfind("HTTP/1.1 200 OK\r\n", 0) == 0, "GET /metrics: 200");
    tap::ok(r.find("version=0.0.4") != std::string::npos,
            "in the Prometheus text format");
    const std::string tail = "\r\n\r\nup 1\n";
    tap::ok(r.size() > tail.size() &&
                r.compare(r.size() - tail.size(), tail.size(), tail) == 0 &&
                r.find("Content-Length: 5\r\n") != std::string::npos,
            "with the owner's text, its length announced");
    tap::is(scrapes, 1, "the owner was asked once");
    r = scrape(port, "GET /other HTTP/1.1\r\n\r\n");
    tap::ok(r.rfind("HTTP/1.1 404 ", 0) == 0, "another path: 404");
    tap::is(scrapes, 1, "without asking the owner");
    r = scrape(port, "GET /metricsfoo HTTP/1.0\r\n\r\n");
    tap::ok(r.rfind("HTTP/1.1 404 ", 0) == 0, "/metricsfoo: 404");
    r = scrape(port, std::string(20000, 'a'));
    tap::is(r, std::string(), "a head too large: closed unanswered");

    // kMaxConns idle connections: the next one waits for a free place.
    std::vector<int> idle;
    for (size_t i = 0; i < MetricsServer::kMaxConns; ++i)
        idle.push_back(sjtest::dial_loopback(port, 3));
    for (int i = 0; i < 20; ++i)
        ev_run(g_loop, EVRUN_NOWAIT);
    r = scrape(port, "GET /metrics HTTP/1.1\r\n\r\n", 0.5);
    tap::is(r, std::string(), "all places held: the next is not answered");
    ::close(idle.back());
    idle.pop_back();
    r = scrape(port, "GET /metrics HTTP/1.1\r\n\r\n");
    tap::ok(r.rfind("HTTP/1.1 200 OK\r\n", 0) == 0,
            "one place freed: answered");
    for (int fd : idle)
        ::close(fd);

    // A new address replaces the old one; the same one changes nothing.
    tap::ok(m.listen(a, text, &err), "the same address again: kept");
    uint16_t port2 = sjtest::unused_port();
    std::string text2 = "127.0.0.1:" + std::to_string(port2);
    sj::Address a2;
    sj::parse_address(text2, &a2, &err);
    tap::ok(m.listen(a2, text2, &err), "a new address");
    r = scrape(port2, "GET /metrics HTTP/1.1\r\n\r\n");
    tap::ok(r.rfind("HTTP/1.1 200 OK\r\n", 0) == 0, "served there");
    int old = sjtest::dial_loopback(port, 1);
    tap::ok(old < 0, "the old address is closed");
    if (old >= 0)
        ::close(old);
    m.close();
    tap::ok(sjtest::dial_loopback(port2, 1) < 0, "close(): no longer served");

    ev_loop_destroy(g_loop);
    return tap::done_testing();
}
