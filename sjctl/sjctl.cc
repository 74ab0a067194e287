// sjctl: the operator's command-line tool. Speaks the control protocol
// (common/control.h) to the daemons' sockets in global.run_dir.

#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <map>
#include <string>
#include <vector>

#include "common/config.h"
#include "common/control.h"
#include "common/daemon_main.h"
#include "sunjammer_build.h"

namespace {

constexpr int kExitRefused = 1;      // the daemon answered non-200
constexpr int kExitUnreachable = 2;  // not running or not answering
constexpr int kExitUsage = 64;

constexpr const char* kDaemons[] = {"cached", "balancerd", "heartbeatd"};

void
usage(FILE* out)
{
    std::fprintf(out,
                 "usage: sjctl [-f file] [-s run_dir] [-t timeout] status\n"
                 "       sjctl [-f file] [-s run_dir] [-t timeout] daemon "
                 "command ...\n"
                 "daemons: cached balancerd heartbeatd\n");
}

std::map<std::string, std::string>
parse_kv(const std::string& body)
{
    std::map<std::string, std::string> kv;
    size_t pos = 0;
    while (pos < body.size()) {
        size_t nl = body.find('\n', pos);
        if (nl == std::string::npos)
            nl = body.size();
        std::string line = body.substr(pos, nl - pos);
        size_t colon = line.find(':');
        if (colon != std::string::npos) {
            size_t v = line.find_first_not_of(' ', colon + 1);
            kv[line.substr(0, colon)] = v == std::string::npos ? ""
                                                               : line.substr(v);
        }
        pos = nl + 1;
    }
    return kv;
}

std::string
format_uptime(const std::string& secs)
{
    long s = std::strtol(secs.c_str(), nullptr, 10);
    char buf[32];
    if (s >= 86400)
        std::snprintf(buf, sizeof buf, "%ldd%02ldh", s / 86400,
                      s % 86400 / 3600);
    else if (s >= 3600)
        std::snprintf(buf, sizeof buf, "%ldh%02ldm", s / 3600, s % 3600 / 60);
    else if (s >= 60)
        std::snprintf(buf, sizeof buf, "%ldm%02lds", s / 60, s % 60);
    else
        std::snprintf(buf, sizeof buf, "%lds", s);
    return buf;
}

// heartbeatd's view of every checked node, from its `show checks` (words:
// pool/node, type, state, then key=value pairs).
void
print_checks(const std::string& run_dir, double timeout)
{
    sj::ControlReply reply;
    std::string err;
    if (!sj::control_call(run_dir + "/heartbeatd.ctl", "show checks", timeout,
                          &reply, &err) ||
        reply.status != 200 || reply.body.empty())
        return;
    std::printf("\n%-22s %-9s %-11s %-20s %-5s %-9s %s\n", "NODE", "CHECK",
                "STATE", "SINCE", "LAST", "LATENCY", "RESULT");
    size_t pos = 0;
    while (pos < reply.body.size()) {
        size_t nl = reply.body.find('\n', pos);
        if (nl == std::string::npos)
            nl = reply.body.size();
        std::vector<std::string> w;
        if (sj::control_split(reply.body.substr(pos, nl - pos), &w, &err) &&
            w.size() >= 3) {
            std::map<std::string, std::string> kv;
            for (size_t i = 3; i < w.size(); ++i) {
                size_t eq = w[i].find('=');
                if (eq != std::string::npos)
                    kv[w[i].substr(0, eq)] = w[i].substr(eq + 1);
            }
            std::printf("%-22s %-9s %-11s %-20s %-5s %-9s %s\n", w[0].c_str(),
                        w[1].c_str(), w[2].c_str(), kv["since"].c_str(),
                        kv["last"].c_str(), kv["latency"].c_str(),
                        kv["result"].c_str());
        }
        pos = nl + 1;
    }
}

int
cmd_status(const std::string& run_dir, double timeout)
{
    std::printf("%-11s %-12s %-8s %-8s %-4s %s\n", "DAEMON", "STATE", "PID",
                "UPTIME", "GEN", "CONFIG");
    int running = 0;
    for (const char* d : kDaemons) {
        std::string path = run_dir + "/" + d + ".ctl";
        sj::ControlReply reply;
        std::string err;
        if (!sj::control_call(path, "status", timeout, &reply, &err) ||
            reply.status != 200) {
            std::printf("%-11s %-12s %-8s %-8s %-4s %s\n", d, "not running",
                        "-", "-", "-", "-");
            continue;
        }
        ++running;
        auto kv = parse_kv(reply.body);
        std::printf("%-11s %-12s %-8s %-8s %-4s %s\n", d,
                    kv["state"].empty() ? "running" : kv["state"].c_str(),
                    kv["pid"].c_str(), format_uptime(kv["uptime"]).c_str(),
                    kv["generation"].c_str(), kv["config"].c_str());
    }
    print_checks(run_dir, timeout);
    return running > 0 ? 0 : kExitRefused;
}

int
cmd_pass(const std::string& run_dir, double timeout, const std::string& daemon,
         const std::vector<std::string>& words)
{
    std::string line;
    for (const std::string& w : words) {
        if (!line.empty())
            line += ' ';
        line += sj::control_quote(w);
    }
    std::string path = run_dir + "/" + daemon + ".ctl";
    sj::ControlReply reply;
    std::string err;
    if (!sj::control_call(path, line, timeout, &reply, &err)) {
        std::fprintf(stderr, "sjctl: %s is not running (%s)\n", daemon.c_str(),
                     err.c_str());
        return kExitUnreachable;
    }
    if (reply.status != 200) {
        std::fprintf(stderr, "sjctl: %s: %d %s", daemon.c_str(), reply.status,
                     reply.body.c_str());
        if (!reply.body.empty() && reply.body.back() != '\n')
            std::fputc('\n', stderr);
        return kExitRefused;
    }
    std::fwrite(reply.body.data(), 1, reply.body.size(), stdout);
    return 0;
}

}  // namespace

