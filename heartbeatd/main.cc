// heartbeatd: health and failover (the heartbeat/keepalived role). This
// release runs the daemon's lifecycle and control socket with one checker
// child; the checks themselves arrive with the health-check release.

#include <functional>
#include <memory>

#include "common/daemon_main.h"
#include "common/log.h"

namespace {

// The checker child: for now it holds its place in the process tree (so
// supervision, respawn and shutdown are exercised) and has no work to
// drain when asked to stop.
class Checker : public sj::Worker {
public:
    void shutdown(std::function<void()> idle) noexcept override { idle(); }
};

}  // namespace

int
main(int argc, char** argv)
{
    sj::DaemonSpec spec;
    spec.name = "heartbeatd";
    spec.child_role = "checker";
    spec.children = [](const sj::Config&) { return 1; };
    spec.make_worker = [](sj::WorkerContext&) -> std::unique_ptr<sj::Worker> {
        return std::make_unique<Checker>();
    };
    return sj::daemon_main(argc, argv, spec);
}
