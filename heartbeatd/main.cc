// heartbeatd: health and failover (the heartbeat/keepalived role). The
// privileged parent keeps the node states and tells the other daemons
// (state.cc); one unprivileged checker child runs the health checks
// (checker.cc). Heartbeats between peers and address takeover arrive with
// the failover release.

#include <memory>

#include "common/daemon_main.h"
#include "heartbeatd/checker.h"
#include "heartbeatd/state.h"

int
main(int argc, char** argv)
{
    sj::DaemonSpec spec;
    spec.name = "heartbeatd";
    spec.child_role = "checker";
    spec.children = [](const sj::Config&) { return 1; };
    spec.make_worker = sj::hb::make_checker;
    spec.make_state = sj::hb::make_state;
    return sj::daemon_main(argc, argv, spec);
}
