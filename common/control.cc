#include "common/control.h"

#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>

#include "common/check.h"
#include "common/clock.h"
#include "common/unique_fd.h"

namespace sj {

namespace {

bool
is_blank(char c) noexcept
{
    return c == ' ' || c == '\t';
}

bool
is_digit(char c) noexcept
{
    return c >= '0' && c <= '9';
}

double
now_monotonic() noexcept
{
    return static_cast<double>(monotonic_us()) / 1e6;
}

// Milliseconds left until `deadline`, rounded up so a wait never ends a
// fraction of a millisecond early and spins; 0 once it has passed.
int
ms_left(double deadline) noexcept
{
    double left = deadline - now_monotonic();
    if (left <= 0)
        return 0;
    double ms = std::ceil(left * 1000.0);
    return ms > 1e9 ? 1000000000 : static_cast<int>(ms);
}

std::string
timed_out(const std::string& path, double timeout)
{
    char buf[64];
    std::snprintf(buf, sizeof buf, ": timed out after %.1f s", timeout);
    return path + buf;
}

std::string
sys_error(const char* what, const std::string& path, int e)
{
    return std::string(what) + " " + path + ": " + std::strerror(e);
}

// Waits for `events` on `fd` until `deadline`. Returns 1 when ready, 0 on
// timeout, -1 with errno set on error.
int
wait_fd(int fd, short events, double deadline) noexcept
{
    for (;;) {
        struct pollfd p = {fd, events, 0};
        int n = ::poll(&p, 1, ms_left(deadline));
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return n;
        return 1;
    }
}

// Connects the non-blocking socket `fd` to `sa` before `deadline`.
bool
connect_until(int fd, const struct sockaddr_un& sa, const std::string& path,
              double timeout, double deadline, std::string* err)
{
    for (;;) {
        if (::connect(fd, reinterpret_cast<const struct sockaddr*>(&sa),
                      sizeof sa) == 0)
            return true;
        if (errno == EINTR)
            continue;
        if (errno == EAGAIN) {
            // A Unix socket whose listen queue is full says EAGAIN rather
            // than EINPROGRESS and has no readiness to poll for: retry
            // shortly until the deadline.
            if (ms_left(deadline) == 0) {
                *err = timed_out(path, timeout);
                return false;
            }
            struct timespec ts = {0, 10 * 1000 * 1000};
            nanosleep(&ts, nullptr);
            continue;
        }
        if (errno != EINPROGRESS) {
            *err = sys_error("connect", path, errno);
            return false;
        }
        int r = wait_fd(fd, POLLOUT, deadline);
        if (r < 0) {
            *err = sys_error("connect", path, errno);
            return false;
        }
        if (r == 0) {
            *err = timed_out(path, timeout);
            return false;
        }
        int soerr = 0;
        socklen_t len = sizeof soerr;
        if (::getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &len) < 0)
            soerr = errno;
        if (soerr != 0) {
            *err = sys_error("connect", path, soerr);
            return false;
        }
        return true;
    }
}

// Reads exactly `n` bytes into `buf` before `deadline`. `*got` counts what
// arrived, so the caller can tell a clean close from a truncated reply.
// Returns 1 when complete, 0 on end of file, -1 on error (errno set, or
// ETIMEDOUT).
int
read_exact(int fd, char* buf, size_t n, double deadline, size_t* got) noexcept
{
    *got = 0;
    while (*got < n) {
        int r = wait_fd(fd, POLLIN, deadline);
        if (r < 0)
            return -1;
        if (r == 0) {
            errno = ETIMEDOUT;
            return -1;
        }
        ssize_t k = ::read(fd, buf + *got, n - *got);
        if (k < 0) {
            if (errno == EINTR || errno == EAGAIN)
                continue;
            return -1;
        }
        if (k == 0)
            return 0;
        *got += static_cast<size_t>(k);
    }
    return 1;
}

}  // namespace

bool
control_split(std::string_view line, std::vector<std::string>* words,
              std::string* err)
{
    words->clear();
    std::string word;
    // `in_word` is separate from !word.empty() so that "" yields an empty
    // word, which control_quote() relies on.
    bool in_word = false;
    size_t i = 0;
    while (i < line.size()) {
        char c = line[i];
        if (is_blank(c)) {
            if (in_word) {
                words->push_back(std::move(word));
                word.clear();
                in_word = false;
            }
            ++i;
            continue;
        }
        in_word = true;
        if (c != '"') {
            word += c;
            ++i;
            continue;
        }
        size_t open = i++;
        for (;;) {
            if (i >= line.size()) {
                *err = "unterminated quote at column " +
                       std::to_string(open + 1);
                words->clear();
                return false;
            }
            char q = line[i++];
            if (q == '"')
                break;
            if (q != '\\') {
                word += q;
                continue;
            }
            if (i >= line.size()) {
                *err = "unterminated quote at column " +
                       std::to_string(open + 1);
                words->clear();
                return false;
            }
            char e = line[i++];
            if (e != '"' && e != '\\') {
                *err = std::string("bad escape '\\") + e + "' at column " +
                       std::to_string(i - 1);
                words->clear();
                return false;
            }
            word += e;
        }
    }
    if (in_word)
        words->push_back(std::move(word));
    return true;
}

