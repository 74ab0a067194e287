// responder: the benchmarks' yardstick. A one-thread epoll HTTP/1.1 server
// that answers every request with the same fixed response, built once at
// start-up. It does the least work an HTTP server can do (no parsing beyond
// finding the end of each request, no files, no allocation per request), so
// the rate it reaches with wrk on this machine is the ceiling that the
// balancers and caches are compared with, and it serves as the trivial node
// behind the balancers (so that the balancer, not the node, is the
// bottleneck).
//
//   responder [-a ADDRESS] [-p PORT] [-s BODY_BYTES] [-H 'Name: value']...
//
// Defaults: 127.0.0.1, port 8000, a 1024-byte body. Keep-alive always
// (HTTP/1.0 requests too, unless they say otherwise: wrk and the balancers
// speak 1.1); pipelined requests are answered in order in one write; a
// request body announced with Content-Length is skipped. "Connection: close"
// closes after the response. Chunked request bodies are not supported (the
// connection is closed): nothing in the benchmarks sends one.
//
// Standalone on purpose (no common/ library), so it builds anywhere with
// one compiler call: c++ -O2 -o responder responder.cc
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

namespace {

constexpr std::size_t kReadSize = 64 * 1024;
constexpr std::size_t kMaxHeader = 64 * 1024;
constexpr int kMaxEvents = 256;

struct Conn {
    int fd = -1;
    std::string in;   // bytes of requests not yet complete
    std::string out;  // responses not yet written
    std::size_t out_off = 0;
    std::size_t skip_body = 0;  // request body bytes still to discard
    bool close_after = false;
    bool want_out = false;
};

std::string g_response;
std::vector<Conn*> g_conns;  // indexed by fd
int g_epfd = -1;

void
die(const char* what)
{
    std::fprintf(stderr, "responder: %s: %s\n", what, std::strerror(errno));
    std::exit(1);
}

// Case-insensitive search for a header line's value; empty when absent.
std::string_view
header_value(std::string_view head, std::string_view name)
{
    std::size_t pos = head.find("\r\n");
    while (pos != std::string_view::npos && pos + 2 < head.size()) {
        std::size_t start = pos + 2;
        std::size_t end = head.find("\r\n", start);
        if (end == std::string_view::npos)
            end = head.size();
        std::string_view line = head.substr(start, end - start);
        if (line.size() > name.size() && line[name.size()] == ':' &&
            strncasecmp(line.data(), name.data(), name.size()) == 0) {
            std::string_view v = line.substr(name.size() + 1);
            while (!v.empty() && (v.front() == ' ' || v.front() == '\t'))
                v.remove_prefix(1);
            return v;
        }
        pos = end;
    }
    return {};
}

void
close_conn(Conn* c)
{
    epoll_ctl(g_epfd, EPOLL_CTL_DEL, c->fd, nullptr);
    close(c->fd);
    g_conns[c->fd] = nullptr;
    delete c;
}

// Writes what is pending; returns false when the connection is finished
// (error, or everything written and a close was asked for).
bool
flush(Conn* c)
{
    while (c->out_off < c->out.size()) {
        ssize_t n = write(c->fd, c->out.data() + c->out_off,
                          c->out.size() - c->out_off);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN) {
                if (!c->want_out) {
                    epoll_event ev{};
                    ev.events = EPOLLIN | EPOLLOUT;
                    ev.data.fd = c->fd;
                    epoll_ctl(g_epfd, EPOLL_CTL_MOD, c->fd, &ev);
                    c->want_out = true;
                }
                return true;
            }
            return false;
        }
        c->out_off += static_cast<std::size_t>(n);
    }
    c->out.clear();
    c->out_off = 0;
    if (c->want_out) {
        epoll_event ev{};
        ev.events = EPOLLIN;
        ev.data.fd = c->fd;
        epoll_ctl(g_epfd, EPOLL_CTL_MOD, c->fd, &ev);
        c->want_out = false;
    }
    return !c->close_after;
}

