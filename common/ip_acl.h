#pragma once
// A list of IP networks a peer is matched against: balancerd's `trusted`
// (whose X-Forwarded-For counts) and cached's `purge_allow` (who may
// PURGE). Entries are "192.0.2.7", "10.0.0.0/8", "2001:db8::/32", and
// "unix" for clients on a Unix socket; the configuration loader has
// already checked their syntax.

#include <string>
#include <string_view>
#include <vector>

namespace sj {

class IpAcl {
public:
    // Adds one entry; false (nothing added) if it is malformed.
    bool add(std::string_view entry);

    // Whether the numeric address `ip` ("127.0.0.1", "::1") lies in one of
    // the networks. Text that is not an address matches nothing.
    bool matches(std::string_view ip) const noexcept;

    // Whether "unix" was added.
    bool allows_unix() const noexcept { return unix_; }

private:
    struct Net {
        int family = 0;  // AF_INET or AF_INET6
        unsigned char addr[16] = {};
        int prefix = 0;
    };
    std::vector<Net> nets_;
    bool unix_ = false;
};

}  // namespace sj
