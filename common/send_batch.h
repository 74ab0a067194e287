#pragma once
// Many non-blocking sends, on as many sockets, in one system call.
//
// An event loop that answers what one poll returned writes to many sockets
// (responses to clients, requests to nodes), and each send() is a system
// call; where the receiving process shares the CPU (a node beside
// balancerd), each return from one is also a point where that process,
// woken by the data, takes the CPU: a context switch per send. Queued here
// and submitted through io_uring in one io_uring_enter() at the end of the
// loop iteration, the same sends cost one kernel entry and at most one such
// switch. Measured with bench/relay.cc (a node connection per client, 1 KiB
// responses, the relay on one CPU and wrk on the other): 8.0-8.3 µs of CPU
// per request against 12.3-12.9 with a send() each.
//
// Every send is MSG_DONTWAIT: it completes inside submit(), with the bytes
// written (perhaps fewer than asked), -EAGAIN when the socket is full, or
// another -errno, exactly as send() would have answered. Nothing is left in
// flight once submit() returns, so the caller's buffers are its own again
// and it carries on as after a send() (a full socket: wait until writable).
//
// Where io_uring is not available (an old kernel, kernel.io_uring_disabled,
// a seccomp profile that refuses it) open() fails and says why; the caller
// then sends directly.

#include <sys/types.h>

#include <cstddef>
#include <string>
#include <vector>

struct io_uring;

namespace sj {

class SendBatch {
public:
    SendBatch() noexcept;
    ~SendBatch();
    SendBatch(const SendBatch&) = delete;
    SendBatch& operator=(const SendBatch&) = delete;

    // Sets up the ring; false with *err set if io_uring is not available.
    bool open(std::string* err) noexcept;
    bool is_open() const noexcept { return ring_ != nullptr; }

    // Queues a send of [data, data + len) on fd (len > 0); returns its
    // index in the next submit()'s results. The bytes must stay where they
    // are, unchanged, until submit() returns. At most one send per socket
    // per submit(): a short first send would let a second one's bytes
    // overtake the rest of the first's.
    size_t add(int fd, const void* data, size_t len);
    size_t size() const noexcept { return sends_.size(); }

    // Sends everything queued and empties the queue; (*results)[i] is what
    // send() would have returned for the i-th add(): bytes written, or
    // -errno.
    void submit(std::vector<ssize_t>* results);

private:
    struct Send {
        int fd;
        const void* data;
        size_t len;
    };

    // Submits sends_[from, to) at once and waits for all their completions.
    void submit_some(size_t from, size_t to, std::vector<ssize_t>* results);

    io_uring* ring_ = nullptr;
    unsigned entries_ = 0;
    std::vector<Send> sends_;
};

}  // namespace sj
