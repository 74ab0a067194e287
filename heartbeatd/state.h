#pragma once
// heartbeatd's parent-side state (the DaemonState hooks of daemon_main.h):
// the node table and its state machine, the socketpair to the checker
// child, the links to the daemons it notifies, the notify scripts, and the
// control commands "show checks", "show nodes", "check now", "node
// maintenance".
//
// Node states and how they change (the parent decides; the checker only
// reports each check's outcome):
//   unknown      until the first result, which decides at once (so a
//                restarted heartbeatd learns the truth in one interval)
//   up           `rise` consecutive passes from down or lagging
//   down         `fall` consecutive failures from up or lagging
//   lagging      mysql only: reachable but replication behind or broken;
//                `fall` consecutive lagging results from up, `rise` from down
//   maintenance  set and cleared by "node maintenance"; not checked while
//                set, and reported as down; cleared -> unknown
// Invariant: every change is logged once, pushed once to each connected
// link, and given to the notify script once, in the order it happened.

#include <ev.h>

#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "common/config.h"
#include "common/daemon_main.h"
#include "common/unique_fd.h"
#include "heartbeatd/control_link.h"
#include "heartbeatd/messages.h"
#include "heartbeatd/notify.h"

namespace sj::hb {

enum class Health : uint8_t { kUnknown, kUp, kDown, kLagging, kMaintenance };

const char* health_name(Health h) noexcept;

struct NodeState {
    std::string pool, node;
    std::string address;
    std::string type;  // check type
    int rise = 2, fall = 2;
    std::string notify_script;
    Health health = Health::kUnknown;
    double since = 0;    // wall-clock time of the last change
    std::string reason;  // why it is in its state
    // The last result.
    bool has_result = false;
    Outcome last = Outcome::kFail;
    std::string last_reason;
    double last_latency = 0;  // seconds
    double last_time = 0;
    // Consecutive results of the same outcome, and that outcome.
    Outcome streak_kind = Outcome::kPass;
    int streak = 0;
    int passes = 0, failures = 0;  // consecutive passes / non-passes
    unsigned long long checks = 0;
};

class HeartbeatState : public DaemonState {
public:
    explicit HeartbeatState(struct ev_loop* loop) noexcept;
    ~HeartbeatState() override;

    bool configure(std::shared_ptr<const Config> config, unsigned generation,
                   std::string* err) override;
    void add_commands(ControlServer& control) override;
    void after_fork() noexcept override;
    std::string status() const override;

    // The checker child's end of the socketpair (valid in the child after
    // fork; the child must not close it: a respawned checker reuses it).
    int checker_fd() const noexcept { return child_fd_.get(); }

private:
    static void on_checker(struct ev_loop*, ev_io* w, int) noexcept;
    void receive() noexcept;
    void apply(const Message& m) noexcept;
    void change(NodeState& n, Health to, const std::string& reason) noexcept;
    void update_origin() noexcept;
    void send_checker(MsgType type, const NodeState& n) noexcept;
    NodeState* find(const std::string& pool_node) noexcept;
    std::string node_line(const NodeState& n) const;
    bool wants(const std::string& daemon, const NodeState& n) const;
    std::vector<std::string> snapshot(const std::string& daemon) const;
    std::string show_checks() const;
    std::string show_nodes() const;

    struct ev_loop* loop_;
    std::shared_ptr<const Config> config_;
    UniqueFd parent_fd_, child_fd_;
    ev_io checker_io_{};
    // In configuration order; keyed lookups go through index_.
    std::vector<std::unique_ptr<NodeState>> nodes_;
    std::map<std::string, NodeState*> index_;
    std::set<std::string> balancerd_pools_, cached_pools_;
    std::string origin_pool_;
    Health origin_ = Health::kUnknown;
    std::map<std::string, std::unique_ptr<ControlLink>> links_;
    NotifyRunner notify_;
};

std::unique_ptr<DaemonState> make_state(struct ev_loop* loop);

}  // namespace sj::hb
