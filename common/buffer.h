#pragma once
// A byte buffer for non-blocking network I/O: bytes arrive at the write end
// (read_from(), append(), or ensure() + commit()) and leave from the read end
// (write_to(), or data() + consume()).
//
// Storage is one contiguous block, so a parser can look at all unread bytes
// at once. The block never grows past the limit given at construction: a
// peer that sends faster than we drain, or an endless header, makes ensure()
// fail instead of making the process grow without bound.

#include <sys/types.h>

#include <cstddef>
#include <cstdlib>
#include <memory>
#include <string_view>

namespace sj {

// Invariants (checked by CHECK where a caller could break them):
//   0 <= rpos_ <= wpos_ <= cap_ <= limit_
//   the readable bytes are [rpos_, wpos_), the writable span [wpos_, cap_)
//   buf_ == nullptr exactly when cap_ == 0
//   after consume() empties the buffer, rpos_ == wpos_ == 0, so an emptied
//   buffer offers its whole capacity without a copy
//   ensure() moves the readable bytes to the front (compaction) when the
//   tail cannot fit the request or rpos_ has passed half of cap_; every
//   pointer from data() or write_ptr() is invalid after ensure(), append(),
//   read_from() or release_memory()
class Buffer {
public:
    static constexpr size_t kDefaultLimit = 1024 * 1024;
    // The first allocation and the unit read_from() asks room for.
    static constexpr size_t kMinCapacity = 4096;
    static constexpr size_t kReadChunk = 16384;

    // `limit`: the most bytes the buffer may ever hold (>= 1).
    explicit Buffer(size_t limit = kDefaultLimit) noexcept;
    ~Buffer() = default;
    Buffer(Buffer&& o) noexcept;
    Buffer& operator=(Buffer&& o) noexcept;
    Buffer(const Buffer&) = delete;
    Buffer& operator=(const Buffer&) = delete;

    // The readable bytes; valid until the next call that writes.
    const char* data() const noexcept { return buf_.get() + rpos_; }
    size_t size() const noexcept { return wpos_ - rpos_; }
    bool empty() const noexcept { return wpos_ == rpos_; }
    std::string_view view() const noexcept { return {data(), size()}; }

    size_t capacity() const noexcept { return cap_; }
    size_t limit() const noexcept { return limit_; }
    // Bytes that could still be added before the limit is reached.
    size_t room() const noexcept { return limit_ - size(); }

    // The writable span [write_ptr(), write_ptr() + writable()).
    char* write_ptr() noexcept { return buf_.get() + wpos_; }
    size_t writable() const noexcept { return cap_ - wpos_; }

    // Makes writable() >= n, compacting or growing (to at most the limit).
    // Returns false, leaving the buffer unchanged, if that would exceed the
    // limit or memory is exhausted.
    bool ensure(size_t n) noexcept;
    // Marks n bytes written at write_ptr() as readable; n <= writable().
    void commit(size_t n) noexcept;
    // Drops the first n readable bytes; n <= size().
    void consume(size_t n) noexcept;
    // Copies len bytes to the end; false (nothing copied) past the limit.
    bool append(const void* p, size_t len) noexcept;
    bool append(std::string_view s) noexcept
    {
        return append(s.data(), s.size());
    }
    // Drops every readable byte, keeping the memory.
    void clear() noexcept { rpos_ = wpos_ = 0; }
    // Frees the memory if the buffer is empty, so an idle keep-alive
    // connection holds none; a no-op otherwise.
    void release_memory() noexcept;

    // One read(2) of up to `max` (> 0) bytes from a non-blocking fd into
    // the end. Returns the number of bytes read (> 0), 0 at end of file,
    // -EAGAIN if nothing is available now, -ENOBUFS if the buffer is at its
    // limit (the caller must consume first or give up on the peer), -ENOMEM
    // if it cannot grow, or -errno for an error. EINTR is retried.
    ssize_t read_from(int fd, size_t max = kReadChunk) noexcept;

    // One write of the readable bytes to a non-blocking fd, consuming what
    // was written. Sockets are written with MSG_NOSIGNAL, so a closed peer
    // gives -EPIPE, never SIGPIPE (other fds, e.g. pipes, fall back to
    // writev() after an ENOTSOCK, and get SIGPIPE's default). Returns the
    // bytes written (> 0), 0 if the buffer was empty, -EAGAIN if the fd
    // cannot take any now, or -errno.
    ssize_t write_to(int fd) noexcept;

private:
    struct FreeDeleter {
        void operator()(char* p) const noexcept { std::free(p); }
    };
    void compact() noexcept;

    std::unique_ptr<char, FreeDeleter> buf_;
    size_t rpos_ = 0;
    size_t wpos_ = 0;
    size_t cap_ = 0;
    size_t limit_;
};

// Writes the readable bytes of bufs[0..n) in order with one writev-style
// call (e.g. a response head and its body), consuming from each what was
// written. Null entries are skipped. Returns as Buffer::write_to() does.
ssize_t write_buffers(int fd, Buffer* const* bufs, size_t n) noexcept;

}  // namespace sj
