#pragma once
// The process-wide logger: the one piece of global mutable state besides the
// process role. Messages go to stderr (foreground, -d), to syslog (daemon),
// or to a file; reopen() serves SIGUSR1 so logrotate can move the file.
//
// Style: lowercase, no trailing period, subject first:
//   sj::log_warn("php2: marked down after %d failed checks", n);

#include <sys/types.h>

#include <cstdarg>
#include <string>

namespace sj {

enum class LogLevel : int { kError = 0, kWarn, kNotice, kInfo, kDebug };

enum class LogTarget : int { kStderr, kSyslog, kFile };

// Parses "error", "warn", "notice", "info", "debug"; false if unknown.
bool parse_log_level(const std::string& s, LogLevel* out) noexcept;
const char* log_level_name(LogLevel level) noexcept;

// Sets up logging for process `ident` (the daemon's name). For kFile, `path`
// is opened for appending; on failure the logger falls back to stderr and
// returns false.
bool log_open(const char* ident, LogTarget target, const std::string& path,
              LogLevel level) noexcept;
void log_set_level(LogLevel level) noexcept;
LogLevel log_level() noexcept;
// Adds " [role]" after the ident, e.g. "cached[worker 2]"; call after fork.
void log_set_role(const std::string& role) noexcept;
// The owner a log file is given when we create or reopen it as root, so
// that unprivileged children can reopen it after logrotate moved it.
void log_set_file_owner(uid_t uid, gid_t gid) noexcept;
// Reopens the log file (SIGUSR1); a no-op for stderr and syslog.
bool log_reopen() noexcept;

void log_msg(LogLevel level, const char* fmt, ...) noexcept
    __attribute__((format(printf, 2, 3)));
void log_vmsg(LogLevel level, const char* fmt, va_list ap) noexcept;

#define SJ_LOG_FN(name, lvl)                 \
    void name(const char* fmt, ...) noexcept \
        __attribute__((format(printf, 1, 2)));
SJ_LOG_FN(log_error, kError)
SJ_LOG_FN(log_warn, kWarn)
SJ_LOG_FN(log_notice, kNotice)
SJ_LOG_FN(log_info, kInfo)
SJ_LOG_FN(log_debug, kDebug)
#undef SJ_LOG_FN

}  // namespace sj
