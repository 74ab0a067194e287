// Unit tests for balancerd/tcp_proxy: a TcpProxy on a libev loop in the
// main thread, a fake TcpRouter, echo backends and blocking clients in
// threads, all on loopback. Checks that bytes go both ways exactly, that
// half-closes pass through, retries after connect failures and timeouts,
// no node, writer changes, the idle timeout, shutdown, the destructor, and
// the byte counts the router is given.

#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <fstream>
#include <functional>
#include <future>
#include <memory>
#include <mutex>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include "balancerd/tcp_proxy.h"
#include "common/address.h"
#include "common/log.h"
#include "common/net.h"
#include "t/unit/loopback.h"
#include "t/unit/tap.h"

namespace {

using Clock = std::chrono::steady_clock;

double
since(Clock::time_point t0)
{
    return std::chrono::duration<double>(Clock::now() - t0).count();
}

sj::Address
loopback(uint16_t port)
{
    // Built by hand: the configuration syntax refuses port 0, which a test
    // needs to let the kernel pick a free port.
    sj::Address a;
    auto* sin = reinterpret_cast<sockaddr_in*>(&a.ss);
    sin->sin_family = AF_INET;
    sin->sin_port = htons(port);
    sin->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.len = sizeof(sockaddr_in);
    a.port = port;
    return a;
}

// ------------------------------------------------------------ backends

// An echo server in threads: every byte it reads goes back; at the
// client's end of file it sends "END\n" and shuts down its side, so a
// test can see both that the half-close reached it and that data still
// flows back after it.
class EchoServer {
public:
    EchoServer()
    {
        fd_ = sjtest::bind_loopback(64, &port_);
        acceptor_ = std::thread([this] { accept_loop(); });
    }
    ~EchoServer()
    {
        // Wakes the blocked accept() (Linux), then every worker's read().
        ::shutdown(fd_, SHUT_RDWR);
        acceptor_.join();
        std::lock_guard<std::mutex> lock(m_);
        for (int fd : conns_)
            ::shutdown(fd, SHUT_RDWR);
        for (auto& t : workers_)
            t.join();
        for (int fd : conns_)
            ::close(fd);
        ::close(fd_);
    }

    uint16_t port() const { return port_; }
    int accepted() const { return accepted_.load(); }
    void reset() { accepted_ = 0; }

private:
    void accept_loop()
    {
        for (;;) {
            int c = ::accept4(fd_, nullptr, nullptr, SOCK_CLOEXEC);
            if (c < 0) {
                if (errno == EINTR || errno == ECONNABORTED)
                    continue;
                return;
            }
            ++accepted_;
            std::lock_guard<std::mutex> lock(m_);
            // A worker never closes its socket, so the number cannot be
            // reused before the destructor shuts it down.
            conns_.push_back(c);
            workers_.emplace_back([c] { echo(c); });
        }
    }
    static void echo(int fd)
    {
        std::vector<char> buf(65536);
        for (;;) {
            ssize_t n = ::read(fd, buf.data(), buf.size());
            if (n < 0 && errno == EINTR)
                continue;
            if (n < 0)
                return;
            if (n == 0)
                break;
            for (ssize_t off = 0; off < n;) {
                ssize_t w = ::send(fd, buf.data() + off,
                                   static_cast<size_t>(n - off), MSG_NOSIGNAL);
                if (w < 0 && errno == EINTR)
                    continue;
                if (w <= 0)
                    return;
                off += w;
            }
        }
        (void)::send(fd, "END\n", 4, MSG_NOSIGNAL);
        ::shutdown(fd, SHUT_WR);
    }

    int fd_ = -1;
    uint16_t port_ = 0;
    std::atomic<int> accepted_{0};
    std::thread acceptor_;
    std::mutex m_;
    std::vector<int> conns_;
    std::vector<std::thread> workers_;
};

// A listener whose accept queue is full and never drained: Linux drops
// further SYNs, so a connect to it hangs until our connect timeout.
class Blackhole {
public:
    Blackhole()
    {
        fd_ = sjtest::bind_loopback(0, &port_);
        for (int i = 0; i < 2; ++i) {
            int err = 0;
            sj::PendingConnect pc =
                sj::connect_nonblocking(loopback(port_), &err);
            fillers_.push_back(std::move(pc.fd));
        }
        // Let the fillers' handshakes complete and fill the queue.
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    ~Blackhole() { ::close(fd_); }
    uint16_t port() const { return port_; }

private:
    int fd_ = -1;
    uint16_t port_ = 0;
    std::vector<sj::UniqueFd> fillers_;
};

// ------------------------------------------------------------ router

class FakeRouter : public sj::TcpRouter {
public:
    struct Node {
        std::string name;
        uint16_t port;
    };
    struct Closed {
        int node;
        uint64_t in;
        uint64_t out;
    };

