#include "common/ip_acl.h"

#include <arpa/inet.h>
#include <sys/socket.h>

#include <cstdlib>

namespace sj {

namespace {

// Parses a numeric IPv4 or IPv6 address into `addr` (16 bytes).
bool
parse_ip(std::string_view text, int* family, unsigned char* addr) noexcept
{
    char buf[INET6_ADDRSTRLEN + 1];
    if (text.empty() || text.size() >= sizeof buf)
        return false;
    text.copy(buf, text.size());
    buf[text.size()] = '\0';
    if (inet_pton(AF_INET, buf, addr) == 1) {
        *family = AF_INET;
        return true;
    }
    if (inet_pton(AF_INET6, buf, addr) == 1) {
        *family = AF_INET6;
        return true;
    }
    return false;
}

bool
prefix_match(const unsigned char* a, const unsigned char* b, int bits) noexcept
{
    int i = 0;
    for (; bits >= 8; bits -= 8, ++i)
        if (a[i] != b[i])
            return false;
    if (bits == 0)
        return true;
    unsigned char mask = static_cast<unsigned char>(0xff << (8 - bits));
    return (a[i] & mask) == (b[i] & mask);
}

}  // namespace

bool
IpAcl::add(std::string_view entry)
{
    if (entry == "unix") {
        unix_ = true;
        return true;
    }
    Net n;
    std::string_view ip = entry;
    int bits = -1;
    size_t slash = entry.find('/');
    if (slash != std::string_view::npos) {
        ip = entry.substr(0, slash);
        std::string digits(entry.substr(slash + 1));
        char* end = nullptr;
        long v = std::strtol(digits.c_str(), &end, 10);
        if (digits.empty() || *end != '\0' || v < 0 || v > 128)
            return false;
        bits = static_cast<int>(v);
    }
    if (!parse_ip(ip, &n.family, n.addr))
        return false;
    int max = n.family == AF_INET ? 32 : 128;
    if (bits > max)
        return false;
    n.prefix = bits < 0 ? max : bits;
    nets_.push_back(n);
    return true;
}

bool
IpAcl::matches(std::string_view ip) const noexcept
{
    unsigned char a[16];
    int family = 0;
    if (!parse_ip(ip, &family, a))
        return false;
    for (const Net& n : nets_)
        if (n.family == family && prefix_match(a, n.addr, n.prefix))
            return true;
    return false;
}

}  // namespace sj
