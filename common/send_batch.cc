#include "common/send_batch.h"

#include <liburing.h>
#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "common/check.h"

namespace sj {

namespace {

// Sends per io_uring_enter(); a larger batch is submitted in pieces.
constexpr unsigned kEntries = 256;

}  // namespace

SendBatch::SendBatch() noexcept = default;

SendBatch::~SendBatch()
{
    if (ring_ != nullptr) {
        io_uring_queue_exit(ring_);
        delete ring_;
    }
}

bool
SendBatch::open(std::string* err) noexcept
{
    if (ring_ != nullptr)
        return true;
    auto* ring = new (std::nothrow) io_uring;
    if (ring == nullptr) {
        *err = "out of memory";
        return false;
    }
    io_uring_params p{};
    // Completions are posted only when this thread enters the kernel to
    // submit: nothing interrupts the loop between batches.
    p.flags = IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN;
    int rc = io_uring_queue_init_params(kEntries, ring, &p);
    if (rc == -EINVAL) {
        // A kernel before 6.1 knows neither flag.
        p = io_uring_params{};
        rc = io_uring_queue_init_params(kEntries, ring, &p);
    }
    if (rc < 0) {
        delete ring;
        *err = std::string("io_uring: ") + std::strerror(-rc);
        return false;
    }
    ring_ = ring;
    entries_ = p.sq_entries;
    return true;
}

size_t
SendBatch::add(int fd, const void* data, size_t len)
{
    CHECK(ring_ != nullptr && len > 0);
    sends_.push_back({fd, data, len});
    return sends_.size() - 1;
}

void
SendBatch::submit(std::vector<ssize_t>* results)
{
    results->assign(sends_.size(), 0);
    for (size_t from = 0; from < sends_.size(); from += entries_)
        submit_some(from, std::min(sends_.size(), from + entries_), results);
    sends_.clear();
}

void
SendBatch::submit_some(size_t from, size_t to, std::vector<ssize_t>* results)
{
    for (size_t i = from; i < to; ++i) {
        io_uring_sqe* sqe = io_uring_get_sqe(ring_);
        CHECK(sqe != nullptr);  // the ring holds entries_ and was empty
        const Send& s = sends_[i];
        // MSG_DONTWAIT: a full socket completes with -EAGAIN at once rather
        // than leaving the send in flight until it drains.
        io_uring_prep_send(sqe, s.fd, s.data, s.len,
                           MSG_NOSIGNAL | MSG_DONTWAIT);
        io_uring_sqe_set_data64(sqe, i);
    }
    auto want = static_cast<unsigned>(to - from);
    unsigned seen = 0;
    while (seen < want) {
        int rc = io_uring_submit_and_wait(ring_, want - seen);
        if (rc < 0 && rc != -EINTR && rc != -EAGAIN && rc != -EBUSY)
            CHECK(false && "io_uring_submit_and_wait");
        io_uring_cqe* cqe;
        unsigned head;
        unsigned n = 0;
        io_uring_for_each_cqe(ring_, head, cqe)
        {
            uint64_t i = io_uring_cqe_get_data64(cqe);
            CHECK(i >= from && i < to);
            (*results)[i] = cqe->res;
            ++n;
        }
        io_uring_cq_advance(ring_, n);
        seen += n;
    }
}

}  // namespace sj