std::string
control_quote(std::string_view word)
{
    bool plain = !word.empty();
    for (char c : word)
        if (is_blank(c) || c == '"' || c == '\\')
            plain = false;
    if (plain)
        return std::string(word);
    std::string out = "\"";
    for (char c : word) {
        if (c == '"' || c == '\\')
            out += '\\';
        out += c;
    }
    out += '"';
    return out;
}

std::string
control_format_reply(const ControlReply& reply)
{
    // The header has room for three digits and eight; the server clamps what
    // handlers return before it gets here.
    CHECK(reply.status >= 100 && reply.status <= 999);
    bool add_nl = !reply.body.empty() && reply.body.back() != '\n';
    size_t len = reply.body.size() + (add_nl ? 1 : 0);
    CHECK(len <= kControlMaxBody);
    char hdr[kControlHeaderLen + 1];
    int n = std::snprintf(hdr, sizeof hdr, "%03d %-8zu\n", reply.status, len);
    CHECK(n == static_cast<int>(kControlHeaderLen));
    std::string out;
    out.reserve(kControlHeaderLen + len);
    out.append(hdr, kControlHeaderLen);
    out += reply.body;
    if (add_nl)
        out += '\n';
    return out;
}

bool
control_parse_header(std::string_view hdr, int* status, size_t* length)
{
    if (hdr.size() != kControlHeaderLen)
        return false;
    if (!is_digit(hdr[0]) || !is_digit(hdr[1]) || !is_digit(hdr[2]) ||
        hdr[0] == '0' || hdr[3] != ' ' || hdr[12] != '\n')
        return false;
    size_t i = 4;
    size_t len = 0;
    for (; i < 12 && is_digit(hdr[i]); ++i)
        len = len * 10 + static_cast<size_t>(hdr[i] - '0');
    if (i == 4)
        return false;
    for (; i < 12; ++i)
        if (hdr[i] != ' ')
            return false;
    if (len > kControlMaxBody)
        return false;
    *status = (hdr[0] - '0') * 100 + (hdr[1] - '0') * 10 + (hdr[2] - '0');
    *length = len;
    return true;
}

bool
control_call(const std::string& path, const std::string& line, double timeout,
             ControlReply* out, std::string* err)
{
    double deadline = now_monotonic() + timeout;
    if (line.find('\n') != std::string::npos) {
        *err = path + ": command contains a newline";
        return false;
    }
    struct sockaddr_un sa;
    std::memset(&sa, 0, sizeof sa);
    sa.sun_family = AF_UNIX;
    if (path.empty() || path.size() >= sizeof sa.sun_path) {
        *err = path + ": bad socket path length";
        return false;
    }
    std::memcpy(sa.sun_path, path.data(), path.size());

    UniqueFd fd(
        ::socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
    if (!fd) {
        *err = sys_error("socket", path, errno);
        return false;
    }
    if (!connect_until(fd.get(), sa, path, timeout, deadline, err))
        return false;

    std::string req = line + "\n";
    size_t off = 0;
    while (off < req.size()) {
        int r = wait_fd(fd.get(), POLLOUT, deadline);
        if (r < 0) {
            *err = sys_error("write", path, errno);
            return false;
        }
        if (r == 0) {
            *err = timed_out(path, timeout);
            return false;
        }
        // MSG_NOSIGNAL: a daemon that hangs up must be an error here, not a
        // SIGPIPE that kills sjctl.
        ssize_t k = ::send(fd.get(), req.data() + off, req.size() - off,
                           MSG_NOSIGNAL);
        if (k < 0) {
            if (errno == EINTR || errno == EAGAIN)
                continue;
            *err = sys_error("write", path, errno);
            return false;
        }
        off += static_cast<size_t>(k);
    }

    char hdr[kControlHeaderLen];
    size_t got = 0;
    int r = read_exact(fd.get(), hdr, sizeof hdr, deadline, &got);
    if (r < 0) {
        *err = errno == ETIMEDOUT ? timed_out(path, timeout)
                                  : sys_error("read", path, errno);
        return false;
    }
    if (r == 0) {
        *err = path + ": connection closed before the reply";
        return false;
    }
    int status = 0;
    size_t length = 0;
    if (!control_parse_header(std::string_view(hdr, sizeof hdr), &status,
                              &length)) {
        *err = path + ": bad reply header";
        return false;
    }
    std::string body(length, '\0');
    r = read_exact(fd.get(), body.data(), length, deadline, &got);
    if (r < 0) {
        *err = errno == ETIMEDOUT ? timed_out(path, timeout)
                                  : sys_error("read", path, errno);
        return false;
    }
    if (r == 0) {
        *err = path + ": connection closed before the reply (" +
               std::to_string(got) + " of " + std::to_string(length) +
               " body bytes)";
        return false;
    }
    out->status = status;
    out->body = std::move(body);
    return true;
}

}  // namespace sj
