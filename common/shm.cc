#include "common/shm.h"

#include <errno.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>
#include <utility>

#include "common/check.h"

namespace sj {

namespace {

size_t
round_to_pages(size_t size) noexcept
{
    size_t page = static_cast<size_t>(::sysconf(_SC_PAGESIZE));
    return (size + page - 1) / page * page;
}

std::string
errno_text(const char* what, int e)
{
    return std::string(what) + ": " + std::strerror(e);
}

}  // namespace

ShmRegion::ShmRegion(ShmRegion&& o) noexcept
    : addr_(std::exchange(o.addr_, nullptr)), size_(std::exchange(o.size_, 0)),
      fd_(std::move(o.fd_))
{}

ShmRegion&
ShmRegion::operator=(ShmRegion&& o) noexcept
{
    if (this != &o) {
        unmap();
        addr_ = std::exchange(o.addr_, nullptr);
        size_ = std::exchange(o.size_, 0);
        fd_ = std::move(o.fd_);
    }
    return *this;
}

void
ShmRegion::unmap() noexcept
{
    if (addr_ != nullptr)
        ::munmap(addr_, size_);
    addr_ = nullptr;
    size_ = 0;
    fd_.reset();
}

ShmRegion
ShmRegion::create_anonymous(size_t size, std::string* err)
{
    ShmRegion r;
    if (size == 0) {
        *err = "shared memory size must be positive";
        return r;
    }
    size_t len = round_to_pages(size);
    void* p = ::mmap(nullptr, len, PROT_READ | PROT_WRITE,
                     MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) {
        *err = errno_text("mmap shared memory", errno);
        return r;
    }
    r.addr_ = p;
    r.size_ = len;
    return r;
}

ShmRegion
ShmRegion::create_memfd(const char* name, size_t size, std::string* err)
{
    if (size == 0) {
        *err = "shared memory size must be positive";
        return ShmRegion();
    }
    UniqueFd fd(::memfd_create(name, MFD_CLOEXEC));
    if (!fd) {
        *err = errno_text("memfd_create", errno);
        return ShmRegion();
    }
    if (::ftruncate(fd.get(), static_cast<off_t>(round_to_pages(size))) < 0) {
        *err = errno_text("ftruncate memfd", errno);
        return ShmRegion();
    }
    return attach(std::move(fd), err);
}

ShmRegion
ShmRegion::attach(UniqueFd fd, std::string* err)
{
    ShmRegion r;
    struct stat st;
    if (::fstat(fd.get(), &st) < 0) {
        *err = errno_text("fstat shared memory", errno);
        return r;
    }
    if (st.st_size <= 0) {
        *err = "shared memory fd is empty";
        return r;
    }
    size_t len = static_cast<size_t>(st.st_size);
    void* p = ::mmap(nullptr, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd.get(),
                     0);
    if (p == MAP_FAILED) {
        *err = errno_text("mmap shared memory", errno);
        return r;
    }
    r.addr_ = p;
    r.size_ = len;
    r.fd_ = std::move(fd);
    return r;
}

bool
ShmMutex::init(std::string* err) noexcept
{
    pthread_mutexattr_t a;
    int e = pthread_mutexattr_init(&a);
    if (e == 0)
        e = pthread_mutexattr_setpshared(&a, PTHREAD_PROCESS_SHARED);
    if (e == 0)
        e = pthread_mutexattr_setrobust(&a, PTHREAD_MUTEX_ROBUST);
    if (e == 0)
        e = pthread_mutex_init(&m_, &a);
    pthread_mutexattr_destroy(&a);
    if (e != 0) {
        *err = errno_text("shared mutex init", e);
        return false;
    }
    return true;
}

bool
ShmMutex::lock() noexcept
{
    int e = pthread_mutex_lock(&m_);
    if (e == EOWNERDEAD) {
        // Without this the mutex turns ENOTRECOVERABLE at unlock and every
        // worker is locked out for good.
        CHECK(pthread_mutex_consistent(&m_) == 0);
        return true;
    }
    // ENOTRECOVERABLE means someone unlocked without making it consistent,
    // which this class never does: the shared state is not trustworthy.
    CHECK(e == 0);
    return false;
}

bool
ShmMutex::try_lock(bool* owner_died) noexcept
{
    int e = pthread_mutex_trylock(&m_);
    if (e == EBUSY)
        return false;
    *owner_died = e == EOWNERDEAD;
    if (*owner_died)
        CHECK(pthread_mutex_consistent(&m_) == 0);
    else
        CHECK(e == 0);
    return true;
}

void
ShmMutex::unlock() noexcept
{
    CHECK(pthread_mutex_unlock(&m_) == 0);
}

}  // namespace sj
