// cached: the caching reverse proxy (the Squid role, in accelerator mode).
// The parent creates the shared store and serves the control commands
// (state.cc); each worker serves clients from the store and forwards
// misses to the origin (worker.cc, client_conn.cc, fetch.cc, origin.cc).

#include <memory>

#include "cached/state.h"
#include "cached/worker.h"
#include "common/config.h"
#include "common/daemon.h"
#include "common/daemon_main.h"

int
main(int argc, char** argv)
{
    sj::DaemonSpec spec;
    spec.name = "cached";
    spec.children = [](const sj::Config& config) {
        return config.cached.workers > 0 ? config.cached.workers
                                         : sj::usable_cpus();
    };
    spec.listeners = [](const sj::Config& config) {
        return config.cached.listen;
    };
    spec.check = [](const sj::Config& config) {
        if (!config.cached.present)
            throw sj::ConfigError(config.file, 0, "no cached section");
    };
    spec.make_state = [](struct ev_loop* loop) {
        return std::make_unique<sj::CachedState>(loop);
    };
    spec.make_worker = [](sj::WorkerContext& ctx) {
        return sj::make_cache_worker(ctx);
    };
    return sj::daemon_main(argc, argv, spec);
}
