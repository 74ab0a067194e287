#pragma once
// Socket helpers for the daemons: listening, non-blocking connect and
// accept, socket options, peer credentials. Errors are values (an empty
// UniqueFd and an errno or a message), never exceptions, so these are safe
// to call from event-loop callbacks.
//
// Every socket made here is non-blocking and close-on-exec: a notify script
// the parent runs must not inherit a listener or a client connection.

#include <sys/socket.h>
#include <sys/types.h>

#include <string>

#include "common/address.h"
#include "common/unique_fd.h"

namespace sj {

// Binds and listens on `addr`. TCP sockets get SO_REUSEADDR (a restart must
// not wait out TIME_WAIT) and, for IPv6, IPV6_V6ONLY (so "[::]:80" and
// "0.0.0.0:80" can both be configured). For a Unix path that exists: a
// socket nobody listens on (left by a dead process) is removed and replaced;
// a live one, or a path that is not a socket, is refused. On failure returns
// an empty fd and sets *err to a message naming the address.
UniqueFd listen_socket(const Address& addr, int backlog, std::string* err);

struct PendingConnect {
    UniqueFd fd;
    // True while the connection is being set up: wait for the fd to become
    // writable, then call finish_connect().
    bool in_progress = false;
};

// Starts a non-blocking connect to `addr`. On failure the result's fd is
// empty and *err_out holds the errno (ECONNREFUSED, ENETUNREACH, ...; for a
// Unix socket whose listener's backlog is full, EAGAIN). TCP connections
// get TCP_NODELAY: the daemons write whole requests and responses.
PendingConnect connect_nonblocking(const Address& addr, int* err_out) noexcept;

// After a connect in progress became writable: 0 if it succeeded, the
// errno it failed with otherwise (from SO_ERROR).
int finish_connect(int fd) noexcept;

// Accepts one connection as a non-blocking, close-on-exec socket. If
// `peer` is non-null it receives the peer address and *peer_len its length.
// On failure returns an empty fd with *err_out set: EAGAIN when no client is
// waiting; ECONNABORTED, EMFILE, ENFILE, ENOBUFS, ENOMEM are transient (log,
// maybe pause accepting, and go on); EINTR is retried here.
UniqueFd accept_nonblocking(int listen_fd, sockaddr_storage* peer,
                            socklen_t* peer_len, int* err_out) noexcept;

// Each returns false with errno set on failure.
bool set_nonblocking(int fd) noexcept;
bool set_cloexec(int fd) noexcept;
bool set_nodelay(int fd) noexcept;

struct PeerCred {
    pid_t pid = 0;
    uid_t uid = 0;
    gid_t gid = 0;
};

// The credentials of the process at the other end of a connected Unix
// socket, as of connect() (SO_PEERCRED). False with errno set on failure.
bool peer_credentials(int fd, PeerCred* out) noexcept;

// Converts a kernel socket address (from accept(), getsockname()) into an
// Address; false for families other than IPv4, IPv6 and named Unix.
bool sockaddr_to_address(const sockaddr* sa, socklen_t len, Address* out);

// The address a socket is bound to, e.g. to learn the port the kernel
// picked for port 0 in a test. False with errno set on failure.
bool local_address(int fd, Address* out);

}  // namespace sj
