// cached: the caching reverse proxy (the Squid role). This release runs the
// daemon's lifecycle, control socket and strict HTTP front end on its
// listeners; caching and forwarding to the origin arrive with the caching
// release, and until then a well-formed request is answered 503.

#include <unistd.h>

#include <memory>

#include "common/config.h"
#include "common/daemon_main.h"
#include "common/http_front.h"
#include "common/log.h"

namespace {

class CachedFront : public sj::HttpFront {
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
        a.body = "cached: requests are not forwarded in this release\n";
        return a;
    }
};

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
    spec.make_worker = [](sj::WorkerContext& ctx)
        -> std::unique_ptr<sj::Worker> {
        sj::HttpFrontOptions opts;
        opts.limits = ctx.config->cached.limits;
        return std::make_unique<CachedFront>(ctx, opts);
    };
    return sj::daemon_main(argc, argv, spec);
}
