// relay: the balancer benchmark's floor. A one-thread epoll relay that
// makes the same system calls per request as any user-space balancer on
// keep-alive connections must (a read and a write on each side, an
// epoll_wait for many requests) and does almost nothing else: no HTTP
// parsing beyond finding a response's length, no timers, no logging. Its
// CPU time per request is what the kernel charges for forwarding a request
// and its response through a process on this machine; a real balancer's
// own work comes on top.
//
//   relay [-r | -u] -p PORT NODE_PORT [NODE_PORT...]
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
// -u: io_uring instead of epoll (a node connection per client, as without
// -r): a recv is queued on every connection, its completion queues a send
// of what came to the other end, that send's completion queues the next
// recv, and one io_uring_enter() submits and reaps a whole batch. The same
// work in the kernel's TCP code without the readiness round trip; what the
// floor would be for a balancer built on io_uring. Built in when
// liburing's header is there at compile time (-DRELAY_URING -luring).
//
// Nodes are on 127.0.0.1. A short write is finished before anything else
// happens (blocking until the peer drains). Standalone, like responder.cc:
// c++ -O2 -o relay relay.cc  [-DRELAY_URING -luring]
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
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string_view>
#include <vector>

#ifdef RELAY_URING
#include <liburing.h>
#endif

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

// The entry for fd in a table indexed by descriptor, made on first use.
template <typename T>
T&
by_fd(std::vector<T>& table, int fd)
{
    if (static_cast<std::size_t>(fd) >= table.size())
        table.resize(static_cast<std::size_t>(fd) + 1);
    return table[static_cast<std::size_t>(fd)];
}

Conn&
conn(int fd)
{
    return by_fd(g_conns, fd);
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

// A connected socket to the node, in blocking mode, Nagle off; -1 if the
// connection failed.
int
dial(int node)
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
    set_nodelay(fd);
    return fd;
}

