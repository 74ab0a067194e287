// balancerd: the load balancer (the perlbal/HAProxy role). This release runs
// the daemon's lifecycle, control socket and strict HTTP front end on its
// listeners; balancing over the pool arrives with the balancing release,
// and until then a well-formed request is answered 503.

#include <memory>

#include "common/config.h"
#include "common/daemon_main.h"
#include "common/http_front.h"
#include "common/log.h"

namespace {

class BalancerdFront : public sj::HttpFront {
public:
    using sj::HttpFront::HttpFront;

protected:
    sj::HttpAnswer
    respond(const sj::HttpMessage& req, const std::string& peer) noexcept
        override
    {
        sj::log_debug("client %s: %.*s %.*s: 503, not forwarding yet",
                      peer.c_str(), static_cast<int>(req.method().size()),
                      req.method().data(),
                      static_cast<int>(req.target().size()),
                      req.target().data());
        sj::HttpAnswer a;
        a.status = 503;
        a.body = "balancerd: requests are not forwarded in this release\n";
        return a;
    }
};

}  // namespace

int
main(int argc, char** argv)
{
    sj::DaemonSpec spec;
    spec.name = "balancerd";
    spec.children = [](const sj::Config& config) {
        return config.balancerd.workers;
    };
    spec.listeners = [](const sj::Config& config) {
        return config.balancerd.listen;
    };
    spec.check = [](const sj::Config& config) {
        if (!config.balancerd.present)
            throw sj::ConfigError(config.file, 0, "no balancerd section");
    };
    spec.make_worker = [](sj::WorkerContext& ctx)
        -> std::unique_ptr<sj::Worker> {
        sj::HttpFrontOptions opts;
        opts.limits = ctx.config->balancerd.limits;
        return std::make_unique<BalancerdFront>(ctx, opts);
    };
    return sj::daemon_main(argc, argv, spec);
}
