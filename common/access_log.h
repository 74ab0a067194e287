#pragma once
// The access log of cached and balancerd: one line per request (each
// daemon formats its own; see cached(8) and balancerd(8)), written to a
// file opened for appending, or to syslog. Lines are gathered in a
// buffer and written when it fills or at the latest kFlushInterval later,
// so a busy worker makes one write(2) for many requests.

#include <ev.h>

#include <string>

#include "common/unique_fd.h"

namespace sj {

class AccessLog {
public:
    static constexpr double kFlushInterval = 0.2;
    static constexpr size_t kFlushSize = 32768;

    // `target`: a path, "syslog", or "" (no access log).
    AccessLog(struct ev_loop* loop, std::string target);
    ~AccessLog();
    AccessLog(const AccessLog&) = delete;
    AccessLog& operator=(const AccessLog&) = delete;

    bool enabled() const noexcept { return mode_ != Mode::kNone; }
    // Appends one line (without its newline).
    void write(const std::string& line) noexcept;
    // Writes what is buffered.
    void flush() noexcept;
    // Reopens the file (SIGUSR1 after logrotate moved it). Workers run
    // unprivileged and the parent creates the new file as it gets the same
    // signal: if the file is not there yet, retries for a second or so.
    void reopen() noexcept;

private:
    enum class Mode : uint8_t { kNone, kFile, kSyslog };
    static void on_timer(struct ev_loop*, ev_timer* w, int) noexcept;
    static void on_retry(struct ev_loop*, ev_timer* w, int) noexcept;
    bool open_file(bool quiet = false) noexcept;

    struct ev_loop* loop_;
    std::string path_;
    Mode mode_ = Mode::kNone;
    UniqueFd fd_;
    std::string buf_;
    ev_timer timer_{};
    ev_timer retry_{};
    int retries_ = 0;
};

}  // namespace sj
