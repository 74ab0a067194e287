#pragma once
// Process plumbing shared by the three daemons: detaching from the terminal,
// the pid file, dropping privileges, resource limits. Each call either
// succeeds or returns false with *err set to a message for the operator.

#include <sys/types.h>

#include <string>

#include "common/unique_fd.h"

namespace sj {

// Forks twice and detaches (setsid), so the daemon is re-parented to init
// and can never reacquire a controlling terminal; stdin/stdout/stderr go to
// /dev/null. Returns in the grandchild only, with *ready set to a pipe: the
// original process waits on it and exits 0 once daemon_ready() is called
// on it, or 1 if the daemon dies first. So an init script that starts the
// daemon learns whether it started, and finds the final pid file.
bool daemonize(UniqueFd* ready, std::string* err) noexcept;

// Tells the waiting original process that startup succeeded.
void daemon_ready(UniqueFd* ready) noexcept;

// A pid file held with an exclusive flock() for the life of the process.
// Invariant once acquire() succeeded: the file at path() contains our pid
// and its inode is locked by us, so a second instance that opens it fails
// to lock it and refuses to start.
class PidFile {
public:
    PidFile() = default;
    PidFile(PidFile&&) = default;
    PidFile& operator=(PidFile&&) = default;
    ~PidFile();

    // Takes the lock and writes getpid(). If another live process holds the
    // lock, returns false with *err = "already running (pid N)".
    bool acquire(const std::string& path, std::string* err) noexcept;
    // Rewrites the file with getpid() after daemonize() changed our pid;
    // the lock carries over (fork shares the locked open file).
    bool update(std::string* err) noexcept;
    // Unlinks the file if we hold it (on a clean exit).
    void remove() noexcept;
    // Closes our descriptors without unlinking: a forked child must not
    // keep the parent's lock alive after the parent has gone.
    void abandon() noexcept;
    const std::string& path() const noexcept { return path_; }

private:
    bool publish(std::string* err) noexcept;
    std::string path_;
    UniqueFd fd_;
};

// Reads the pid recorded in a pid file; 0 if absent or unreadable.
pid_t read_pid_file(const std::string& path) noexcept;

// The identity children switch to.
struct Credentials {
    uid_t uid = 0;
    gid_t gid = 0;
    std::string user;
    std::string group;
};

// Looks up `user` and `group` ("" = the user's primary group).
bool resolve_credentials(const std::string& user, const std::string& group,
                         Credentials* out, std::string* err) noexcept;

// Switches to `cred` for good (initgroups, setgid, setuid) and checks that
// root cannot be regained. A no-op returning true when not running as root.
bool drop_privileges(const Credentials& cred, std::string* err) noexcept;

// Raises RLIMIT_NOFILE towards `want` (capped by the hard limit unless we
// are root). Returns the limit now in force.
long raise_nofile(long want) noexcept;

// The CPUs this process may run on (its affinity mask, as set by taskset or
// a cpuset), at least 1: what "one worker per CPU" counts, so a daemon
// confined to two CPUs of a large machine starts two workers, not one per
// CPU of the machine.
int usable_cpus() noexcept;

// mkdir -p with `mode` for the last component.
bool make_dirs(const std::string& path, mode_t mode, std::string* err) noexcept;

// Looks up a group id by name; -1 if there is no such group.
long group_id(const std::string& name) noexcept;

}  // namespace sj
