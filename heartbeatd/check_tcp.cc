// The tcp check (a connect, nothing more), the probe factory, and helpers
// shared by the checks.

#include <cctype>
#include <cstring>

#include "heartbeatd/probe.h"
#include "heartbeatd/stream_probe.h"

namespace sj::hb {

namespace {

class TcpProbe : public StreamProbe {
public:
    TcpProbe(struct ev_loop* loop, const ProbeTarget& target) noexcept
        : StreamProbe(loop, target, nullptr)
    {}

private:
    void on_connected() noexcept override { pass("connected"); }
    void on_input(bool) noexcept override {}
};

}  // namespace

std::string
errno_text(int err)
{
    std::string s = std::strerror(err);
    if (!s.empty())
        s[0] = static_cast<char>(
            std::tolower(static_cast<unsigned char>(s[0])));
    return s;
}

std::unique_ptr<Probe>
make_tcp_probe(struct ev_loop* loop, const ProbeTarget& target)
{
    return std::make_unique<TcpProbe>(loop, target);
}

std::unique_ptr<Probe>
make_probe(struct ev_loop* loop, const ProbeTarget& target, SSL_CTX* tls_ctx)
{
    const std::string& type = target.check.type;
    if (type == "http")
        return make_http_probe(loop, target, tls_ctx);
    if (type == "tcp")
        return make_tcp_probe(loop, target);
    if (type == "memcached")
        return make_memcached_probe(loop, target);
    if (type == "mysql")
        return make_mysql_probe(loop, target);
    if (type == "script")
        return make_script_probe(loop, target);
    return nullptr;
}

}  // namespace sj::hb
