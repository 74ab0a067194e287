// balancerd: the load balancer (the perlbal/HAProxy role). The parent
// keeps the node table in shared memory and serves the control commands
// (state.cc, state_ctl.cc); each worker proxies HTTP requests over the
// pool (proxy.cc, client_conn.cc, client_response.cc) and relays the TCP
// mode's connections (tcp_proxy.cc).

#include <memory>

#include "balancerd/proxy.h"
#include "balancerd/state.h"
#include "common/config.h"
#include "common/daemon_main.h"

int
main(int argc, char** argv)
{
    sj::DaemonSpec spec;
    spec.name = "balancerd";
    spec.children = [](const sj::Config& config) {
        return config.balancerd.workers;
    };
    spec.listeners = [](const sj::Config& config) {
        std::vector<sj::ListenConfig> all = config.balancerd.listen;
        for (const sj::TcpListenConfig& t : config.balancerd.tcp) {
            sj::ListenConfig l;
            l.address = t.listen;
            l.address_text = t.listen_text;
            l.line = t.line;
            all.push_back(l);
        }
        return all;
    };
    spec.check = [](const sj::Config& config) {
        if (!config.balancerd.present)
            throw sj::ConfigError(config.file, 0, "no balancerd section");
    };
    spec.make_state = [](struct ev_loop* loop) {
        return std::make_unique<sj::BalancerState>(loop);
    };
    spec.make_worker = [](sj::WorkerContext& ctx) {
        return sj::make_proxy(ctx);
    };
    return sj::daemon_main(argc, argv, spec);
}