    explicit FakeRouter(std::vector<Node> nodes) : nodes_(std::move(nodes)) {}

    // Balanced picks go to the first node not excluded.
    sj::TcpRoute pick(const std::string& pool, const std::string& route,
                      const std::string& client, int exclude) override
    {
        std::lock_guard<std::mutex> lock(m_);
        if (!client.empty())
            ++client_picks_;
        sj::TcpRoute r;
        if (no_nodes_)
            return r;
        int n = -1;
        if (route == "writer") {
            if (writer_ != exclude)
                n = writer_;
        } else {
            for (int i = 0; i < static_cast<int>(nodes_.size()); ++i)
                if (i != exclude) {
                    n = i;
                    break;
                }
        }
        if (n < 0)
            return r;
        r.node = n;
        r.address = loopback(nodes_[static_cast<size_t>(n)].port);
        r.name = pool + "/" + nodes_[static_cast<size_t>(n)].name;
        return r;
    }
    void connect_result(int node, bool ok) override
    {
        std::lock_guard<std::mutex> lock(m_);
        results_.emplace_back(node, ok);
    }
    void opened(int node) override
    {
        std::lock_guard<std::mutex> lock(m_);
        opened_.push_back(node);
        ++active_;
    }
    void closed(int node, uint64_t in, uint64_t out) override
    {
        std::lock_guard<std::mutex> lock(m_);
        closed_.push_back({node, in, out});
        --active_;
    }
    uint64_t writer_epoch(const std::string&) override
    {
        std::lock_guard<std::mutex> lock(m_);
        return epoch_;
    }

    void set_writer(int node)
    {
        std::lock_guard<std::mutex> lock(m_);
        writer_ = node;
        ++epoch_;
    }
    void set_no_nodes(bool v)
    {
        std::lock_guard<std::mutex> lock(m_);
        no_nodes_ = v;
    }
    std::string results()
    {
        std::lock_guard<std::mutex> lock(m_);
        std::string s;
        for (auto [node, ok] : results_)
            s += std::to_string(node) + (ok ? "+ " : "- ");
        return s;
    }
    std::vector<int> opened_nodes()
    {
        std::lock_guard<std::mutex> lock(m_);
        return opened_;
    }
    std::vector<Closed> closed_list()
    {
        std::lock_guard<std::mutex> lock(m_);
        return closed_;
    }
    size_t closed_count()
    {
        std::lock_guard<std::mutex> lock(m_);
        return closed_.size();
    }
    int active()
    {
        std::lock_guard<std::mutex> lock(m_);
        return active_;
    }
    int client_picks()
    {
        std::lock_guard<std::mutex> lock(m_);
        return client_picks_;
    }

private:
    std::mutex m_;
    std::vector<Node> nodes_;
    int writer_ = 0;
    uint64_t epoch_ = 1;
    bool no_nodes_ = false;
    int client_picks_ = 0;
    int active_ = 0;
    std::vector<std::pair<int, bool>> results_;
    std::vector<int> opened_;
    std::vector<Closed> closed_;
};

// ------------------------------------------------------------ the loop

// The proxy's loop runs in the main thread; clients run in another and
// reach the loop through post()/call().
class Harness {
public:
    Harness() : loop_(ev_loop_new(EVFLAG_AUTO))
    {
        ev_async_init(&async_, on_async);
        async_.data = this;
        ev_async_start(loop_, &async_);
    }
    ~Harness()
    {
        ev_async_stop(loop_, &async_);
        ev_loop_destroy(loop_);
    }
    struct ev_loop* loop() { return loop_; }

    // Runs `f` in the loop thread, soon; callable from any thread.
    void post(std::function<void()> f)
    {
        {
            std::lock_guard<std::mutex> lock(m_);
            calls_.push_back(std::move(f));
        }
        ev_async_send(loop_, &async_);
    }
    // Runs `f` in the loop thread and waits for it (client thread only).
    void call(std::function<void()> f)
    {
        std::promise<void> done;
        post([&] {
            f();
            done.set_value();
        });
        done.get_future().wait();
    }

