#include "common/address.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/un.h>

#include <algorithm>
#include <cstddef>
#include <cstring>
#include <string>
#include <utility>

namespace sj {

namespace {

constexpr std::string_view kUnixPrefix = "unix:";
// sun_path must hold the path and its terminating NUL.
constexpr size_t kMaxUnixPath = sizeof(sockaddr_un::sun_path) - 1;

// Quotes a piece of the input for an error message, cut short so a huge
// configuration value cannot make a huge log line.
std::string
quoted(std::string_view s)
{
    constexpr size_t kMax = 32;
    std::string q = "'";
    q += s.substr(0, kMax);
    if (s.size() > kMax)
        q += "...";
    q += "'";
    return q;
}

// Port 0 is refused: for bind() it means "any free port", which nobody could
// then reach, and for connect() it is invalid.
bool
parse_port(std::string_view s, uint16_t* out, std::string* err)
{
    if (s.empty()) {
        *err = "missing port";
        return false;
    }
    unsigned long v = 0;
    for (char c : s) {
        if (c < '0' || c > '9') {
            *err = "bad port " + quoted(s);
            return false;
        }
        if (v <= 65535)
            v = v * 10 + static_cast<unsigned>(c - '0');
    }
    if (v == 0 || v > 65535) {
        std::string shown(s.substr(0, 10));
        if (s.size() > 10)
            shown += "...";
        *err = "port " + shown + " out of range";
        return false;
    }
    *out = static_cast<uint16_t>(v);
    return true;
}

bool
parse_unix(std::string_view path, Address* out, std::string* err)
{
    if (path.empty()) {
        *err = "missing unix socket path";
        return false;
    }
    if (path[0] != '/') {
        // Relative paths would depend on the daemon's working directory,
        // which daemonizing changes to /.
        *err = "unix socket path must be absolute";
        return false;
    }
    if (path.find('\0') != std::string_view::npos) {
        *err = "unix socket path contains a NUL byte";
        return false;
    }
    if (path.size() > kMaxUnixPath) {
        *err = "unix socket path too long (max " +
               std::to_string(kMaxUnixPath) + " bytes)";
        return false;
    }
    Address a;
    a.family = Address::Family::kUnix;
    a.path = std::string(path);
    auto* sun = reinterpret_cast<sockaddr_un*>(&a.ss);
    sun->sun_family = AF_UNIX;
    std::memcpy(sun->sun_path, path.data(), path.size());
    sun->sun_path[path.size()] = '\0';
    a.len = static_cast<socklen_t>(
        offsetof(sockaddr_un, sun_path) + path.size() + 1);
    *out = std::move(a);
    return true;
}

bool
parse_inet6(std::string_view text, Address* out, std::string* err)
{
    size_t close = text.find(']');
    if (close == std::string_view::npos) {
        *err = "missing ']' after IPv6 address";
        return false;
    }
    std::string host(text.substr(1, close - 1));
    std::string_view rest = text.substr(close + 1);
    in6_addr a6;
    if (host.empty() || ::inet_pton(AF_INET6, host.c_str(), &a6) != 1) {
        *err = "bad IPv6 address";
        return false;
    }
    if (rest.empty() || rest[0] != ':') {
        *err = rest.empty() ? "missing port"
                            : "unexpected text after IPv6 address";
        return false;
    }
    uint16_t port;
    if (!parse_port(rest.substr(1), &port, err))
        return false;
    Address a;
    a.family = Address::Family::kInet6;
    a.port = port;
    auto* sin6 = reinterpret_cast<sockaddr_in6*>(&a.ss);
    sin6->sin6_family = AF_INET6;
    sin6->sin6_port = htons(port);
    sin6->sin6_addr = a6;
    a.len = sizeof(sockaddr_in6);
    *out = std::move(a);
    return true;
}

bool
parse_inet(std::string_view text, Address* out, std::string* err)
{
    size_t colon = text.rfind(':');
    std::string_view host = text.substr(0, colon);
    if (host.find(':') != std::string_view::npos) {
        *err = "IPv6 address must be in brackets";
        return false;
    }
    if (colon == std::string_view::npos) {
        *err = "missing port";
        return false;
    }
    if (host.empty()) {
        *err = "missing host";
        return false;
    }
    uint16_t port;
    if (!parse_port(text.substr(colon + 1), &port, err))
        return false;

    in_addr a4;
    if (host == "localhost") {
        a4.s_addr = htonl(INADDR_LOOPBACK);
    } else if (host == "*") {
        a4.s_addr = htonl(INADDR_ANY);
    } else {
        std::string h(host);
        if (::inet_pton(AF_INET, h.c_str(), &a4) != 1) {
            bool numeric = h.find_first_not_of("0123456789.") ==
                           std::string::npos;
            *err = numeric ? "bad IPv4 address"
                           : "bad IPv4 address (host names are not "
                             "resolved; use a numeric address)";
            return false;
        }
    }
    Address a;
    a.family = Address::Family::kInet;
    a.port = port;
    auto* sin = reinterpret_cast<sockaddr_in*>(&a.ss);
    sin->sin_family = AF_INET;
    sin->sin_port = htons(port);
    sin->sin_addr = a4;
    a.len = sizeof(sockaddr_in);
    *out = std::move(a);
    return true;
}

std::string
format_inet(int family, const void* addr, uint16_t port)
{
    char buf[INET6_ADDRSTRLEN];
    if (::inet_ntop(family, addr, buf, sizeof buf) == nullptr)
        return "unknown";
    std::string s;
    if (family == AF_INET6)
        s = std::string("[") + buf + "]";
    else
        s = buf;
    return s + ":" + std::to_string(port);
}

}  // namespace

bool
parse_address(std::string_view text, Address* out, std::string* err)
{
    if (text.empty()) {
        *err = "empty address";
        return false;
    }
    if (text.substr(0, kUnixPrefix.size()) == kUnixPrefix)
        return parse_unix(text.substr(kUnixPrefix.size()), out, err);
    if (text[0] == '[')
        return parse_inet6(text, out, err);
    return parse_inet(text, out, err);
}

std::string
Address::to_string() const
{
    switch (family) {
    case Family::kUnix: return "unix:" + path;
    case Family::kInet:
        return format_inet(AF_INET,
                           &reinterpret_cast<const sockaddr_in*>(&ss)->sin_addr,
                           port);
    case Family::kInet6:
        return format_inet(
            AF_INET6, &reinterpret_cast<const sockaddr_in6*>(&ss)->sin6_addr,
            port);
    }
    return "unknown";
}

std::string
format_sockaddr(const sockaddr* sa, socklen_t len)
{
    if (sa == nullptr || len < static_cast<socklen_t>(sizeof(sa_family_t)))
        return "unknown";
    switch (sa->sa_family) {
    case AF_INET: {
        if (len < static_cast<socklen_t>(sizeof(sockaddr_in)))
            return "unknown";
        auto* sin = reinterpret_cast<const sockaddr_in*>(sa);
        return format_inet(AF_INET, &sin->sin_addr, ntohs(sin->sin_port));
    }
    case AF_INET6: {
        if (len < static_cast<socklen_t>(sizeof(sockaddr_in6)))
            return "unknown";
        auto* sin6 = reinterpret_cast<const sockaddr_in6*>(sa);
        return format_inet(AF_INET6, &sin6->sin6_addr, ntohs(sin6->sin6_port));
    }
    case AF_UNIX: {
        auto* sun = reinterpret_cast<const sockaddr_un*>(sa);
        size_t off = offsetof(sockaddr_un, sun_path);
        if (static_cast<size_t>(len) <= off)
            return "unix";  // unnamed: the usual accept()ed client
        size_t max = std::min(static_cast<size_t>(len) - off,
                              sizeof(sun->sun_path));
        if (sun->sun_path[0] == '\0') {
            // Linux abstract namespace, conventionally shown with '@'.
            if (max <= 1)
                return "unix";
            return "unix:@" + std::string(sun->sun_path + 1,
                                          strnlen(sun->sun_path + 1, max - 1));
        }
        return "unix:" +
               std::string(sun->sun_path, strnlen(sun->sun_path, max));
    }
    default: return "unknown";
    }
}

}  // namespace sj
