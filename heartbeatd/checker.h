#pragma once
// The checker child: runs every node's check on its own libev loop and
// reports each result to the parent over the socketpair (messages.h). It
// decides nothing: rise, fall and the node states belong to the parent.
//
// Per node, a slot: an interval timer (the first start spread at random
// over one interval, then every interval +-10 %), at most one probe at a
// time, and a timeout timer that destroys a probe still running after
// check.timeout and reports a failure. If a check outlasts its interval,
// the next one starts as soon as it ends.

#include <ev.h>

#include <functional>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "common/config.h"
#include "common/daemon_main.h"
#include "common/tls.h"
#include "heartbeatd/probe.h"

namespace sj::hb {

class Checker : public Worker {
public:
    // `fd`: the child's end of the socketpair (not owned: a respawned
    // checker needs it again).
    Checker(struct ev_loop* loop, const Config& config, int fd);
    ~Checker() override;

    void shutdown(std::function<void()> idle) noexcept override;

private:
    struct Slot {
        Checker* owner = nullptr;
        ProbeTarget target;
        std::unique_ptr<Probe> probe;
        ev_timer interval{};
        ev_timer timeout{};
        bool running = false;
        bool due = false;  // the interval passed while a check was running
        bool paused = false;
        double started = 0;
    };

    void start_check(Slot& s) noexcept;
    void finished(Slot& s, ProbeResult r) noexcept;
    void schedule(Slot& s, double after) noexcept;
    double jittered(const Slot& s) noexcept;
    void report(const Slot& s, const ProbeResult& r, double latency) noexcept;
    void send_message(const Message& m) noexcept;
    void receive() noexcept;
    Slot* find(const std::string& pool, const std::string& node) noexcept;
    static void on_interval(struct ev_loop*, ev_timer* w, int) noexcept;
    static void on_timeout(struct ev_loop*, ev_timer* w, int) noexcept;
    static void on_parent(struct ev_loop*, ev_io* w, int) noexcept;

    struct ev_loop* loop_;
    int fd_;
    ev_io parent_io_{};
    SslCtxPtr tls_ctx_;
    std::vector<std::unique_ptr<Slot>> slots_;
    std::mt19937 rng_;
    bool stopping_ = false;
};

// DaemonSpec::make_worker for heartbeatd.
std::unique_ptr<Worker> make_checker(WorkerContext& ctx);

}  // namespace sj::hb
