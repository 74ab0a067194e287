#pragma once
// The base of the probes that talk over one TCP connection (tcp, http,
// memcached): a non-blocking connect, an optional TLS handshake, then
// request bytes out and response bytes in, all driven by one ev_io.

#include <ev.h>

#include <string>
#include <string_view>

#include "common/tls.h"
#include "common/unique_fd.h"
#include "heartbeatd/probe.h"

namespace sj::hb {

class StreamProbe : public Probe {
public:
    // With a non-null `tls_ctx` the connection speaks TLS (no certificate
    // verification: a health check asks whether the node answers, and
    // nodes behind a load balancer often have no certificate of their own).
    StreamProbe(struct ev_loop* loop, const ProbeTarget& target,
                SSL_CTX* tls_ctx) noexcept;
    ~StreamProbe() override;

protected:
    void begin() noexcept override;
    void release() noexcept override;

    // The connection (and TLS handshake) is up.
    virtual void on_connected() noexcept = 0;
    // New bytes are in in_ (or the peer closed: eof). The subclass consumes
    // what it parsed and calls pass()/fail() once it knows.
    virtual void on_input(bool eof) noexcept = 0;

    // Queues bytes for the peer.
    void send(std::string_view data) noexcept;

    std::string in_;
    // A response bigger than this is a failure, not a reason to grow.
    static constexpr size_t kMaxInput = 1u << 20;

private:
    enum class Phase : uint8_t { kIdle, kConnecting, kHandshake, kOpen };
    static void on_io(struct ev_loop*, ev_io* w, int revents) noexcept;
    void connected() noexcept;
    void handshake() noexcept;
    void pump() noexcept;
    void watch(int events) noexcept;

    SSL_CTX* tls_ctx_;
    SslPtr ssl_;
    UniqueFd fd_;
    ev_io io_{};
    Phase phase_ = Phase::kIdle;
    std::string out_;
    bool want_write_ = false;  // TLS asked to wait for writability
};

}  // namespace sj::hb