int
connect_node(int node)
{
    int fd = dial(node);
    if (fd < 0)
        return -1;
    fcntl(fd, F_SETFL, O_NONBLOCK);
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

#ifdef RELAY_URING

// -u: each connection has a buffer of its own, which holds what was read
// from it until the send of those bytes to its peer completes.
struct UringConn {
    bool open = false;
    int peer = -1;
    std::size_t pending = 0;  // bytes at the front of buf not yet sent
    std::vector<char> buf;
};

enum UringOp : std::uint64_t { kAccept = 1, kRecv, kSend };

io_uring g_ring;
std::vector<UringConn> g_uconns;

std::uint64_t
tag(UringOp op, int fd)
{
    return (static_cast<std::uint64_t>(op) << 32) |
           static_cast<std::uint32_t>(fd);
}

io_uring_sqe*
next_sqe()
{
    io_uring_sqe* sqe = io_uring_get_sqe(&g_ring);
    if (sqe == nullptr) {  // the ring is full: submit what is there
        io_uring_submit(&g_ring);
        sqe = io_uring_get_sqe(&g_ring);
    }
    return sqe;
}

UringConn&
uconn(int fd)
{
    return by_fd(g_uconns, fd);
}

void
queue_recv(int fd)
{
    io_uring_sqe* sqe = next_sqe();
    io_uring_prep_recv(sqe, fd, uconn(fd).buf.data(), uconn(fd).buf.size(), 0);
    io_uring_sqe_set_data64(sqe, tag(kRecv, fd));
}

void
queue_send(int fd)
{
    UringConn& c = uconn(fd);
    io_uring_sqe* sqe = next_sqe();
    io_uring_prep_send(sqe, c.peer, c.buf.data(), c.pending, MSG_NOSIGNAL);
    io_uring_sqe_set_data64(sqe, tag(kSend, fd));
}

void
queue_accept(int lfd)
{
    io_uring_sqe* sqe = next_sqe();
    io_uring_prep_accept(sqe, lfd, nullptr, nullptr, 0);
    io_uring_sqe_set_data64(sqe, tag(kAccept, lfd));
}

// Closes fd and its peer; completions still to come for them are ignored
// (their connections are no longer open; a reused fd number is open again
// only after its accept, whose recv is queued afresh).
void
uring_close_pair(int fd)
{
    int peer = uconn(fd).peer;
    for (int x : {fd, peer}) {
        if (x < 0 || !uconn(x).open)
            continue;
        uconn(x).open = false;
        uconn(x).peer = -1;
        close(x);
    }
}

void
open_uconn(int fd, int peer)
{
    UringConn& c = uconn(fd);
    c.open = true;
    c.peer = peer;
    c.pending = 0;
    c.buf.resize(kBufSize);
    queue_recv(fd);
}

[[noreturn]] void
run_uring(int lfd)
{
    io_uring_params params{};
    // Completions are processed only inside io_uring_enter(), by this one
    // thread: no interrupting task work, no wake-ups while it runs.
    params.flags = IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN;
    int err = io_uring_queue_init_params(4096, &g_ring, &params);
    if (err < 0) {
        errno = -err;
        die("io_uring_queue_init_params");
    }
    // The listening socket blocks too (see the accept below).
    fcntl(lfd, F_SETFL, 0);
    queue_accept(lfd);
    std::size_t next_node = 0;
    for (;;) {
        err = io_uring_submit_and_wait(&g_ring, 1);
        if (err < 0 && err != -EINTR) {
            errno = -err;
            die("io_uring_submit_and_wait");
        }
        io_uring_cqe* cqe;
        unsigned head;
        unsigned seen = 0;
        io_uring_for_each_cqe(&g_ring, head, cqe)
        {
            ++seen;
            std::uint64_t data = io_uring_cqe_get_data64(cqe);
            auto op = static_cast<UringOp>(data >> 32);
            int fd = static_cast<int>(static_cast<std::uint32_t>(data));
            int res = cqe->res;
            if (op == kAccept) {
                queue_accept(lfd);
                if (res < 0)
                    continue;
                // Blocking, as dial() leaves it: io_uring waits for
                // readiness itself, and answers EAGAIN instead for a socket
                // in non-blocking mode.
                int s = dial(
                    static_cast<int>(next_node++ % g_node_ports.size()));
                if (s < 0) {
                    close(res);
                    continue;
                }
                set_nodelay(res);
                open_uconn(res, s);
                open_uconn(s, res);
                continue;
            }
            if (!uconn(fd).open)
                continue;
            if (res <= 0) {
                uring_close_pair(fd);
                continue;
            }
            UringConn& c = uconn(fd);
            if (op == kRecv) {
                c.pending = static_cast<std::size_t>(res);
                queue_send(fd);
            } else if (static_cast<std::size_t>(res) < c.pending) {
                c.pending -= static_cast<std::size_t>(res);  // short send
                std::memmove(c.buf.data(), c.buf.data() + res, c.pending);
                queue_send(fd);
            } else {
                c.pending = 0;
                queue_recv(fd);
            }
        }
        io_uring_cq_advance(&g_ring, seen);
    }
}

#endif  // RELAY_URING

}  // namespace

int
main(int argc, char** argv)
{
    int port = 0;
    int opt;
    bool uring = false;
    while ((opt = getopt(argc, argv, "p:ru")) != -1) {
        if (opt == 'p')
            port = std::atoi(optarg);
        else if (opt == 'r')
            g_per_request = true;
        else if (opt == 'u')
            uring = true;
        else
            return 64;
    }
    for (int i = optind; i < argc; ++i)
        g_node_ports.push_back(std::atoi(argv[i]));
#ifndef RELAY_URING
    if (uring) {
        std::fprintf(stderr, "relay: built without io_uring (liburing-dev)\n");
        return 69;
    }
#endif
    if (port <= 0 || g_node_ports.empty() || (uring && g_per_request)) {
        std::fprintf(stderr, "usage: relay [-r | -u] -p PORT NODE_PORT...\n");
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
#ifdef RELAY_URING
    if (uring)
        run_uring(lfd);
#endif
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