// Consumes every complete request in c->in, queueing one response each.
// Returns false when the connection must be closed.
bool
consume(Conn* c)
{
    std::size_t off = 0;
    for (;;) {
        if (c->skip_body > 0) {
            std::size_t n = std::min(c->skip_body, c->in.size() - off);
            c->skip_body -= n;
            off += n;
            if (c->skip_body > 0)
                break;
        }
        if (c->close_after)
            break;
        std::size_t end = c->in.find("\r\n\r\n", off);
        if (end == std::string::npos) {
            if (c->in.size() - off > kMaxHeader)
                return false;
            break;
        }
        std::string_view head(c->in.data() + off, end - off);
        off = end + 4;
        std::string_view cl = header_value(head, "content-length");
        if (!cl.empty())
            c->skip_body = std::strtoull(std::string(cl).c_str(), nullptr, 10);
        if (!header_value(head, "transfer-encoding").empty())
            return false;
        std::string_view conn = header_value(head, "connection");
        if (conn.size() == 5 && strncasecmp(conn.data(), "close", 5) == 0)
            c->close_after = true;
        c->out += g_response;
    }
    c->in.erase(0, off);
    return true;
}

void
on_readable(Conn* c)
{
    char buf[kReadSize];
    for (;;) {
        ssize_t n = read(c->fd, buf, sizeof buf);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN)
                break;
            close_conn(c);
            return;
        }
        if (n == 0) {
            close_conn(c);
            return;
        }
        c->in.append(buf, static_cast<std::size_t>(n));
        if (static_cast<std::size_t>(n) < sizeof buf)
            break;
    }
    if (!consume(c) || !flush(c))
        close_conn(c);
}

void
on_accept(int lfd)
{
    for (;;) {
        int fd = accept4(lfd, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED)
                continue;
            return;  // EAGAIN, or EMFILE: try again on the next event
        }
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        if (static_cast<std::size_t>(fd) >= g_conns.size())
            g_conns.resize(static_cast<std::size_t>(fd) * 2 + 1, nullptr);
        Conn* c = new Conn;
        c->fd = fd;
        g_conns[fd] = c;
        epoll_event ev{};
        ev.events = EPOLLIN;
        ev.data.fd = fd;
        if (epoll_ctl(g_epfd, EPOLL_CTL_ADD, fd, &ev) < 0)
            close_conn(c);
    }
}

void
usage()
{
    std::fprintf(stderr,
                 "usage: responder [-a ADDRESS] [-p PORT] "
                 "[-s BODY_BYTES] [-H 'Name: value']...\n");
    std::exit(2);
}

}  // namespace

int
main(int argc, char** argv)
{
    const char* address = "127.0.0.1";
    int port = 8000;
    long body_size = 1024;
    std::string extra;
    int opt;
    while ((opt = getopt(argc, argv, "a:p:s:H:h")) != -1) {
        switch (opt) {
        case 'a': address = optarg; break;
        case 'p': port = std::atoi(optarg); break;
        case 's': body_size = std::atol(optarg); break;
        case 'H':
            extra += optarg;
            extra += "\r\n";
            break;
        default: usage();
        }
    }
    if (optind != argc || port <= 0 || port > 65535 || body_size < 0 ||
        body_size > 64L * 1024 * 1024)
        usage();

    std::string body(static_cast<std::size_t>(body_size), 'x');
    for (std::size_t i = 63; i < body.size(); i += 64)
        body[i] = '\n';
    g_response =
        "HTTP/1.1 200 OK\r\nServer: responder\r\n"
        "Content-Type: text/plain\r\nContent-Length: " +
        std::to_string(body.size()) + "\r\n" + extra + "\r\n" + body;

    signal(SIGPIPE, SIG_IGN);
    int lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (lfd < 0)
        die("socket");
    int one = 1;
    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    sockaddr_in sa{};
    sa.sin_family = AF_INET;
    sa.sin_port = htons(static_cast<uint16_t>(port));
    if (inet_pton(AF_INET, address, &sa.sin_addr) != 1) {
        std::fprintf(stderr, "responder: bad IPv4 address %s\n", address);
        return 2;
    }
    if (bind(lfd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) < 0)
        die("bind");
    if (listen(lfd, 4096) < 0)
        die("listen");

    g_epfd = epoll_create1(EPOLL_CLOEXEC);
    if (g_epfd < 0)
        die("epoll_create1");
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.fd = lfd;
    epoll_ctl(g_epfd, EPOLL_CTL_ADD, lfd, &ev);

    epoll_event events[kMaxEvents];
    for (;;) {
        int n = epoll_wait(g_epfd, events, kMaxEvents, -1);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            die("epoll_wait");
        }
        for (int i = 0; i < n; ++i) {
            int fd = events[i].data.fd;
            if (fd == lfd) {
                on_accept(lfd);
                continue;
            }
            Conn* c = g_conns[fd];
            if (c == nullptr)
                continue;
            if (events[i].events & EPOLLOUT) {
                if (!flush(c)) {
                    close_conn(c);
                    continue;
                }
            }
            if (events[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR))
                on_readable(c);
        }
    }
}
