// balancerd: the load balancer (the perlbal/HAProxy role). This release runs
// the daemon's lifecycle, control socket and strict HTTP front end on its
// listeners; balancing over the pool arrives with the balancing release,
// and until then a well-formed request is answered 503.

#include <memory>

#include "common/config.h"
#include "common/daemon_main.h"
#include "common/http_front.h"

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
    spec.make_worker = [](sj::WorkerContext& ctx) {
        return sj::make_unrouted_front(ctx, ctx.config->balancerd.limits,
                                       "balancerd");
    };
    return sj::daemon_main(argc, argv, spec);
}
