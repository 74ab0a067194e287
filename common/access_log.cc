#include "common/access_log.h"

#include <fcntl.h>
#include <syslog.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "common/log.h"

namespace sj {

AccessLog::AccessLog(struct ev_loop* loop, std::string target)
    : loop_(loop), path_(std::move(target))
{
    ev_timer_init(&timer_, on_timer, kFlushInterval, 0.);
    timer_.data = this;
    ev_timer_init(&retry_, on_retry, 0.05, 0.05);
    retry_.data = this;
    if (path_.empty())
        return;
    if (path_ == "syslog") {
        mode_ = Mode::kSyslog;
        return;
    }
    mode_ = Mode::kFile;
    open_file();
}

AccessLog::~AccessLog()
{
    flush();
    ev_timer_stop(loop_, &timer_);
    ev_timer_stop(loop_, &retry_);
}

bool
AccessLog::open_file(bool quiet) noexcept
{
    int fd = ::open(path_.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC,
                    0640);
    if (fd < 0) {
        if (!quiet)
            log_error("access log %s: %s", path_.c_str(), std::strerror(errno));
        return false;
    }
    fd_.reset(fd);
    return true;
}

void
AccessLog::on_retry(struct ev_loop*, ev_timer* w, int) noexcept
{
    auto* self = static_cast<AccessLog*>(w->data);
    bool last = ++self->retries_ >= 40;
    if (self->open_file(!last) || last)
        ev_timer_stop(self->loop_, &self->retry_);
}

void
AccessLog::write(const std::string& line) noexcept
{
    if (mode_ == Mode::kSyslog) {
        syslog(LOG_INFO, "%s", line.c_str());
        return;
    }
    if (mode_ != Mode::kFile)
        return;
    buf_ += line;
    buf_ += '\n';
    if (buf_.size() >= kFlushSize)
        flush();
    else if (!ev_is_active(&timer_)) {
        // Set each time: a one-shot libev timer that fired or was stopped
        // keeps only what was left of it, and would fire at once.
        ev_timer_set(&timer_, kFlushInterval, 0.);
        ev_timer_start(loop_, &timer_);
    }
}

void
AccessLog::flush() noexcept
{
    ev_timer_stop(loop_, &timer_);
    if (buf_.empty())
        return;
    if (fd_) {
        size_t off = 0;
        while (off < buf_.size()) {
            ssize_t n = ::write(fd_.get(), buf_.data() + off,
                                buf_.size() - off);
            if (n < 0 && errno == EINTR)
                continue;
            if (n <= 0)
                break;
            off += static_cast<size_t>(n);
        }
    }
    buf_.clear();
}

void
AccessLog::reopen() noexcept
{
    if (mode_ != Mode::kFile)
        return;
    flush();
    fd_.reset();
    if (!open_file(true)) {
        retries_ = 0;
        ev_timer_start(loop_, &retry_);
    }
}

void
AccessLog::on_timer(struct ev_loop*, ev_timer* w, int) noexcept
{
    static_cast<AccessLog*>(w->data)->flush();
}

}  // namespace sj
