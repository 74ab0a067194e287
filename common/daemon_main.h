#pragma once
// The life of a sunjammer daemon, shared by cached, balancerd and
// heartbeatd: options, configuration, the privileged parent (pid file,
// listening sockets, control socket, signals, supervision) and the
// unprivileged children. A daemon supplies a DaemonSpec; main() calls
// daemon_main().

#include <ev.h>
#include <sys/types.h>

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "common/config.h"

namespace sj {

class ControlServer;
class DaemonState;

// What a child gets: its own loop, the configuration of its generation and
// the listening sockets the parent bound for it. The descriptors are the
// child's own copies: a worker closes them when it shuts down, so that the
// kernel stops queueing connections for it.
struct WorkerContext {
    struct Listener {
        ListenConfig config;
        int fd = -1;
    };
    struct ev_loop* loop = nullptr;
    std::shared_ptr<const Config> config;
    int index = 0;
    unsigned generation = 0;
    std::vector<Listener> listeners;
    // The daemon's parent-side state as this child inherited it at fork
    // (shared memory mappings stay shared); nullptr if the daemon has none.
    DaemonState* state = nullptr;
};

// What a daemon keeps in the parent across generations of children: shared
// memory its workers use, sockets to its children, its own control
// commands. Lives in the parent from start to exit; children get a pointer
// to their inherited copy in WorkerContext::state.
class DaemonState {
public:
    virtual ~DaemonState() = default;

    // Called in the parent with the configuration about to take effect: at
    // start and on every reload, after the configuration was validated and
    // before the new generation of children is forked. Return false with
    // *err set to refuse the configuration (a reload then keeps the old
    // one; at start the daemon exits 1).
    virtual bool configure(std::shared_ptr<const Config> config,
                           unsigned generation, std::string* err) = 0;

    // Registers the daemon's own control commands; called once, in the
    // parent, before the control socket opens.
    virtual void add_commands(ControlServer& control) = 0;

    // Called in each child right after fork, before the worker is built:
    // close what the child must not hold (e.g. the parent's end of a
    // socketpair). Default: nothing.
    virtual void after_fork() noexcept {}

    // Called in the parent when a child has exited and been reaped, before
    // it is respawned, whatever way it ended: give back what it held in
    // shared memory (a SIGKILLed worker gives back nothing itself).
    // Default: nothing.
    virtual void child_exited(pid_t pid) noexcept { (void)pid; }

    // Extra "key: value\n" lines for the status command. Default: none.
    virtual std::string status() const { return {}; }
};

// The daemon's work inside a child.
class Worker {
public:
    virtual ~Worker() = default;
    // Stop taking new work (close or stop watching listeners) and call
    // `idle` once in-flight work has finished. Called at most once.
    virtual void shutdown(std::function<void()> idle) noexcept = 0;
};

struct DaemonSpec {
    const char* name = nullptr;         // "cached"
    const char* child_role = "worker";  // how children are named in logs
    // How many children a configuration asks for.
    std::function<int(const Config&)> children;
    // The sockets the parent binds for a configuration (may be empty).
    std::function<std::vector<ListenConfig>(const Config&)> listeners;
    // Daemon-specific requirements beyond the shared validation; throws
    // ConfigError (e.g. "no balancerd section").
    std::function<void(const Config&)> check;
    // Builds the worker in a child, after privileges were dropped. Returns
    // nullptr after logging why, and the child exits 1.
    std::function<std::unique_ptr<Worker>(WorkerContext&)> make_worker;
    // Builds the parent-side state, once, on the parent's loop; optional.
    std::function<std::unique_ptr<DaemonState>(struct ev_loop*)> make_state;
};

// Runs the daemon; returns the process exit status.
int daemon_main(int argc, char** argv, const DaemonSpec& spec);

// The default configuration file.
inline constexpr const char* kDefaultConfigFile = SYSCONFDIR
    "/sunjammer/sunjammer.conf";

// Where a daemon's pid file and control socket live.
std::string pid_file_path(const Config& config, const std::string& daemon);
std::string control_socket_path(const Config& config,
                                const std::string& daemon);

}  // namespace sj