    // Runs the loop while `client` runs in a thread, at most `max`
    // seconds; false if the client had not finished by then (its sockets
    // time out, so it still ends, and is joined).
    bool run_client(std::function<void()> client, double max)
    {
        std::atomic<bool> done{false};
        std::thread t([&] {
            client();
            done = true;
            post([this] { ev_break(loop_, EVBREAK_ALL); });
        });
        run_for(max, [&] { return done.load(); });
        bool finished = done.load();
        if (!finished) {
            // Keep the proxy serving while the client gives up.
            run_for(10.0, [&] { return done.load(); });
        }
        t.join();
        ev_run(loop_, EVRUN_NOWAIT);  // the client's stale break
        return finished;
    }

    // Runs the loop until pred() (checked every 5 ms) or `max` seconds.
    bool run_for(double max, std::function<bool()> pred)
    {
        TickState st{&pred, Clock::now(), max};
        ev_timer tick;
        ev_timer_init(&tick, on_tick, 0.005, 0.005);
        tick.data = &st;
        ev_timer_start(loop_, &tick);
        if (!pred())
            ev_run(loop_, 0);
        ev_timer_stop(loop_, &tick);
        return pred();
    }

private:
    struct TickState {
        std::function<bool()>* pred;
        Clock::time_point t0;
        double max;
    };

    static void on_async(struct ev_loop*, ev_async* w, int) noexcept
    {
        auto* h = static_cast<Harness*>(w->data);
        std::vector<std::function<void()>> calls;
        {
            std::lock_guard<std::mutex> lock(h->m_);
            calls.swap(h->calls_);
        }
        for (auto& f : calls)
            f();
    }
    static void on_tick(struct ev_loop* loop, ev_timer* w, int) noexcept
    {
        auto* st = static_cast<TickState*>(w->data);
        if ((*st->pred)() || since(st->t0) > st->max)
            ev_break(loop, EVBREAK_ALL);
    }

    struct ev_loop* loop_;
    ev_async async_{};
    std::mutex m_;
    std::vector<std::function<void()>> calls_;
};

// ------------------------------------------------------------ clients

bool
send_all(int fd, const std::string& s)
{
    for (size_t off = 0; off < s.size();) {
        ssize_t n = ::send(fd, s.data() + off, s.size() - off, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return false;
        off += static_cast<size_t>(n);
    }
    return true;
}

// Reads until end of file. *err: 0 at end of file, else the errno that
// stopped it (EAGAIN: the 5 s timeout).
std::string
read_to_eof(int fd, int* err)
{
    std::string got;
    char buf[65536];
    for (;;) {
        ssize_t n = ::read(fd, buf, sizeof buf);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            *err = n == 0 ? 0 : errno;
            return got;
        }
        got.append(buf, static_cast<size_t>(n));
    }
}

std::string
read_n(int fd, size_t n)
{
    std::string got;
    char buf[4096];
    while (got.size() < n) {
        ssize_t r = ::read(fd, buf, std::min(sizeof buf, n - got.size()));
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        got.append(buf, static_cast<size_t>(r));
    }
    return got;
}

// One round trip: true if `msg` comes back.
bool
ping(int fd, const std::string& msg = "ping")
{
    return send_all(fd, msg) && read_n(fd, msg.size()) == msg;
}

// True if the peer closed: end of file or a reset, not a timeout.
bool
closed_by_peer(int fd)
{
    int err = 0;
    std::string rest = read_to_eof(fd, &err);
    return err == 0 || err == ECONNRESET;
}

std::string
random_bytes(size_t n, unsigned seed)
{
    std::mt19937 gen(seed);
    std::string s(n, '\0');
    for (auto& c : s)
        c = static_cast<char>(gen());
    return s;
}

std::string g_log_path;

std::string
log_text()
{
    std::ifstream f(g_log_path);
    std::stringstream ss;
    ss << f.rdbuf();
    return ss.str();
}

bool
log_has(const std::string& s)
{
    return log_text().find(s) != std::string::npos;
}

// A proxy on a fresh loopback port.
struct Proxy {
    uint16_t port = 0;
    std::unique_ptr<sj::TcpProxy> p;

