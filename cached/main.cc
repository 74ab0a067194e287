// cached: the caching reverse proxy (the Squid role). This release runs the
// daemon's lifecycle, control socket and strict HTTP front end on its
// listeners; caching and forwarding to the origin arrive with the caching
// release, and until then a well-formed request is answered 503.

#include <unistd.h>

#include <memory>

#include "common/config.h"
#include "common/daemon_main.h"
#include "common/http_front.h"

namespace {

int
ncpu()
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? static_cast<int>(n) : 1;
}

}  // namespace

int
main(int argc, char** argv)
{
    sj::DaemonSpec spec;
    spec.name = "cached";
    spec.children = [](const sj::Config& config) {
        return config.cached.workers > 0 ? config.cached.workers : ncpu();
    };
    spec.listeners = [](const sj::Config& config) {
        return config.cached.listen;
    };
    spec.check = [](const sj::Config& config) {
        if (!config.cached.present)
            throw sj::ConfigError(config.file, 0, "no cached section");
    };
    spec.make_worker = [](sj::WorkerContext& ctx) {
        return sj::make_unrouted_front(ctx, ctx.config->cached.limits,
                                       "cached");
    };
    return sj::daemon_main(argc, argv, spec);
}
