// common/access_log: lines are gathered and written together, at the
// latest AccessLog::kFlushInterval after the first of them, every time
// (not only the first: a one-shot libev timer restarted without being set
// again fires at once, and every line was then written on its own).
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>

#include "common/access_log.h"
#include "t/unit/tap.h"

using sj::AccessLog;

namespace {

std::string
slurp(const std::string& path)
{
    std::ifstream in(path);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
}

// Runs the loop until `path` holds `want` or `limit` seconds pass; returns
// how long that took.
double
until_holds(struct ev_loop* loop, const std::string& path,
            const std::string& want, double limit)
{
    ev_now_update(loop);
    ev_tstamp t0 = ev_time();
    while (slurp(path) != want && ev_time() - t0 < limit)
        ev_run(loop, EVRUN_ONCE);
    return ev_time() - t0;
}

}  // namespace

int
main()
{
    char dir[] = "/tmp/sj-alog.XXXXXX";
    if (::mkdtemp(dir) == nullptr)
        std::abort();
    std::string path = std::string(dir) + "/access.log";
    struct ev_loop* loop = ev_loop_new(EVFLAG_AUTO);
    {
        AccessLog log(loop, path);
        tap::ok(log.enabled(), "a file access log");
        for (int round = 1; round <= 3; ++round) {
            std::string before = slurp(path);
            log.write("a" + std::to_string(round));
            // Turns of the loop in between do not write the line...
            for (int i = 0; i < 5; ++i)
                ev_run(loop, EVRUN_NOWAIT);
            log.write("b" + std::to_string(round));
            for (int i = 0; i < 5; ++i)
                ev_run(loop, EVRUN_NOWAIT);
            tap::is(slurp(path), before,
                    "round " + std::to_string(round) +
                        ": lines wait in the buffer");
            // ... the timer writes both at once.
            std::string want = before + "a" + std::to_string(round) + "\nb" +
                               std::to_string(round) + "\n";
            double took = until_holds(loop, path, want, 3.0);
            tap::is(slurp(path), want,
                    "round " + std::to_string(round) + ": written together");
            tap::ok(took < 2.0, "round " + std::to_string(round) +
                                    ": within the flush interval (" +
                                    std::to_string(took) + " s)");
        }
        // A full buffer is written at once.
        std::string before = slurp(path);
        std::string line(1000, 'x');
        for (size_t n = 0; n <= AccessLog::kFlushSize; n += line.size() + 1)
            log.write(line);
        tap::ok(slurp(path).size() >
                    before.size() + AccessLog::kFlushSize - 1000,
                "a full buffer is written without waiting");
    }
    ::unlink(path.c_str());
    ::rmdir(dir);
    ev_loop_destroy(loop);
    return tap::done_testing();
}
