#include "common/log.h"

#include <fcntl.h>
#include <sys/time.h>
#include <syslog.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>

#include "common/check.h"

namespace sj {

namespace {

// The logger is the one piece of process-wide mutable state (STYLE.md).
struct Logger {
    std::string ident = "sunjammer";
    std::string role;
    LogTarget target = LogTarget::kStderr;
    std::string path;
    int fd = STDERR_FILENO;
    LogLevel level = LogLevel::kInfo;
    bool chown_file = false;
    uid_t file_uid = 0;
    gid_t file_gid = 0;
};

Logger g_log;

constexpr const char* kLevelNames[] = {"error", "warn", "notice", "info",
                                       "debug"};

int
syslog_priority(LogLevel level) noexcept
{
    switch (level) {
    case LogLevel::kError: return LOG_ERR;
    case LogLevel::kWarn: return LOG_WARNING;
    case LogLevel::kNotice: return LOG_NOTICE;
    case LogLevel::kInfo: return LOG_INFO;
    case LogLevel::kDebug: return LOG_DEBUG;
    }
    return LOG_INFO;
}

int
open_log_file(const std::string& path) noexcept
{
    int fd = ::open(path.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC,
                    0640);
    if (fd >= 0 && g_log.chown_file && geteuid() == 0 &&
        fchown(fd, g_log.file_uid, g_log.file_gid) < 0) {
        // Not fatal: the parent still logs; children may fail to reopen.
    }
    return fd;
}

}  // namespace

bool
parse_log_level(const std::string& s, LogLevel* out) noexcept
{
    for (int i = 0; i < 5; ++i) {
        if (s == kLevelNames[i]) {
            *out = static_cast<LogLevel>(i);
            return true;
        }
    }
    return false;
}

const char*
log_level_name(LogLevel level) noexcept
{
    int i = static_cast<int>(level);
    return i >= 0 && i < 5 ? kLevelNames[i] : "info";
}

bool
log_open(const char* ident, LogTarget target, const std::string& path,
         LogLevel level) noexcept
{
    if (g_log.target == LogTarget::kFile && g_log.fd > STDERR_FILENO)
        ::close(g_log.fd);
    g_log.ident = ident;
    g_log.level = level;
    g_log.target = target;
    g_log.path = path;
    g_log.fd = STDERR_FILENO;
    if (target == LogTarget::kSyslog) {
        openlog(g_log.ident.c_str(), LOG_PID | LOG_NDELAY, LOG_DAEMON);
    } else if (target == LogTarget::kFile) {
        int fd = open_log_file(path);
        if (fd < 0) {
            g_log.target = LogTarget::kStderr;
            return false;
        }
        g_log.fd = fd;
    }
    return true;
}

void
log_set_level(LogLevel level) noexcept
{
    g_log.level = level;
}

LogLevel
log_level() noexcept
{
    return g_log.level;
}

void
log_set_role(const std::string& role) noexcept
{
    g_log.role = role;
}

void
log_set_file_owner(uid_t uid, gid_t gid) noexcept
{
    g_log.chown_file = true;
    g_log.file_uid = uid;
    g_log.file_gid = gid;
}

bool
log_reopen() noexcept
{
    if (g_log.target != LogTarget::kFile)
        return true;
    int fd = open_log_file(g_log.path);
    if (fd < 0)
        return false;
    // dup2 over the old descriptor, so a child that inherited it after the
    // last reopen keeps writing somewhere valid until it reopens too.
    if (g_log.fd > STDERR_FILENO) {
        ::dup2(fd, g_log.fd);
        ::close(fd);
    } else {
        g_log.fd = fd;
    }
    return true;
}

void
log_vmsg(LogLevel level, const char* fmt, va_list ap) noexcept
{
    if (level > g_log.level)
        return;
    char msg[2048];
    int n = std::vsnprintf(msg, sizeof msg, fmt, ap);
    if (n < 0)
        return;
    // Keep one record on one line: a newline or other control byte from a
    // peer must not forge a second log line.
    for (char* p = msg; *p; ++p)
        if (static_cast<unsigned char>(*p) < 0x20)
            *p = ' ';
    if (g_log.target == LogTarget::kSyslog) {
        if (g_log.role.empty())
            syslog(syslog_priority(level), "%s", msg);
        else
            syslog(syslog_priority(level), "[%s] %s", g_log.role.c_str(), msg);
        return;
    }
    char line[2300];
    struct timeval tv;
    gettimeofday(&tv, nullptr);
    struct tm tm;
    localtime_r(&tv.tv_sec, &tm);
    char ts[40];
    std::strftime(ts, sizeof ts, "%Y-%m-%d %H:%M:%S", &tm);
    int len = std::snprintf(
        line, sizeof line, "%s.%03d %s[%d]%s%s%s %s: %s\n", ts,
        static_cast<int>(tv.tv_usec / 1000), g_log.ident.c_str(),
        static_cast<int>(getpid()), g_log.role.empty() ? "" : " (",
        g_log.role.c_str(), g_log.role.empty() ? "" : ")",
        log_level_name(level), msg);
    if (len < 0)
        return;
    if (static_cast<size_t>(len) >= sizeof line) {
        len = sizeof line - 1;
        line[len - 1] = '\n';
    }
    // One write() per record: O_APPEND keeps lines from several processes
    // whole.
    ssize_t w = ::write(g_log.fd, line, static_cast<size_t>(len));
    (void)w;
}

void
log_msg(LogLevel level, const char* fmt, ...) noexcept
{
    va_list ap;
    va_start(ap, fmt);
    log_vmsg(level, fmt, ap);
    va_end(ap);
}

#define SJ_LOG_FN(name, lvl)                 \
    void name(const char* fmt, ...) noexcept \
    {                                        \
        va_list ap;                          \
        va_start(ap, fmt);                   \
        log_vmsg(LogLevel::lvl, fmt, ap);    \
        va_end(ap);                          \
    }
SJ_LOG_FN(log_error, kError)
SJ_LOG_FN(log_warn, kWarn)
SJ_LOG_FN(log_notice, kNotice)
SJ_LOG_FN(log_info, kInfo)
SJ_LOG_FN(log_debug, kDebug)
#undef SJ_LOG_FN

void
check_failed(const char* file, int line, const char* expr) noexcept
{
    log_error("assertion failed at %s:%d: %s", file, line, expr);
    std::abort();
}

}  // namespace sj
