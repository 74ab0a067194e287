// The script check: /bin/sh -c SCRIPT with the node in the environment
// (SJ_POOL, SJ_NODE, SJ_ADDRESS, SJ_HOST, SJ_PORT); exit status 0 passes.
// The first line the script prints on standard output becomes the reason.
// A script still running at the check's timeout is killed with its whole
// process group (it leads its own).
//
// The checker's loop is not libev's default loop, so ev_child cannot watch
// the process; a pidfd (Linux 5.3) becomes readable when it exits.

#include <fcntl.h>
#include <signal.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <vector>

#include "common/unique_fd.h"
#include "heartbeatd/probe.h"

namespace sj::hb {

namespace {

// Scripts killed at their timeout that had not been reaped yet: SIGKILL
// takes effect at once, but the exit is asynchronous. Retried at each
// script start so that no zombie accumulates. Only the checker's single
// thread touches it.
std::vector<pid_t> g_unreaped;

void
reap_leftovers() noexcept
{
    for (size_t i = 0; i < g_unreaped.size();) {
        if (waitpid(g_unreaped[i], nullptr, WNOHANG) != 0) {
            g_unreaped[i] = g_unreaped.back();
            g_unreaped.pop_back();
        } else {
            ++i;
        }
    }
}

class ScriptProbe : public Probe {
public:
    ScriptProbe(struct ev_loop* loop, const ProbeTarget& target) noexcept
        : Probe(loop, target)
    {
        ev_io_init(&io_, on_exit, -1, EV_READ);
        io_.data = this;
    }
    ~ScriptProbe() override { ScriptProbe::release(); }

private:
    void begin() noexcept override
    {
        reap_leftovers();
        int out[2];
        if (pipe2(out, O_CLOEXEC | O_NONBLOCK) < 0) {
            fail("pipe: " + errno_text(errno));
            return;
        }
        UniqueFd rd(out[0]), wr(out[1]);
        std::string host = target_.address_text;
        std::string port = std::to_string(target_.address.port);
        size_t colon = host.rfind(':');
        if (colon != std::string::npos)
            host = host.substr(0, colon);
        if (host.size() >= 2 && host.front() == '[')
            host = host.substr(1, host.size() - 2);
        pid_t pid = fork();
        if (pid < 0) {
            fail("fork: " + errno_text(errno));
            return;
        }
        if (pid == 0) {
            setpgid(0, 0);
            int devnull = open("/dev/null", O_RDWR);
            if (devnull >= 0)
                dup2(devnull, 0);
            dup2(wr.get(), 1);
            sigset_t none;
            sigemptyset(&none);
            sigprocmask(SIG_SETMASK, &none, nullptr);
            signal(SIGPIPE, SIG_DFL);
            setenv("SJ_POOL", target_.pool.c_str(), 1);
            setenv("SJ_NODE", target_.node.c_str(), 1);
            setenv("SJ_ADDRESS", target_.address_text.c_str(), 1);
            setenv("SJ_HOST", host.c_str(), 1);
            setenv("SJ_PORT", port.c_str(), 1);
            execl("/bin/sh", "sh", "-c", target_.check.script.c_str(),
                  static_cast<char*>(nullptr));
            _exit(127);
        }
        pid_ = pid;
        out_ = std::move(rd);
        pidfd_.reset(static_cast<int>(syscall(SYS_pidfd_open, pid, 0)));
        if (!pidfd_) {
            fail("pidfd_open: " + errno_text(errno));
            return;
        }
        ev_io_set(&io_, pidfd_.get(), EV_READ);
        ev_io_start(loop_, &io_);
    }

    void release() noexcept override
    {
        ev_io_stop(loop_, &io_);
        if (pid_ > 0) {
            kill(-pid_, SIGKILL);
            kill(pid_, SIGKILL);
            if (waitpid(pid_, nullptr, WNOHANG) == 0)
                g_unreaped.push_back(pid_);
            pid_ = 0;
        }
        pidfd_.reset();
        out_.reset();
    }

    static void on_exit(struct ev_loop*, ev_io* w, int) noexcept
    {
        auto* self = static_cast<ScriptProbe*>(w->data);
        int status = 0;
        pid_t r = waitpid(self->pid_, &status, WNOHANG);
        if (r == 0)
            return;
        self->pid_ = 0;
        std::string line;
        char buf[512];
        ssize_t n = read(self->out_.get(), buf, sizeof buf);
        if (n > 0) {
            line.assign(buf, static_cast<size_t>(n));
            line = line.substr(0, line.find('\n'));
        }
        // The script's children may live on in its process group.
        if (r > 0)
            kill(-static_cast<pid_t>(r), SIGKILL);
        if (r < 0) {
            self->fail("waitpid: " + errno_text(errno));
        } else if (WIFEXITED(status) && WEXITSTATUS(status) == 0) {
            self->pass(line.empty() ? "exit 0" : line);
        } else if (WIFEXITED(status)) {
            std::string why = "exit " + std::to_string(WEXITSTATUS(status));
            self->fail(line.empty() ? why : why + ": " + line);
        } else {
            self->fail("killed by signal " + std::to_string(WTERMSIG(status)));
        }
    }

    pid_t pid_ = 0;
    UniqueFd pidfd_;
    UniqueFd out_;
    ev_io io_{};
};

}  // namespace

std::unique_ptr<Probe>
make_script_probe(struct ev_loop* loop, const ProbeTarget& target)
{
    return std::make_unique<ScriptProbe>(loop, target);
}

}  // namespace sj::hb
