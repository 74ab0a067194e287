#pragma once
// One attempt at checking one node, on the checker's libev loop. Every probe
// is non-blocking from start to finish: it only ever waits through libev
// watchers, so a node that accepts a connection and never answers costs a
// file descriptor until the checker's timeout destroys the probe, and
// nothing else.
//
// Life of a probe: built by make_probe(), start() once, then exactly one
// call of the Done callback, or destruction first (the checker's timeout).
// Before calling Done a probe releases what it holds (watchers, socket,
// MYSQL handle, child process), so the callback may destroy it at leisure;
// the destructor releases whatever is still held.

#include <ev.h>
#include <openssl/ssl.h>

#include <functional>
#include <memory>
#include <string>

#include "common/address.h"
#include "common/config.h"
#include "heartbeatd/messages.h"

namespace sj::hb {

struct ProbeTarget {
    std::string pool;
    std::string node;
    Address address;
    std::string address_text;
    CheckConfig check;
};

struct ProbeResult {
    Outcome outcome = Outcome::kFail;
    std::string reason;  // "connect: connection refused", "status 503", ...
};

class Probe {
public:
    using Done = std::function<void(ProbeResult)>;

    Probe(struct ev_loop* loop, const ProbeTarget& target) noexcept
        : loop_(loop), target_(target)
    {}
    virtual ~Probe() = default;
    Probe(const Probe&) = delete;
    Probe& operator=(const Probe&) = delete;

    // Starts the check. `done` may be called before start() returns (a
    // connect refused at once).
    void start(Done done) noexcept
    {
        done_ = std::move(done);
        begin();
    }

protected:
    virtual void begin() noexcept = 0;
    // Releases every resource; called before Done and by destructors.
    virtual void release() noexcept = 0;

    void finish(Outcome outcome, std::string reason) noexcept
    {
        release();
        if (!done_)
            return;
        Done d = std::move(done_);
        done_ = nullptr;
        d(ProbeResult{outcome, std::move(reason)});
    }
    void pass(std::string reason = "ok") noexcept
    {
        finish(Outcome::kPass, std::move(reason));
    }
    void fail(std::string reason) noexcept
    {
        finish(Outcome::kFail, std::move(reason));
    }

    struct ev_loop* loop_;
    const ProbeTarget& target_;

private:
    Done done_;
};

// A probe for target.check.type (http, tcp, memcached, mysql, script).
// `tls_ctx` is the client context for http checks with tls = true (may be
// null otherwise). The target must outlive the probe.
std::unique_ptr<Probe> make_probe(struct ev_loop* loop,
                                  const ProbeTarget& target, SSL_CTX* tls_ctx);

// Factories for each type; defined in check_*.cc.
std::unique_ptr<Probe> make_http_probe(
    struct ev_loop* loop, const ProbeTarget& target, SSL_CTX* tls_ctx);
std::unique_ptr<Probe> make_tcp_probe(struct ev_loop* loop,
                                      const ProbeTarget& target);
std::unique_ptr<Probe> make_memcached_probe(struct ev_loop* loop,
                                            const ProbeTarget& target);
std::unique_ptr<Probe> make_mysql_probe(struct ev_loop* loop,
                                        const ProbeTarget& target);
std::unique_ptr<Probe> make_script_probe(struct ev_loop* loop,
                                         const ProbeTarget& target);

// "connection refused" from an errno: strerror, lowercased.
std::string errno_text(int err);

}  // namespace sj::hb
