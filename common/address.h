#pragma once
// Socket addresses as they are written in the configuration and on the
// control socket: "unix:/path/to.sock", "host:port", "[v6]:port", "*:port".
// Hosts are numeric literals or "localhost"/"*": name resolution would make
// startup depend on DNS, which a front end must not.

#include <sys/socket.h>

#include <cstdint>
#include <string>
#include <string_view>

namespace sj {

struct Address {
    enum class Family : uint8_t { kInet, kInet6, kUnix };

    Family family = Family::kInet;
    sockaddr_storage ss{};  // ready for bind()/connect()
    socklen_t len = 0;      // bytes of ss in use
    std::string path;       // kUnix only: the filesystem path
    uint16_t port = 0;      // kInet/kInet6 only

    const sockaddr* sa() const noexcept
    {
        return reinterpret_cast<const sockaddr*>(&ss);
    }
    bool is_unix() const noexcept { return family == Family::kUnix; }
    // The canonical text: "unix:/p", "127.0.0.1:80", "[::1]:80".
    std::string to_string() const;
};

// Parses `text`. On failure returns false and sets *err to a message that
// names what is wrong ("port 99999 out of range"), without the input itself.
bool parse_address(std::string_view text, Address* out, std::string* err);

// Formats a peer address from accept()/getpeername(): "1.2.3.4:5",
// "[::1]:5" or "unix" (for an unnamed Unix peer: "unix:" + path if bound).
std::string format_sockaddr(const sockaddr* sa, socklen_t len);

}  // namespace sj