int
main(int argc, char** argv)
{
    std::string file = sj::kDefaultConfigFile;
    std::string run_dir;
    bool file_given = false;
    double timeout = 5.0;
    int ch;
    while ((ch = getopt(argc, argv, "+f:hs:t:V")) != -1) {
        switch (ch) {
        case 'f':
            file = optarg;
            file_given = true;
            break;
        case 's': run_dir = optarg; break;
        case 't': {
            char* end;
            timeout = std::strtod(optarg, &end);
            if (*end || timeout <= 0) {
                std::fprintf(stderr, "sjctl: bad timeout '%s'\n", optarg);
                return kExitUsage;
            }
            break;
        }
        case 'V':
            std::printf("sjctl (sunjammer) %s\n", PACKAGE_VERSION);
            return 0;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return kExitUsage;
        }
    }
    std::vector<std::string> args(argv + optind, argv + argc);
    if (args.empty()) {
        usage(stderr);
        return kExitUsage;
    }
    if (run_dir.empty()) {
        try {
            run_dir = sj::load_config(file)->global.run_dir;
        } catch (const sj::ConfigError& e) {
            // The default file may legitimately be absent; a file the
            // operator named must be readable.
            if (file_given) {
                std::fprintf(stderr, "sjctl: %s\n", e.what());
                return kExitUsage;
            }
            run_dir = RUNSTATEDIR "/sunjammer";
        }
    }
    if (args[0] == "status" && args.size() == 1)
        return cmd_status(run_dir, timeout);
    bool known = false;
    for (const char* d : kDaemons)
        known = known || args[0] == d;
    if (!known || args.size() < 2) {
        if (!known)
            std::fprintf(stderr, "sjctl: unknown daemon '%s'\n",
                         args[0].c_str());
        usage(stderr);
        return kExitUsage;
    }
    return cmd_pass(run_dir, timeout, args[0],
                    std::vector<std::string>(args.begin() + 1, args.end()));
}
