// relay: the balancer benchmark's floor. A one-thread epoll relay that
// makes the same system calls per request as any user-space balancer on
// keep-alive connections must (a read and a write on each side, an
// epoll_wait for many requests) and does almost nothing else: no HTTP
// parsing beyond finding a response's length, no timers, no logging. Its
// CPU time per request is what the kernel charges for forwarding a request
// and its response through a process on this machine; a real balancer's
// own work comes on top.
//
//   relay [-r] -p PORT NODE_PORT [NODE_PORT...]
//
// Default: every client connection gets a node connection of its own (round
// robin over the nodes at accept time) and bytes are copied both ways.
// -r: balanced per request, as the balancers are: each read from a client is
// taken to be one whole request and goes to the next node in turn, on an
// idle connection from that node's pool (a new one when none is idle); the
// node connection returns to the pool once Content-Length bytes of body have
// come back. That needs wrk's one outstanding request per connection and
// responses with Content-Length, which is all the relay is for.
//
// Nodes are on 127.0.0.1. A short write is finished before anything else
// happens (blocking until the peer drains). Standalone, like responder.cc:
// c++ -O2 -o relay relay.cc
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
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
#include <string_view>
#include <vector>

namespace {

constexpr int kMaxEvents = 256;
constexpr std::size_t kBufSize = 64 * 1024;
constexpr std::size_t kUnknown = static_cast<std::size_t>(-1);

struct Conn {
    bool open = false;
    int peer = -1;  // the other end, -1 if none
    int node = -1;  // for a node connection: the node's index
    std::size_t body_left = kUnknown;  // -r: response body still to come
};

std::vector<Conn> g_conns;  // indexed by fd
std::vector<int> g_node_ports;
std::vector<std::vector<int>> g_idle;  // -r: idle connections per node
bool g_per_request = false;
int g_epfd = -1;

void
die(const char* what)
{
    std::perror(what);
    std::exit(1);
}

Conn&
conn(int fd)
{
    if (static_cast<std::size_t>(fd) >= g_conns.size())
        g_conns.resize(fd + 1);
    return g_conns[fd];
}

void
set_nodelay(int fd)
{
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

void
watch(int fd)
{
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.fd = fd;
    if (epoll_ctl(g_epfd, EPOLL_CTL_ADD, fd, &ev) < 0)
        die("epoll_ctl");
}

void
close_one(int fd)
{
    Conn& c = conn(fd);
    if (c.node >= 0) {
        auto& idle = g_idle[c.node];
        for (std::size_t i = 0; i < idle.size(); ++i)
            if (idle[i] == fd) {
                idle[i] = idle.back();
                idle.pop_back();
                break;
            }
    }
    c = Conn{};
    close(fd);
}

void
close_pair(int fd)
{
    int peer = conn(fd).peer;
    close_one(fd);
    if (peer >= 0)
        close_one(peer);
}

// Writes all of [p, p + n) to fd, waiting in poll() when the socket is full.
bool
write_all(int fd, const char* p, std::size_t n)
{
    while (n > 0) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w > 0) {
            p += w;
            n -= static_cast<std::size_t>(w);
        } else if (w < 0 && errno == EAGAIN) {
            pollfd pfd{fd, POLLOUT, 0};
            poll(&pfd, 1, 1000);
        } else if (w < 0 && errno == EINTR) {
            continue;
        } else {
            return false;
        }
    }
    return true;
}

int
connect_node(int node)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0)
        return -1;
    sockaddr_in sa{};
    sa.sin_family = AF_INET;
    sa.sin_port = htons(static_cast<uint16_t>(g_node_ports[node]));
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) < 0) {
        close(fd);
        return -1;
    }
    fcntl(fd, F_SETFL, O_NONBLOCK);
    set_nodelay(fd);
    Conn& c = conn(fd);
    c = Conn{};
    c.open = true;
    c.node = node;
    watch(fd);
    return fd;
}

// -r: an idle connection to the node, or a new one.
int
take_node(int node)
{
    auto& idle = g_idle[node];
    if (!idle.empty()) {
        int fd = idle.back();
        idle.pop_back();
        return fd;
    }
    return connect_node(node);
}

