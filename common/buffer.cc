#include "common/buffer.h"

#include <errno.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <utility>

#include "common/check.h"

namespace sj {

Buffer::Buffer(size_t limit) noexcept : limit_(limit)
{
    CHECK(limit_ >= 1);
}

Buffer::Buffer(Buffer&& o) noexcept
    : buf_(std::move(o.buf_)), rpos_(std::exchange(o.rpos_, 0)),
      wpos_(std::exchange(o.wpos_, 0)), cap_(std::exchange(o.cap_, 0)),
      limit_(o.limit_)
{}

Buffer&
Buffer::operator=(Buffer&& o) noexcept
{
    if (this != &o) {
        buf_ = std::move(o.buf_);
        rpos_ = std::exchange(o.rpos_, 0);
        wpos_ = std::exchange(o.wpos_, 0);
        cap_ = std::exchange(o.cap_, 0);
        limit_ = o.limit_;
    }
    return *this;
}

void
Buffer::compact() noexcept
{
    if (rpos_ == 0)
        return;
    size_t n = size();
    if (n > 0)
        std::memmove(buf_.get(), buf_.get() + rpos_, n);
    rpos_ = 0;
    wpos_ = n;
}

bool
Buffer::ensure(size_t n) noexcept
{
    if (n <= writable() && rpos_ <= cap_ / 2)
        return true;
    if (n > room())
        return false;
    // Compacting copies fewer than cap_/2 bytes once rpos_ has passed the
    // middle, so its cost is paid for by the bytes consumed to get there.
    if (n <= cap_ - size()) {
        compact();
        return true;
    }
    size_t want = size() + n;
    size_t cap = std::max(cap_ * 2, kMinCapacity);
    cap = std::min(std::max(cap, want), limit_);
    // Compact first, so realloc copies only live bytes.
    compact();
    char* p = static_cast<char*>(std::realloc(buf_.get(), cap));
    if (p == nullptr)
        return false;
    (void)buf_.release();
    buf_.reset(p);
    cap_ = cap;
    return true;
}

void
Buffer::commit(size_t n) noexcept
{
    CHECK(n <= writable());
    wpos_ += n;
}

void
Buffer::consume(size_t n) noexcept
{
    CHECK(n <= size());
    rpos_ += n;
    if (rpos_ == wpos_)
        rpos_ = wpos_ = 0;
}

bool
Buffer::append(const void* p, size_t len) noexcept
{
    if (len == 0)
        return true;
    if (!ensure(len))
        return false;
    std::memcpy(write_ptr(), p, len);
    wpos_ += len;
    return true;
}

void
Buffer::release_memory() noexcept
{
    if (!empty())
        return;
    buf_.reset();
    rpos_ = wpos_ = cap_ = 0;
}

ssize_t
Buffer::read_from(int fd, size_t max) noexcept
{
    CHECK(max > 0);
    size_t want = std::min(max, room());
    if (want == 0)
        return -ENOBUFS;
    if (!ensure(want))
        return -ENOMEM;
    // Read into whatever is writable (up to max) so one call can take more
    // than `want` when the buffer already has the space.
    size_t len = std::min(writable(), max);
    for (;;) {
        // recv() rather than read(): the socket call skips the VFS layer
        // (about 1% of a relayed request's CPU in balancerd); read() for
        // what is not a socket (pipes, files in tests).
        ssize_t r = ::recv(fd, write_ptr(), len, 0);
        if (r < 0 && errno == ENOTSOCK)
            r = ::read(fd, write_ptr(), len);
        if (r > 0) {
            wpos_ += static_cast<size_t>(r);
            return r;
        }
        if (r == 0)
            return 0;
        if (errno == EINTR)
            continue;
        if (errno == EWOULDBLOCK)
            return -EAGAIN;
        return -errno;
    }
}

namespace {

// send() with MSG_NOSIGNAL where the fd is a socket, plain write otherwise
// (pipes, files in tests): SIGPIPE would kill a worker for one dead peer.
// One piece goes with send(), which spares the kernel sendmsg's copying
// and checking of a msghdr and an iovec array.
ssize_t
write_nosignal(int fd, const struct iovec* iov, int iovcnt) noexcept
{
    for (;;) {
        ssize_t r;
        if (iovcnt == 1) {
            r = ::send(fd, iov[0].iov_base, iov[0].iov_len, MSG_NOSIGNAL);
        } else {
            struct msghdr mh {};
            mh.msg_iov = const_cast<struct iovec*>(iov);
            mh.msg_iovlen = static_cast<size_t>(iovcnt);
            r = ::sendmsg(fd, &mh, MSG_NOSIGNAL);
        }
        if (r < 0 && errno == ENOTSOCK)
            r = ::writev(fd, iov, iovcnt);
        if (r >= 0)
            return r;
        if (errno == EINTR)
            continue;
        if (errno == EWOULDBLOCK)
            return -EAGAIN;
        return -errno;
    }
}

}  // namespace

ssize_t
Buffer::write_to(int fd) noexcept
{
    if (empty())
        return 0;
    struct iovec iov = {const_cast<char*>(data()), size()};
    ssize_t r = write_nosignal(fd, &iov, 1);
    if (r > 0)
        consume(static_cast<size_t>(r));
    return r;
}

ssize_t
write_buffers(int fd, Buffer* const* bufs, size_t n) noexcept
{
    constexpr size_t kMaxIov = 64;
    struct iovec iov[kMaxIov];
    int cnt = 0;
    for (size_t i = 0; i < n && cnt < static_cast<int>(kMaxIov); ++i) {
        if (bufs[i] == nullptr || bufs[i]->empty())
            continue;
        iov[cnt].iov_base = const_cast<char*>(bufs[i]->data());
        iov[cnt].iov_len = bufs[i]->size();
        ++cnt;
    }
    if (cnt == 0)
        return 0;
    ssize_t r = write_nosignal(fd, iov, cnt);
    if (r <= 0)
        return r;
    size_t left = static_cast<size_t>(r);
    for (size_t i = 0; i < n && left > 0; ++i) {
        if (bufs[i] == nullptr)
            continue;
        size_t take = std::min(left, bufs[i]->size());
        bufs[i]->consume(take);
        left -= take;
    }
    return r;
}

}  // namespace sj
