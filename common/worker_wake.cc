#include "common/worker_wake.h"

#include <sys/socket.h>
#include <sys/un.h>

#include <cerrno>
#include <cstdio>

namespace sj {

namespace {

socklen_t
wake_address(const char* daemon, pid_t parent, int index,
             struct sockaddr_un* a) noexcept
{
    *a = {};
    a->sun_family = AF_UNIX;
    // sun_path[0] stays 0: an abstract name.
    int n = std::snprintf(a->sun_path + 1, sizeof a->sun_path - 1,
                          "sunjammer-%s-%d-%d", daemon,
                          static_cast<int>(parent), index);
    if (n < 0 || static_cast<size_t>(n) >= sizeof a->sun_path - 1)
        n = static_cast<int>(sizeof a->sun_path - 2);
    return static_cast<socklen_t>(
        offsetof(struct sockaddr_un, sun_path) + 1 + static_cast<size_t>(n));
}

}  // namespace

WorkerWake::WorkerWake(struct ev_loop* loop, Handler handler,
                       void* arg) noexcept
    : loop_(loop), handler_(handler), arg_(arg)
{
    ev_io_init(&io_, on_read, -1, EV_READ);
    io_.data = this;
}

WorkerWake::~WorkerWake()
{
    stop();
}

bool
WorkerWake::open(const char* daemon, pid_t parent, int index) noexcept
{
    stop();
    daemon_ = daemon;
    parent_ = parent;
    fd_.reset(::socket(AF_UNIX, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
    if (!fd_)
        return false;
    struct sockaddr_un a;
    socklen_t len = wake_address(daemon, parent, index, &a);
    if (::bind(fd_.get(), reinterpret_cast<struct sockaddr*>(&a), len) < 0)
        return false;  // fd_ stays: it can still send
    ev_io_set(&io_, fd_.get(), EV_READ);
    ev_io_start(loop_, &io_);
    return true;
}

bool
WorkerWake::open_sender(const char* daemon, pid_t parent) noexcept
{
    stop();
    daemon_ = daemon;
    parent_ = parent;
    fd_.reset(::socket(AF_UNIX, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
    return static_cast<bool>(fd_);
}

void
WorkerWake::stop() noexcept
{
    ev_io_stop(loop_, &io_);
}

bool
WorkerWake::send(int index, const void* msg, size_t len) noexcept
{
    if (!fd_)
        return false;
    struct sockaddr_un a;
    socklen_t alen = wake_address(daemon_, parent_, index, &a);
    return ::sendto(fd_.get(), msg, len, MSG_DONTWAIT,
                    reinterpret_cast<struct sockaddr*>(&a), alen) >= 0;
}

void
WorkerWake::on_read(struct ev_loop*, ev_io* w, int) noexcept
{
    auto* self = static_cast<WorkerWake*>(w->data);
    char buf[kMaxMessage];
    // Bounded: a flood of messages does not hold the loop.
    for (int i = 0; i < 256; ++i) {
        ssize_t n = ::recv(self->fd_.get(), buf, sizeof buf, MSG_DONTWAIT);
        if (n < 0)
            return;
        self->handler_(self->arg_, buf, static_cast<size_t>(n));
    }
}

}  // namespace sj
