#pragma once
// Loopback sockets for the unit tests' scripted servers and clients.
// Failures abort: a test that cannot make a socket cannot say anything.

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstdlib>

namespace sjtest {

// A TCP socket bound to 127.0.0.1 on a port the kernel chose, listening
// with `backlog` unless backlog < 0 (bound only). Sets *port.
inline int
bind_loopback(int backlog, uint16_t* port)
{
    int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in sin{};
    sin.sin_family = AF_INET;
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof sin;
    if (fd < 0 || ::bind(fd, reinterpret_cast<sockaddr*>(&sin), len) ||
        (backlog >= 0 && ::listen(fd, backlog)) ||
        ::getsockname(fd, reinterpret_cast<sockaddr*>(&sin), &len))
        std::abort();
    *port = ntohs(sin.sin_port);
    return fd;
}

// A loopback port nothing listens on (bound, then closed): connecting to
// it is refused, and a server can be started on it.
inline uint16_t
unused_port()
{
    uint16_t port = 0;
    ::close(bind_loopback(-1, &port));
    return port;
}

// A blocking connection to 127.0.0.1:port whose reads and writes give up
// after `timeout_s`, so a broken server fails a test instead of hanging
// it; -1 (and *err) if the connect fails.
inline int
dial_loopback(uint16_t port, int timeout_s, int* err = nullptr)
{
    int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    timeval tv{timeout_s, 0};
    ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    sockaddr_in sin{};
    sin.sin_family = AF_INET;
    sin.sin_port = htons(port);
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (::connect(fd, reinterpret_cast<sockaddr*>(&sin), sizeof sin) != 0) {
        if (err != nullptr)
            *err = errno;
        ::close(fd);
        return -1;
    }
    return fd;
}

}  // namespace sjtest
