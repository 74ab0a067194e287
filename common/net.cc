#include "common/net.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cstddef>
#include <cstring>
#include <utility>

namespace sj {

namespace {

constexpr int kSockFlags = SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC;

int
family_of(const Address& addr) noexcept
{
    switch (addr.family) {
    case Address::Family::kInet: return AF_INET;
    case Address::Family::kInet6: return AF_INET6;
    case Address::Family::kUnix: return AF_UNIX;
    }
    return AF_UNSPEC;
}

std::string
sys_error(const Address& addr, const char* what, int e)
{
    return addr.to_string() + ": " + what + ": " + std::strerror(e);
}

// Makes way for binding a Unix socket at addr.path. A socket file whose
// listener is gone is what a crashed daemon leaves behind, and must not keep
// the restarted one down; a live listener is another instance of us (or
// someone else) and must not be silently robbed of its socket.
bool
clear_stale_unix(const Address& addr, std::string* err)
{
    struct stat st;
    if (::lstat(addr.path.c_str(), &st) < 0) {
        if (errno == ENOENT)
            return true;
        *err = sys_error(addr, "stat", errno);
        return false;
    }
    if (!S_ISSOCK(st.st_mode)) {
        *err = addr.to_string() + ": path exists and is not a socket";
        return false;
    }
    UniqueFd probe(::socket(AF_UNIX, kSockFlags, 0));
    if (!probe) {
        *err = sys_error(addr, "socket", errno);
        return false;
    }
    int r = ::connect(probe.get(), addr.sa(), addr.len);
    if (r == 0 || errno == EAGAIN || errno == EINPROGRESS) {
        // EAGAIN: alive, its backlog is merely full.
        *err = addr.to_string() +
               ": a running process is listening on this socket";
        return false;
    }
    if (errno != ECONNREFUSED) {
        *err = sys_error(addr, "connect to existing socket", errno);
        return false;
    }
    if (::unlink(addr.path.c_str()) < 0 && errno != ENOENT) {
        *err = sys_error(addr, "unlink stale socket", errno);
        return false;
    }
    return true;
}

}  // namespace

UniqueFd
listen_socket(const Address& addr, int backlog, std::string* err)
{
    if (addr.is_unix() && !clear_stale_unix(addr, err))
        return UniqueFd();
    UniqueFd fd(::socket(family_of(addr), kSockFlags, 0));
    if (!fd) {
        *err = sys_error(addr, "socket", errno);
        return UniqueFd();
    }
    int one = 1;
    if (!addr.is_unix() && ::setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR,
                                        &one, sizeof one) < 0) {
        *err = sys_error(addr, "setsockopt SO_REUSEADDR", errno);
        return UniqueFd();
    }
    if (addr.family == Address::Family::kInet6 &&
        ::setsockopt(fd.get(), IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one) <
            0) {
        *err = sys_error(addr, "setsockopt IPV6_V6ONLY", errno);
        return UniqueFd();
    }
    if (::bind(fd.get(), addr.sa(), addr.len) < 0) {
        *err = sys_error(addr, "bind", errno);
        return UniqueFd();
    }
    if (::listen(fd.get(), backlog) < 0) {
        *err = sys_error(addr, "listen", errno);
        return UniqueFd();
    }
    return fd;
}

PendingConnect
connect_nonblocking(const Address& addr, int* err_out) noexcept
{
    PendingConnect pc;
    UniqueFd fd(::socket(family_of(addr), kSockFlags, 0));
    if (!fd) {
        *err_out = errno;
        return pc;
    }
    if (!addr.is_unix())
        (void)set_nodelay(fd.get());  // an optimisation, not a requirement
    int r;
    do
        r = ::connect(fd.get(), addr.sa(), addr.len);
    while (r < 0 && errno == EINTR);
    if (r < 0) {
        if (errno != EINPROGRESS) {
            *err_out = errno;
            return pc;
        }
        pc.in_progress = true;
    }
    *err_out = 0;
    pc.fd = std::move(fd);
    return pc;
}

