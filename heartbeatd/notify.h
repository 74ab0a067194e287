#pragma once
// Notify scripts, run by heartbeatd's parent on every node state change:
// /bin/sh -c SCRIPT with the change in the environment (SJ_POOL, SJ_NODE,
// SJ_ADDRESS, SJ_OLD_STATE, SJ_NEW_STATE, SJ_REASON). Scripts of one node
// run one at a time, in the order of the changes (a queue per node), so a
// script never sees "up" overtaken by the "down" before it; scripts of
// different nodes run side by side. A script still running after its
// timeout is killed with its process group.

#include <ev.h>
#include <sys/types.h>

#include <deque>
#include <map>
#include <memory>
#include <string>

namespace sj::hb {

struct NotifyEvent {
    std::string script;
    double timeout = 10.0;
    std::string pool, node, address;
    std::string old_state, new_state, reason;
};

class NotifyRunner {
public:
    // `loop` must be libev's default loop (ev_child watches the scripts).
    explicit NotifyRunner(struct ev_loop* loop) noexcept : loop_(loop) {}
    ~NotifyRunner();
    NotifyRunner(const NotifyRunner&) = delete;
    NotifyRunner& operator=(const NotifyRunner&) = delete;

    // Runs ev.script now, or after the scripts already queued for its node.
    void run(NotifyEvent ev) noexcept;

    // In a forked child: forgets the running scripts without killing them.
    void abandon() noexcept;

    // Scripts running now.
    size_t running() const noexcept { return running_.size(); }

private:
    struct Running {
        NotifyRunner* owner = nullptr;
        std::string key;  // pool/node
        NotifyEvent ev;
        pid_t pid = 0;
        ev_child child{};
        ev_timer timer{};
        bool killed = false;
    };
    void start_next(const std::string& key) noexcept;
    static void on_child(struct ev_loop*, ev_child* w, int) noexcept;
    static void on_timeout(struct ev_loop*, ev_timer* w, int) noexcept;

    struct ev_loop* loop_;
    std::map<std::string, std::deque<NotifyEvent>> queued_;
    std::map<std::string, std::unique_ptr<Running>> running_;
};

}  // namespace sj::hb
