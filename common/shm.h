#pragma once
// Memory shared by a parent and the workers it forks: the cache index in
// cached, per-node counters in balancerd.
//
// The parent maps the region before fork(), so every worker inherits the
// same pages at the same address, and the pages outlive any one worker: a
// worker that crashes leaves the region to the ones still running and to
// the one the parent respawns.

#include <pthread.h>

#include <cstddef>
#include <string>

#include "common/unique_fd.h"

namespace sj {

class ShmRegion {
public:
    ShmRegion() noexcept = default;
    ~ShmRegion() { unmap(); }
    ShmRegion(ShmRegion&& o) noexcept;
    ShmRegion& operator=(ShmRegion&& o) noexcept;
    ShmRegion(const ShmRegion&) = delete;
    ShmRegion& operator=(const ShmRegion&) = delete;

    // Maps `size` bytes (rounded up to whole pages, > 0) of zeroed,
    // anonymous MAP_SHARED memory. On failure returns an empty region and
    // sets *err. Call in the parent before forking the workers.
    static ShmRegion create_anonymous(size_t size, std::string* err);

    // The same, backed by a memfd named `name` (seen in /proc/PID/maps and
    // fd lists, which helps when debugging). fd() can be passed to another
    // process over a Unix socket, which can then map it with attach().
    static ShmRegion create_memfd(const char* name, size_t size,
                                  std::string* err);

    // Maps the whole of an existing shared-memory fd (e.g. a memfd received
    // over SCM_RIGHTS); takes ownership of `fd`.
    static ShmRegion attach(UniqueFd fd, std::string* err);

    void* data() const noexcept { return addr_; }
    // The mapped size: the requested size rounded up to pages.
    size_t size() const noexcept { return size_; }
    // The memfd, or -1 for an anonymous region.
    int fd() const noexcept { return fd_.get(); }
    explicit operator bool() const noexcept { return addr_ != nullptr; }

    // Unmaps (in this process only; other processes keep their mapping).
    void unmap() noexcept;

private:
    void* addr_ = nullptr;
    size_t size_ = 0;
    UniqueFd fd_;
};

// A mutex for data inside a ShmRegion, shared by processes.
//
// Invariant: a process that dies while holding the lock (a worker killed by
// SIGKILL or a crash) never wedges the others. The mutex is robust: the next
// lock() gets EOWNERDEAD, marks the mutex consistent and reports
// owner_died, so the caller knows the protected data may be half-updated and
// must check or reset it before relying on it.
//
// Lives in shared memory: construct it there (placement new) and call
// init() once, in the parent, before fork. Neither copyable nor movable:
// the kernel and other processes know it by its address.
class ShmMutex {
public:
    ShmMutex() noexcept = default;
    ~ShmMutex() = default;
    ShmMutex(const ShmMutex&) = delete;
    ShmMutex& operator=(const ShmMutex&) = delete;

    // Initializes as process-shared and robust; false with *err on failure.
    bool init(std::string* err) noexcept;

    // Blocks until the lock is held. Returns true if the previous owner
    // died holding it (the state is made consistent, the data may not be).
    bool lock() noexcept;
    // Takes the lock if it is free. Returns false if another holds it; on
    // success sets *owner_died as lock() would return.
    bool try_lock(bool* owner_died) noexcept;
    void unlock() noexcept;

private:
    pthread_mutex_t m_;
};

// Holds a ShmMutex for one scope.
class ShmLock {
public:
    explicit ShmLock(ShmMutex* m) noexcept : m_(m), owner_died_(m->lock()) {}
    ~ShmLock() { m_->unlock(); }
    ShmLock(const ShmLock&) = delete;
    ShmLock& operator=(const ShmLock&) = delete;

    // True if the previous holder died inside its critical section.
    bool owner_died() const noexcept { return owner_died_; }

private:
    ShmMutex* m_;
    bool owner_died_;
};

}  // namespace sj
