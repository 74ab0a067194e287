#include "common/daemon.h"

#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <sched.h>
#include <sys/file.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

namespace sj {

namespace {

std::string
errno_text(const std::string& what)
{
    return what + ": " + std::strerror(errno);
}

}  // namespace

bool
daemonize(UniqueFd* ready, std::string* err) noexcept
{
    int p[2];
    if (pipe2(p, O_CLOEXEC) < 0) {
        *err = errno_text("pipe");
        return false;
    }
    pid_t pid = fork();
    if (pid < 0) {
        *err = errno_text("fork");
        return false;
    }
    if (pid > 0) {
        close(p[1]);
        char c = 0;
        ssize_t n;
        do
            n = read(p[0], &c, 1);
        while (n < 0 && errno == EINTR);
        _exit(n == 1 && c == '1' ? 0 : 1);
    }
    close(p[0]);
    ready->reset(p[1]);
    if (setsid() < 0) {
        *err = errno_text("setsid");
        return false;
    }
    // The second fork makes us a non-leader of the new session, so opening
    // a terminal can never make it ours.
    pid = fork();
    if (pid < 0) {
        *err = errno_text("fork");
        return false;
    }
    if (pid > 0)
        _exit(0);
    if (chdir("/") < 0) {
        *err = errno_text("chdir /");
        return false;
    }
    umask(022);
    int fd = open("/dev/null", O_RDWR);
    if (fd < 0) {
        *err = errno_text("/dev/null");
        return false;
    }
    dup2(fd, STDIN_FILENO);
    dup2(fd, STDOUT_FILENO);
    dup2(fd, STDERR_FILENO);
    if (fd > STDERR_FILENO)
        close(fd);
    return true;
}

void
daemon_ready(UniqueFd* ready) noexcept
{
    if (!*ready)
        return;
    ssize_t n = write(ready->get(), "1", 1);
    (void)n;
    ready->reset();
}

PidFile::~PidFile() = default;

bool
PidFile::acquire(const std::string& path, std::string* err) noexcept
{
    // Lock the file at `path` first: whoever holds that lock owns the name.
    UniqueFd cur(open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644));
    if (!cur) {
        *err = errno_text(path);
        return false;
    }
    if (flock(cur.get(), LOCK_EX | LOCK_NB) < 0) {
        pid_t other = read_pid_file(path);
        *err = other > 0 ? "already running (pid " + std::to_string(other) +
                               ", pid file " + path + ")"
                         : "already running (pid file " + path + " is locked)";
        return false;
    }
    path_ = path;
    fd_ = std::move(cur);
    return publish(err);
}

bool
PidFile::update(std::string* err) noexcept
{
    return publish(err);
}