// -r: the body length a response announces, from the head at the start of
// [p, p + n); kUnknown when the head is not all there or has no length.
std::size_t
body_length(const char* p, std::size_t n, std::size_t* head_len)
{
    std::string_view s(p, n);
    std::size_t end = s.find("\r\n\r\n");
    if (end == std::string_view::npos)
        return kUnknown;
    *head_len = end + 4;
    for (std::size_t at = s.find("\r\n"); at < end;) {
        std::size_t next = s.find("\r\n", at + 2);
        std::string_view line = s.substr(at + 2, next - at - 2);
        if (line.size() > 15 &&
            strncasecmp(line.data(), "content-length:", 15) == 0)
            return std::strtoull(line.data() + 15, nullptr, 10);
        at = next;
    }
    return kUnknown;
}

// Bytes from a node connection: to its client; in -r mode the connection
// goes back to its pool once the response is complete.
void
from_node(int fd, const char* p, std::size_t n)
{
    Conn& c = conn(fd);
    int client = c.peer;
    if (client < 0 || !write_all(client, p, n)) {
        close_pair(fd);
        return;
    }
    if (!g_per_request)
        return;
    if (c.body_left == kUnknown) {
        std::size_t head_len = 0;
        c.body_left = body_length(p, n, &head_len);
        if (c.body_left == kUnknown) {
            close_pair(fd);  // not what the relay is for
            return;
        }
        n -= head_len;
    }
    c.body_left -= std::min(n, c.body_left);
    if (c.body_left == 0) {
        c.body_left = kUnknown;
        c.peer = -1;
        conn(client).peer = -1;
        g_idle[c.node].push_back(fd);
    }
}

void
from_client(int fd, const char* p, std::size_t n, std::size_t* next_node)
{
    Conn& c = conn(fd);
    if (c.peer < 0) {
        int s = take_node(static_cast<int>(*next_node % g_node_ports.size()));
        ++*next_node;
        if (s < 0) {
            close_one(fd);
            return;
        }
        conn(fd).peer = s;
        conn(s).peer = fd;
    }
    if (!write_all(conn(fd).peer, p, n))
        close_pair(fd);
}

}  // namespace

int
main(int argc, char** argv)
{
    int port = 0;
    int opt;
    while ((opt = getopt(argc, argv, "p:r")) != -1) {
        if (opt == 'p')
            port = std::atoi(optarg);
        else if (opt == 'r')
            g_per_request = true;
        else
            return 64;
    }
    for (int i = optind; i < argc; ++i)
        g_node_ports.push_back(std::atoi(argv[i]));
    if (port <= 0 || g_node_ports.empty()) {
        std::fprintf(stderr, "usage: relay [-r] -p PORT NODE_PORT...\n");
        return 64;
    }
    g_idle.resize(g_node_ports.size());
    signal(SIGPIPE, SIG_IGN);

    int lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    int one = 1;
    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    sockaddr_in sa{};
    sa.sin_family = AF_INET;
    sa.sin_port = htons(static_cast<uint16_t>(port));
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(lfd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) < 0)
        die("bind");
    if (listen(lfd, 1024) < 0)
        die("listen");
    g_epfd = epoll_create1(0);
    if (g_epfd < 0)
        die("epoll_create1");
    watch(lfd);

    static char buf[kBufSize];
    epoll_event events[kMaxEvents];
    std::size_t next_node = 0;
    for (;;) {
        int n = epoll_wait(g_epfd, events, kMaxEvents, -1);
        if (n < 0 && errno != EINTR)
            die("epoll_wait");
        for (int i = 0; i < n; ++i) {
            int fd = events[i].data.fd;
            if (fd == lfd) {
                int c;
                while ((c = accept4(lfd, nullptr, nullptr, SOCK_NONBLOCK)) >=
                       0) {
                    set_nodelay(c);
                    conn(c) = Conn{};
                    conn(c).open = true;
                    watch(c);
                    if (g_per_request)
                        continue;
                    int s = connect_node(
                        static_cast<int>(next_node++ % g_node_ports.size()));
                    if (s < 0) {
                        close_one(c);
                        continue;
                    }
                    conn(c).peer = s;
                    conn(s).peer = c;
                }
                continue;
            }
            if (!conn(fd).open)
                continue;  // closed earlier in this batch with its peer
            ssize_t r = recv(fd, buf, sizeof buf, 0);
            if (r > 0) {
                auto len = static_cast<std::size_t>(r);
                if (conn(fd).node >= 0)
                    from_node(fd, buf, len);
                else
                    from_client(fd, buf, len, &next_node);
            } else if (r == 0 || (errno != EAGAIN && errno != EINTR)) {
                close_pair(fd);
            }
        }
    }
}