    Proxy(Harness& h, FakeRouter& r, const std::string& pool,
          const std::string& route, sj::TcpProxyOptions opts = {})
    {
        std::string err;
        sj::UniqueFd fd = sj::listen_socket(loopback(0), 64, &err);
        sj::Address bound;
        if (!fd || !sj::local_address(fd.get(), &bound))
            std::abort();
        port = bound.port;
        sj::TcpListenConfig c;
        c.listen = bound;
        c.listen_text = "127.0.0.1:" + std::to_string(port);
        c.pool = pool;
        c.route = route;
        p = std::make_unique<sj::TcpProxy>(h.loop(), fd.release(), c, r, opts);
    }
};

// ------------------------------------------------------------ tests

void
test_relay(Harness& h, EchoServer& a, size_t size, size_t buffer)
{
    std::string what = std::to_string(size) + " bytes through " +
                       std::to_string(buffer) + "-byte buffers";
    FakeRouter r({{"a", a.port()}});
    sj::TcpProxyOptions opts;
    opts.buffer = buffer;
    Proxy px(h, r, "php", "", opts);
    std::string data = random_bytes(size, static_cast<unsigned>(size));
    std::string got;
    int err = -1;
    bool finished = h.run_client(
        [&] {
            int fd = sjtest::dial_loopback(px.port, 5);
            // Write and read at once: the echo comes back while we send.
            std::thread w([&] {
                send_all(fd, data);
                ::shutdown(fd, SHUT_WR);
            });
            got = read_to_eof(fd, &err);
            w.join();
            ::close(fd);
        },
        30.0);
    tap::ok(finished, what + ": client finished");
    tap::is(err, 0, what + ": end of file after the data");
    tap::is(got.size(), size + 4, what + ": every byte came back");
    tap::ok(got == data + "END\n", what + ": content intact, in order");
    h.run_for(2.0, [&] { return r.closed_count() == 1; });
    auto cl = r.closed_list();
    tap::ok(cl.size() == 1 && cl[0].node == 0 && cl[0].in == size &&
                cl[0].out == size + 4,
            what + ": closed() counts the bytes each way");
    tap::is(px.p->connections(), size_t{0}, what + ": connection gone");
}

// A client that sends without reading: the proxy stops reading it once
// the buffers toward the node are full, instead of taking everything, and
// every byte still arrives once the client reads.
void
test_backpressure(Harness& h, EchoServer& a)
{
    FakeRouter r({{"a", a.port()}});
    Proxy px(h, r, "php", "");
    constexpr size_t kMax = 64u << 20;
    std::string data = random_bytes(kMax, 7);
    size_t sent = 0;
    bool intact = false;
    h.run_client(
        [&] {
            int fd = sjtest::dial_loopback(px.port, 5);
            // Stop trying after 1 s without progress: the pipeline is full.
            timeval tv{1, 0};
            ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
            while (sent < kMax) {
                ssize_t n = ::send(fd, data.data() + sent,
                                   std::min<size_t>(65536, kMax - sent),
                                   MSG_NOSIGNAL);
                if (n <= 0)
                    break;
                sent += static_cast<size_t>(n);
            }
            ::shutdown(fd, SHUT_WR);
            int err = 0;
            std::string got = read_to_eof(fd, &err);
            intact = err == 0 && got == data.substr(0, sent) + "END\n";
            ::close(fd);
        },
        20.0);
    tap::ok(sent > 0 && sent < kMax,
            "backpressure: a client that does not read is blocked after " +
                std::to_string(sent) + " bytes");
    tap::ok(intact, "backpressure: then every byte comes back intact");
    h.run_for(2.0, [&] { return r.closed_count() == 1; });
    auto cl = r.closed_list();
    tap::ok(cl.size() == 1 && cl[0].in == sent && cl[0].out == sent + 4,
            "backpressure: closed() counts match");
}

void
test_half_close(Harness& h, EchoServer& a)
{
    FakeRouter r({{"a", a.port()}});
    Proxy px(h, r, "php", "");
    bool first = false;
    std::string rest;
    int err = -1;
    h.run_client(
        [&] {
            int fd = sjtest::dial_loopback(px.port, 5);
            first = ping(fd, "hello");
            send_all(fd, "more");
            ::shutdown(fd, SHUT_WR);
            rest = read_to_eof(fd, &err);
            ::close(fd);
        },
        10.0);
    tap::ok(first, "half-close: an interactive round trip first");
    tap::is(rest, std::string("moreEND\n"),
            "half-close: after shutting down its side the client still "
            "gets the rest, and the node saw the end of file");
    tap::is(err, 0, "half-close: then end of file");
    h.run_for(2.0, [&] { return r.closed_count() == 1; });
    auto cl = r.closed_list();
    tap::ok(cl.size() == 1 && cl[0].in == 9 && cl[0].out == 13,
            "half-close: closed() gets 9 bytes in, 13 out");
    tap::is(r.results(), std::string("0+ "), "half-close: one connect");
}

void
test_retry(Harness& h, EchoServer& a)
{
    FakeRouter r({{"dead", sjtest::unused_port()}, {"a", a.port()}});
    Proxy px(h, r, "php", "");
    bool okp = false;
    h.run_client(
        [&] {
            int fd = sjtest::dial_loopback(px.port, 5);
            okp = ping(fd);
            ::close(fd);
        },
        10.0);
    tap::ok(okp, "retry: a refused connect is invisible to the client");
    tap::is(r.results(), std::string("0- 1+ "),
            "retry: connect_result(dead, false), then (a, true)");
    auto op = r.opened_nodes();
    tap::ok(op.size() == 1 && op[0] == 1, "retry: opened() for node a");
    tap::ok(log_has("tcp 127.0.0.1:" + std::to_string(px.port) +
                    ": php/dead: connect failed: Connection refused"),
            "retry: the failure is logged with the node");
    h.run_for(2.0, [&] { return r.active() == 0; });
    tap::is(r.active(), 0, "retry: opened and closed balance");
}

void
test_connect_timeout(Harness& h, EchoServer& a)
{
    Blackhole bh;
    FakeRouter r({{"hole", bh.port()}, {"a", a.port()}});
    sj::TcpProxyOptions opts;
    opts.connect_timeout = 0.3;
    Proxy px(h, r, "php", "", opts);
    bool okp = false;
    double took = 0;
    h.run_client(
        [&] {
            auto t0 = Clock::now();
            int fd = sjtest::dial_loopback(px.port, 5);
            okp = ping(fd);
            took = since(t0);
            ::close(fd);
        },
        10.0);
    tap::ok(okp, "connect timeout: retried on the next node");
    tap::is(r.results(), std::string("0- 1+ "),
            "connect timeout: counted as a failure of the silent node");
    tap::ok(took >= 0.25 && took < 2.0,
            "connect timeout: the client waited about connect_timeout (" +
                std::to_string(took) + " s)");
    tap::ok(log_has("php/hole: connect failed: timed out after 0.3 s"),
            "connect timeout: logged");
    h.run_for(2.0, [&] { return r.active() == 0; });
}

void
test_all_fail(Harness& h)
{
    FakeRouter r(
        {{"dead1", sjtest::unused_port()}, {"dead2", sjtest::unused_port()}});
    sj::TcpProxyOptions opts;
    opts.retries = 2;
    Proxy px(h, r, "php", "", opts);
    bool closed = false;
    h.run_client(
        [&] {
            int fd = sjtest::dial_loopback(px.port, 5);
            closed = closed_by_peer(fd);
            ::close(fd);
        },
        10.0);
    tap::ok(closed, "all nodes refuse: the client is closed");
    tap::is(r.results(), std::string("0- 1- 0- "),
            "all nodes refuse: 1 + retries attempts, then give up");
    tap::ok(r.opened_nodes().empty() && r.closed_count() == 0,
            "all nodes refuse: nothing opened or closed");
    tap::ok(log_has("no node of pool php reachable after 3 attempts"),
            "all nodes refuse: logged");
    tap::is(px.p->connections(), size_t{0}, "all nodes refuse: no conn left");
}

void
test_no_node(Harness& h, EchoServer& a)
{
    FakeRouter r({{"a", a.port()}});
    r.set_no_nodes(true);
    Proxy px(h, r, "php", "");
    bool closed = false;
    double took = 0;
    h.run_client(
        [&] {
            auto t0 = Clock::now();
            int fd = sjtest::dial_loopback(px.port, 5);
            closed = closed_by_peer(fd);
            took = since(t0);
            ::close(fd);
        },
        10.0);
    tap::ok(closed && took < 1.0, "no node: the client is closed at once");
    tap::is(r.results(), std::string(""), "no node: no connect tried");
    tap::ok(log_has("tcp 127.0.0.1:" + std::to_string(px.port) +
                    ": no node for pool php"),
            "no node: logged as 'tcp LISTEN: no node for pool P'");
    tap::is(px.p->connections(), size_t{0}, "no node: no conn left");
}

void
test_writer_change(Harness& h, EchoServer& a, EchoServer& b)
{
    a.reset();
    b.reset();
    FakeRouter r({{"db1", a.port()}, {"db2", b.port()}});
    Proxy px(h, r, "mysql", "writer");
    bool pinged = true, kept = true, all_closed = true, fresh = false;
    double took = 0;
    int on_a = 0, on_b = 0;
    h.run_client(
        [&] {
            int fds[3];
            for (int& fd : fds) {
                fd = sjtest::dial_loopback(px.port, 5);
                pinged = pinged && ping(fd);
            }
            // A new epoch with the same writer keeps the connections.
            r.set_writer(0);
            std::this_thread::sleep_for(std::chrono::milliseconds(300));
            for (int fd : fds)
                kept = kept && ping(fd);
            on_a = a.accepted();
            auto t0 = Clock::now();
            r.set_writer(1);
            for (int fd : fds) {
                all_closed = all_closed && closed_by_peer(fd);
                ::close(fd);
            }
            took = since(t0);
            int fd = sjtest::dial_loopback(px.port, 5);
            fresh = ping(fd);
            on_b = b.accepted();
            ::close(fd);
        },
        15.0);
    tap::ok(pinged, "writer: three connections to the writer");
    tap::ok(kept, "writer: a new epoch naming the same writer keeps them");
    tap::is(on_a, 3, "writer: they went to db1");
    tap::ok(all_closed, "writer: all three closed when db2 became writer");
    tap::ok(took < 0.5,
            "writer: closed within 0.5 s (" + std::to_string(took) + " s)");
    tap::ok(fresh && on_b == 1, "writer: a new connection goes to db2");
    tap::ok(log_has("tcp 127.0.0.1:" + std::to_string(px.port) +
                    ": writer of mysql changed to db2; closing 3 "
                    "connections to db1"),
            "writer: one log line for the batch");
    h.run_for(2.0, [&] { return r.active() == 0; });
    tap::is(r.active(), 0, "writer: opened and closed balance");
}

void
test_idle(Harness& h, EchoServer& a)
{
    FakeRouter r({{"a", a.port()}});
    sj::TcpProxyOptions opts;
    opts.idle_timeout = 0.3;
    Proxy px(h, r, "php", "", opts);
    bool busy_ok = true, closed = false;
    double took = 0;
    h.run_client(
        [&] {
            int fd = sjtest::dial_loopback(px.port, 5);
            // Traffic every 0.1 s for 0.6 s: twice the timeout, never idle.
            for (int i = 0; i < 6; ++i) {
                busy_ok = busy_ok && ping(fd);
                std::this_thread::sleep_for(std::chrono::milliseconds(100));
            }
            auto t0 = Clock::now();
            closed = closed_by_peer(fd);
            took = since(t0);
            ::close(fd);
        },
        10.0);
    tap::ok(busy_ok, "idle: a connection with traffic outlives the timeout");
    tap::ok(closed, "idle: a silent connection is closed");
    tap::ok(took >= 0.15 && took < 1.0,
            "idle: after about idle_timeout (" + std::to_string(took) + " s)");
    h.run_for(2.0, [&] { return r.closed_count() == 1; });
    auto cl = r.closed_list();
    tap::ok(cl.size() == 1 && cl[0].in == 24 && cl[0].out == 24,
            "idle: closed() with the bytes relayed");
    tap::ok(log_has("idle for 0.3 s; closing"), "idle: logged");
}

// At max_connections the proxy stops accepting: the next client waits in
// the backlog, unrelayed, until a relayed connection ends.
void
test_limit(Harness& h, EchoServer& a)
{
    FakeRouter r({{"a", a.port()}});
    sj::TcpProxyOptions opts;
    opts.max_connections = 2;
    opts.limit_name = "test.max_connections";
    Proxy px(h, r, "php", "", opts);
    bool two = false, third_waits = false, third_later = false;
    h.run_client(
        [&] {
            int c1 = sjtest::dial_loopback(px.port, 5);
            int c2 = sjtest::dial_loopback(px.port, 5);
            two = ping(c1) && ping(c2);
            int c3 = sjtest::dial_loopback(px.port, 1);
            third_waits = c3 >= 0 && !ping(c3, "wait");  // 1 s timeout
            ::close(c1);
            // The "wait" sent above comes back first once relayed.
            third_later = read_n(c3, 4) == "wait" && ping(c3);
            ::close(c2);
            ::close(c3);
        },
        15.0);
    tap::ok(two, "limit: two connections relayed");
    tap::ok(third_waits, "limit: the third is not relayed at the limit");
    tap::ok(third_later, "limit: relayed once one of the two closed");
    tap::ok(log_has("2 connections (test.max_connections, tcp 127.0.0.1:"),
            "limit: the pause is logged");
    h.run_for(2.0, [&] { return r.closed_count() == 3; });
}

void
test_shutdown(Harness& h, EchoServer& a)
{
    FakeRouter r({{"a", a.port()}});
    Proxy px(h, r, "php", "");
    int idle_calls = 0;
    bool before = false, refused = false, still = false, idle_early = true;
    std::string rest;
    int err = -1;
    h.run_client(
        [&] {
            int fd = sjtest::dial_loopback(px.port, 5);
            before = ping(fd);
            h.call([&] { px.p->shutdown([&] { ++idle_calls; }); });
            int cerr = 0;
            int fd2 = sjtest::dial_loopback(px.port, 5, &cerr);
            refused = fd2 < 0 && cerr == ECONNREFUSED;
            if (fd2 >= 0)
                ::close(fd2);
            still = ping(fd);
            h.call([&] { idle_early = idle_calls != 0; });
            ::shutdown(fd, SHUT_WR);
            rest = read_to_eof(fd, &err);
            ::close(fd);
        },
        10.0);
    tap::ok(before, "shutdown: a relayed connection");
    tap::ok(refused, "shutdown: new connections are refused");
    tap::ok(still, "shutdown: the open connection still relays");
    tap::ok(!idle_early, "shutdown: idle() not called while it is open");
    tap::ok(rest == "END\n" && err == 0, "shutdown: it ends normally");
    h.run_for(2.0, [&] { return idle_calls > 0; });
    h.run_for(0.2, [] { return false; });
    tap::is(idle_calls, 1, "shutdown: idle() called once when it ended");
    tap::is(px.p->connections(), size_t{0}, "shutdown: no connection left");

    FakeRouter r2({{"a", a.port()}});
    Proxy px2(h, r2, "php", "");
    int idle2 = 0;
    px2.p->shutdown([&] { ++idle2; });
    tap::is(idle2, 1, "shutdown: with no connection, idle() at once");
}

void
test_destructor(Harness& h, EchoServer& a)
{
    FakeRouter r({{"a", a.port()}});
    auto px = std::make_unique<Proxy>(h, r, "php", "");
    int fd = -1;
    bool okp = false;
    h.run_client(
        [&] {
            fd = sjtest::dial_loopback(px->port, 5);
            okp = ping(fd);
        },
        10.0);
    size_t before = px->p->connections();
    px.reset();
    tap::ok(okp && before == 1, "destructor: one open connection");
    auto cl = r.closed_list();
    tap::ok(cl.size() == 1 && cl[0].in == 4 && cl[0].out == 4,
            "destructor: reports closed() for it");
    tap::ok(closed_by_peer(fd), "destructor: the client sees the close");
    ::close(fd);
}

}  // namespace

int
main()
{
    ::signal(SIGPIPE, SIG_IGN);
    char dir[] = "/tmp/tcp_proxy_test.XXXXXX";
    if (::mkdtemp(dir) == nullptr)
        return 1;
    g_log_path = std::string(dir) + "/log";
    sj::log_open("tcp_proxy_test", sj::LogTarget::kFile, g_log_path,
                 sj::LogLevel::kInfo);
    {
        Harness h;
        EchoServer a, b;
        test_relay(h, a, 4 << 20, 64 * 1024);
        test_relay(h, a, 1 << 20, 1000);
        test_relay(h, a, 0, 64 * 1024);
        test_backpressure(h, a);
        test_half_close(h, a);
        test_retry(h, a);
        test_connect_timeout(h, a);
        test_all_fail(h);
        test_no_node(h, a);
        test_writer_change(h, a, b);
        test_idle(h, a);
        test_limit(h, a);
        test_shutdown(h, a);
        test_destructor(h, a);
    }
    if (tap::g_failed != 0)
        tap::diag("log:\n" + log_text());
    ::unlink(g_log_path.c_str());
    ::rmdir(dir);
    return tap::done_testing();
}