bool
PidFile::publish(std::string* err) noexcept
{
    // Write the pid under a temporary name, lock it, then rename it over
    // the path, so a reader never sees an empty or half-written pid file;
    // we still hold the old inode's lock until the new one is in place, so
    // no second instance can slip in between.
    std::string tmp = path_ + ".tmp." + std::to_string(getpid());
    UniqueFd next(
        open(tmp.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
    if (!next) {
        *err = errno_text(tmp);
        return false;
    }
    if (flock(next.get(), LOCK_EX | LOCK_NB) < 0) {
        *err = errno_text("lock " + tmp);
        unlink(tmp.c_str());
        return false;
    }
    char buf[32];
    int n = std::snprintf(buf, sizeof buf, "%d\n", static_cast<int>(getpid()));
    if (write(next.get(), buf, static_cast<size_t>(n)) != n ||
        rename(tmp.c_str(), path_.c_str()) < 0) {
        *err = errno_text(path_);
        unlink(tmp.c_str());
        return false;
    }
    fd_ = std::move(next);
    return true;
}

void
PidFile::remove() noexcept
{
    if (!fd_)
        return;
    // Unlink only the file we locked: a pid file someone replaced since is
    // not ours to remove.
    struct stat mine, there;
    if (fstat(fd_.get(), &mine) == 0 && stat(path_.c_str(), &there) == 0 &&
        mine.st_ino == there.st_ino && mine.st_dev == there.st_dev)
        unlink(path_.c_str());
    fd_.reset();
}

void
PidFile::abandon() noexcept
{
    fd_.reset();
}

pid_t
read_pid_file(const std::string& path) noexcept
{
    FILE* f = std::fopen(path.c_str(), "re");
    if (!f)
        return 0;
    long pid = 0;
    if (std::fscanf(f, "%ld", &pid) != 1 || pid <= 0)
        pid = 0;
    std::fclose(f);
    return static_cast<pid_t>(pid);
}

bool
resolve_credentials(const std::string& user, const std::string& group,
                    Credentials* out, std::string* err) noexcept
{
    struct passwd* pw = getpwnam(user.c_str());
    if (!pw) {
        *err = "user '" + user + "' does not exist (global.user)";
        return false;
    }
    out->uid = pw->pw_uid;
    out->gid = pw->pw_gid;
    out->user = user;
    if (!group.empty()) {
        struct group* gr = getgrnam(group.c_str());
        if (!gr) {
            *err = "group '" + group + "' does not exist (global.group)";
            return false;
        }
        out->gid = gr->gr_gid;
        out->group = group;
    } else {
        struct group* gr = getgrgid(out->gid);
        out->group = gr ? gr->gr_name : std::to_string(out->gid);
    }
    return true;
}

bool
drop_privileges(const Credentials& cred, std::string* err) noexcept
{
    if (geteuid() != 0)
        return true;
    if (initgroups(cred.user.c_str(), cred.gid) < 0 ||
        setgroups(0, nullptr) < 0 || setgid(cred.gid) < 0 ||
        setuid(cred.uid) < 0) {
        *err = errno_text("drop privileges to " + cred.user);
        return false;
    }
    if (cred.uid != 0 && setuid(0) == 0) {
        *err = "drop privileges: root could be regained";
        return false;
    }
    return true;
}

int
usable_cpus() noexcept
{
    cpu_set_t set;
    CPU_ZERO(&set);
    if (sched_getaffinity(0, sizeof set, &set) == 0) {
        int n = CPU_COUNT(&set);
        if (n > 0)
            return n;
    }
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? static_cast<int>(n) : 1;
}

long
raise_nofile(long want) noexcept
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
        return -1;
    rlim_t target = static_cast<rlim_t>(want);
    if (rl.rlim_cur >= target)
        return static_cast<long>(rl.rlim_cur);
    struct rlimit next = rl;
    next.rlim_cur = target;
    if (next.rlim_max < target) {
        if (geteuid() == 0)
            next.rlim_max = target;
        else
            next.rlim_cur = rl.rlim_max;
    }
    if (setrlimit(RLIMIT_NOFILE, &next) < 0) {
        next.rlim_cur = rl.rlim_max;
        next.rlim_max = rl.rlim_max;
        if (setrlimit(RLIMIT_NOFILE, &next) < 0)
            return static_cast<long>(rl.rlim_cur);
    }
    return static_cast<long>(next.rlim_cur);
}

bool
make_dirs(const std::string& path, mode_t mode, std::string* err) noexcept
{
    std::string cur;
    size_t pos = 0;
    while (pos != std::string::npos) {
        pos = path.find('/', pos + 1);
        cur = path.substr(0, pos);
        if (cur.empty())
            continue;
        if (mkdir(cur.c_str(), pos == std::string::npos ? mode : 0755) < 0 &&
            errno != EEXIST) {
            *err = errno_text("mkdir " + cur);
            return false;
        }
    }
    struct stat st;
    if (stat(path.c_str(), &st) < 0 || !S_ISDIR(st.st_mode)) {
        *err = path + ": not a directory";
        return false;
    }
    return true;
}

long
group_id(const std::string& name) noexcept
{
    struct group* gr = getgrnam(name.c_str());
    return gr ? static_cast<long>(gr->gr_gid) : -1;
}

}  // namespace sj