int
finish_connect(int fd) noexcept
{
    int e = 0;
    socklen_t len = sizeof e;
    if (::getsockopt(fd, SOL_SOCKET, SO_ERROR, &e, &len) < 0)
        return errno;
    return e;
}

UniqueFd
accept_nonblocking(int listen_fd, sockaddr_storage* peer, socklen_t* peer_len,
                   int* err_out) noexcept
{
    for (;;) {
        socklen_t len = sizeof(sockaddr_storage);
        int fd = ::accept4(listen_fd, reinterpret_cast<sockaddr*>(peer),
                           peer != nullptr ? &len : nullptr,
                           SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd >= 0) {
            if (peer != nullptr && peer_len != nullptr)
                *peer_len = len;
            *err_out = 0;
            return UniqueFd(fd);
        }
        if (errno == EINTR)
            continue;
        *err_out = errno == EWOULDBLOCK ? EAGAIN : errno;
        return UniqueFd();
    }
}

bool
set_nonblocking(int fd) noexcept
{
    int fl = ::fcntl(fd, F_GETFL);
    return fl >= 0 && ::fcntl(fd, F_SETFL, fl | O_NONBLOCK) == 0;
}

bool
set_cloexec(int fd) noexcept
{
    int fl = ::fcntl(fd, F_GETFD);
    return fl >= 0 && ::fcntl(fd, F_SETFD, fl | FD_CLOEXEC) == 0;
}

bool
set_nodelay(int fd) noexcept
{
    int one = 1;
    return ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one) == 0;
}

bool
peer_credentials(int fd, PeerCred* out) noexcept
{
    struct ucred uc {};
    socklen_t len = sizeof uc;
    if (::getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &uc, &len) < 0)
        return false;
    out->pid = uc.pid;
    out->uid = uc.uid;
    out->gid = uc.gid;
    return true;
}

bool
sockaddr_to_address(const sockaddr* sa, socklen_t len, Address* out)
{
    if (sa == nullptr || len <= 0 ||
        static_cast<size_t>(len) > sizeof(sockaddr_storage))
        return false;
    Address a;
    switch (sa->sa_family) {
    case AF_INET:
        if (len < static_cast<socklen_t>(sizeof(sockaddr_in)))
            return false;
        a.family = Address::Family::kInet;
        a.port = ntohs(reinterpret_cast<const sockaddr_in*>(sa)->sin_port);
        break;
    case AF_INET6:
        if (len < static_cast<socklen_t>(sizeof(sockaddr_in6)))
            return false;
        a.family = Address::Family::kInet6;
        a.port = ntohs(reinterpret_cast<const sockaddr_in6*>(sa)->sin6_port);
        break;
    case AF_UNIX: {
        auto* sun = reinterpret_cast<const sockaddr_un*>(sa);
        size_t off = offsetof(sockaddr_un, sun_path);
        if (static_cast<size_t>(len) <= off + 1 || sun->sun_path[0] == '\0')
            return false;  // unnamed or abstract: no path to give
        a.family = Address::Family::kUnix;
        size_t max = std::min(static_cast<size_t>(len) - off,
                              sizeof(sun->sun_path));
        a.path.assign(sun->sun_path, strnlen(sun->sun_path, max));
        break;
    }
    default: return false;
    }
    std::memcpy(&a.ss, sa, static_cast<size_t>(len));
    a.len = len;
    *out = std::move(a);
    return true;
}

bool
local_address(int fd, Address* out)
{
    sockaddr_storage ss{};
    socklen_t len = sizeof ss;
    if (::getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len) < 0)
        return false;
    if (!sockaddr_to_address(reinterpret_cast<sockaddr*>(&ss), len, out)) {
        errno = EAFNOSUPPORT;
        return false;
    }
    return true;
}

}  // namespace sj
