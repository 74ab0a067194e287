// Unit tests for the control protocol (common/control.h) and the control
// socket server (common/control_server.h). The server runs in a forked child
// with its own libev loop; the test talks to it through control_call() and
// raw sockets, as sjctl and socat would.

#include "common/control.h"

#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <functional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "common/control_server.h"
#include "common/log.h"

#include "t/unit/tap.h"

using sj::ControlReply;

namespace {

constexpr uid_t kNobody = 65534;
constexpr gid_t kNogroup = 65534;
constexpr size_t kBigBody = 300000;

void
skip(const std::string& why)
{
    ++tap::g_count;
    std::printf("ok %d # skip %s\n", tap::g_count, why.c_str());
    std::fflush(stdout);
}

double
now()
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return static_cast<double>(ts.tv_sec) +
           static_cast<double>(ts.tv_nsec) / 1e9;
}

bool
exists(const std::string& path)
{
    struct stat st;
    return ::lstat(path.c_str(), &st) == 0;
}

std::string
slurp(const std::string& path)
{
    std::ifstream f(path);
    std::stringstream ss;
    ss << f.rdbuf();
    return ss.str();
}

std::vector<std::string>
split(const std::string& line, bool* ok = nullptr, std::string* err = nullptr)
{
    std::vector<std::string> words;
    std::string e;
    bool r = sj::control_split(line, &words, &e);
    if (ok)
        *ok = r;
    if (err)
        *err = e;
    return words;
}

std::string
join(const std::vector<std::string>& v, const char* sep)
{
    std::string out;
    for (size_t i = 0; i < v.size(); ++i)
        out += (i ? sep : "") + v[i];
    return out;
}

ControlReply
call(const std::string& path, const std::string& line,
     std::string* err = nullptr)
{
    ControlReply r;
    std::string e;
    if (!sj::control_call(path, line, 2.0, &r, &e)) {
        r.status = -1;
        r.body = e;
    }
    if (err)
        *err = e;
    return r;
}

int
unix_socket()
{
    return ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
}

struct sockaddr_un
addr_of(const std::string& path)
{
    struct sockaddr_un sa;
    std::memset(&sa, 0, sizeof sa);
    sa.sun_family = AF_UNIX;
    std::memcpy(sa.sun_path, path.data(), path.size());
    return sa;
}

int
raw_connect(const std::string& path)
{
    int fd = unix_socket();
    struct sockaddr_un sa = addr_of(path);
    if (::connect(fd, reinterpret_cast<struct sockaddr*>(&sa), sizeof sa) < 0) {
        ::close(fd);
        return -1;
    }
    return fd;
}

int
raw_listen(const std::string& path)
{
    int fd = unix_socket();
    struct sockaddr_un sa = addr_of(path);
    if (::bind(fd, reinterpret_cast<struct sockaddr*>(&sa), sizeof sa) < 0 ||
        ::listen(fd, 4) < 0) {
        ::close(fd);
        return -1;
    }
    return fd;
}

void
send_all(int fd, const std::string& s)
{
    size_t off = 0;
    while (off < s.size()) {
        ssize_t k = ::send(fd, s.data() + off, s.size() - off, MSG_NOSIGNAL);
        if (k <= 0)
            return;
        off += static_cast<size_t>(k);
    }
}

// Reads until end of file or `timeout` seconds; *eof says which.
std::string
read_all(int fd, double timeout, bool* eof)
{
    std::string out;
    double deadline = now() + timeout;
    *eof = false;
    for (;;) {
        double left = deadline - now();
        if (left <= 0)
            return out;
        struct pollfd p = {fd, POLLIN, 0};
        if (::poll(&p, 1, static_cast<int>(left * 1000) + 1) <= 0)
            continue;
        char buf[65536];
        ssize_t k = ::read(fd, buf, sizeof buf);
        if (k <= 0) {
            *eof = true;
            return out;
        }
        out.append(buf, static_cast<size_t>(k));
    }
}

// Splits a byte stream into framed replies; stops at the first bad frame.
std::vector<ControlReply>
parse_replies(const std::string& s, bool* clean)
{
    std::vector<ControlReply> out;
    size_t off = 0;
    *clean = true;
    while (off < s.size()) {
        int status = 0;
        size_t len = 0;
        if (s.size() - off < sj::kControlHeaderLen ||
            !sj::control_parse_header(
                s.substr(off, sj::kControlHeaderLen), &status, &len) ||
            s.size() - off - sj::kControlHeaderLen < len) {
            *clean = false;
            return out;
        }
        off += sj::kControlHeaderLen;
        out.push_back({status, s.substr(off, len)});
        off += len;
    }
    return out;
}

// The commands of the test daemon.
void
add_commands(sj::ControlServer* server, struct ev_loop* loop)
{
    using Args = std::vector<std::string>;
    server->add("ping", false, [](const Args&, const sj::ControlPeer&) {
        return ControlReply{200, "pong\n"};
    });
    server->add("stop", true, [](const Args&, const sj::ControlPeer&) {
        return ControlReply{200, "stopping\n"};
    });
    server->add("show", false, [](const Args& a, const sj::ControlPeer&) {
        return ControlReply{200, "show:" + join(a, "|") + "\n"};
    });
    server->add("show config", false,
                [](const Args& a, const sj::ControlPeer&) {
                    return ControlReply{200, "config:" + join(a, "|") + "\n"};
                });
    // Registered longer-first, so the match cannot depend on the order.
    server->add("list all", false, [](const Args& a, const sj::ControlPeer&) {
        return ControlReply{200, "all:" + join(a, "|") + "\n"};
    });
    server->add("list", false, [](const Args& a, const sj::ControlPeer&) {
        return ControlReply{200, "list:" + join(a, "|") + "\n"};
    });
    server->add("boom", false,
                [](const Args&, const sj::ControlPeer&) -> ControlReply {
                    throw std::runtime_error("boom went the handler");
                });
    server->add("whoami", false, [](const Args&, const sj::ControlPeer& p) {
        return ControlReply{200, "uid=" + std::to_string(p.uid) + " admin=" +
                                     std::to_string(p.admin) + "\n"};
    });
    server->add("big", false, [](const Args&, const sj::ControlPeer&) {
        return ControlReply{200, std::string(kBigBody - 1, 'x') + "\n"};
    });
    // A handler may close the server; its own reply still goes out.
    server->add("quit", true,
                [server, loop](const Args&, const sj::ControlPeer&) {
                    server->close();
                    ev_break(loop, EVBREAK_ALL);
                    return ControlReply{200, "bye\n"};
                });
}

// Forks a daemon serving `path`; returns its pid once the socket is open,
// or -1 with *err set to the child's open() error.
pid_t
start_server(const std::string& path, uid_t uid, gid_t gid, long admin_gid,
             const std::string& log_path, std::string* err,
             bool as_nobody = false)
{
    int p[2];
    if (::pipe(p) < 0)
        return -1;
    pid_t pid = ::fork();
    if (pid == 0) {
        ::close(p[0]);
        if (as_nobody && (::setgroups(0, nullptr) < 0 ||
                          ::setgid(kNogroup) < 0 || ::setuid(kNobody) < 0))
            ::_exit(2);
        sj::log_open("control_test", sj::LogTarget::kFile, log_path,
                     sj::LogLevel::kInfo);
        struct ev_loop* loop = ev_loop_new(EVFLAG_AUTO);
        int rc = 0;
        {
            sj::ControlServer server(loop, path);
            add_commands(&server, loop);
            std::string e;
            if (!server.open(uid, gid, admin_gid, &e)) {
                ssize_t w = ::write(p[1], e.data(), e.size());
                (void)w;
                ::_exit(1);
            }
            ssize_t w = ::write(p[1], "+", 1);
            (void)w;
            ::close(p[1]);
            ev_run(loop, 0);
            // After "quit" the socket must be gone while we still live.
            rc = exists(path) ? 3 : 0;
        }
        ev_loop_destroy(loop);
        ::_exit(rc);
    }
    ::close(p[1]);
    char buf[512];
    ssize_t k = ::read(p[0], buf, sizeof buf);
    ::close(p[0]);
    if (k == 1 && buf[0] == '+')
        return pid;
    *err = k > 0 ? std::string(buf, static_cast<size_t>(k)) : "no answer";
    ::waitpid(pid, nullptr, 0);
    return -1;
}

void
stop_server(pid_t pid)
{
    if (pid > 0) {
        ::kill(pid, SIGTERM);
        ::waitpid(pid, nullptr, 0);
    }
}

// Runs `fn` in a child that has become nobody with primary group `gid` and
// no supplementary groups; returns what `fn` returned.
std::string
as_nobody(gid_t gid, const std::function<std::string()>& fn)
{
    int p[2];
    if (::pipe(p) < 0)
        return "pipe failed";
    pid_t pid = ::fork();
    if (pid == 0) {
        ::close(p[0]);
        std::string out;
        if (::setgroups(0, nullptr) < 0 || ::setgid(gid) < 0 ||
            ::setuid(kNobody) < 0)
            out = "cannot drop privileges";
        else
            out = fn();
        ssize_t w = ::write(p[1], out.data(), out.size());
        (void)w;
        ::_exit(0);
    }
    ::close(p[1]);
    bool eof;
    std::string out = read_all(p[0], 10.0, &eof);
    ::close(p[0]);
    ::waitpid(pid, nullptr, 0);
    return out;
}

std::string
brief(const ControlReply& r)
{
    return std::to_string(r.status) + " " + r.body;
}

void
test_split()
{
    bool ok;
    std::string err;
    tap::is(join(split("ping"), ","), "ping", "split: one word");
    tap::is(join(split("  show \t config  x "), ","), "show,config,x",
            "split: blanks and tabs separate, leading/trailing ignored");
    tap::is(split("show config x").size(), size_t(3), "split: word count");
    tap::is(join(split("set \"a b\" c"), ","), "set,a b,c",
            "split: a quoted word keeps its blanks");
    tap::is(join(split(R"(x "say \"hi\"" "back\\slash")"), ","),
            "x,say \"hi\",back\\slash", "split: \\\" and \\\\ escapes");
    tap::is(join(split("pre\"fix x\"post"), ","), "prefix xpost",
            "split: a quote inside a word joins the parts");
    auto w = split("a \"\" b", &ok);
    tap::ok(ok && w.size() == 3 && w[1].empty(),
            "split: \"\" is an empty word");
    w = split("", &ok);
    tap::ok(ok && w.empty(), "split: empty line gives no words");
    w = split("   \t ", &ok);
    tap::ok(ok && w.empty(), "split: blank line gives no words");
    w = split("set \"unterminated", &ok, &err);
    tap::ok(!ok && w.empty(), "split: unterminated quote fails");
    tap::ok(err.find("unterminated quote") != std::string::npos,
            "split: unterminated quote message: " + err);
    w = split("set \"ends in escape\\", &ok, &err);
    tap::ok(!ok && err.find("unterminated") != std::string::npos,
            "split: quote ending in a backslash fails");
    w = split("set \"bad \\n escape\"", &ok, &err);
    tap::ok(!ok && err.find("bad escape") != std::string::npos,
            "split: unknown escape fails: " + err);
    tap::is(join(split("a\\b"), ","), "a\\b",
            "split: a backslash outside quotes is literal");
}

void
test_quote()
{
    tap::is(sj::control_quote("plain"), "plain", "quote: plain word as is");
    tap::is(sj::control_quote("a b"), "\"a b\"", "quote: blank quoted");
    tap::is(sj::control_quote(""), "\"\"", "quote: empty word");
    tap::is(sj::control_quote("q\"x\\"), "\"q\\\"x\\\\\"",
            "quote: escapes quote and backslash");
    std::vector<std::string> words = {
        "plain", "a b", "", "q\"x", "b\\s", "t\tx", "\"", "\\", "  "};
    std::string line;
    for (const auto& w : words)
        line += sj::control_quote(w) + " ";
    bool ok;
    auto back = split(line, &ok);
    tap::ok(ok && back == words, "quote: round trip through split");
}

void
test_framing()
{
    std::string f = sj::control_format_reply({200, "pong\n"});
    tap::is(f, std::string("200 5       \npong\n"), "format: header layout");
    tap::is(sj::control_format_reply({404, ""}), std::string("404 0       \n"),
            "format: empty body");
    tap::is(sj::control_format_reply({500, "no newline"}),
            std::string("500 11      \nno newline\n"),
            "format: a non-empty body gets its final newline");

    int status = 0;
    size_t len = 0;
    tap::ok(sj::control_parse_header(f.substr(0, 13), &status, &len) &&
                status == 200 && len == 5,
            "parse: round trip of a formatted header");
    std::string big = sj::control_format_reply({403, std::string(99, 'y')});
    tap::ok(sj::control_parse_header(big.substr(0, 13), &status, &len) &&
                status == 403 && len == 100,
            "parse: three-digit length");
    tap::ok(sj::control_parse_header("200 16777216\n", &status, &len) &&
                len == sj::kControlMaxBody,
            "parse: the largest body is accepted");

    struct Bad {
        const char* hdr;
        const char* why;
    } bad[] = {
        {"2O0 5       \n", "letter in status"},
        {"200 5x      \n", "letter in length"},
        {"200 x       \n", "length is not a number"},
        {"200         \n", "no length"},
        {"200  5      \n", "length not left-aligned"},
        {"200 5     5 \n", "digits after padding"},
        {"200-5       \n", "no space after status"},
        {"200 5       \r", "no newline"},
        {"20 5        \n", "two-digit status"},
        {"099 5       \n", "status below 100"},
        {"200 16777217\n", "length above kControlMaxBody"},
        {"200 99999999\n", "length far too large"},
    };
    for (const auto& b : bad)
        tap::ok(!sj::control_parse_header(b.hdr, &status, &len),
                std::string("parse: rejects ") + b.why);
    tap::ok(!sj::control_parse_header("200 5\n", &status, &len),
            "parse: rejects a short header");
    tap::ok(!sj::control_parse_header("200 5        \n", &status, &len),
            "parse: rejects a long header");
}

void
test_call_errors(const std::string& dir)
{
    std::string err;
    std::string missing = dir + "/missing.sock";
    ControlReply r;
    tap::ok(!sj::control_call(missing, "ping", 1.0, &r, &err),
            "call: missing socket fails");
    tap::is(err, "connect " + missing + ": No such file or directory",
            "call: missing socket message");

    // A listener that never accepts: connect succeeds on the backlog, the
    // reply never comes.
    std::string mute = dir + "/mute.sock";
    int lfd = raw_listen(mute);
    double t0 = now();
    tap::ok(!sj::control_call(mute, "ping", 0.3, &r, &err),
            "call: silent server fails");
    double took = now() - t0;
    tap::is(err, mute + ": timed out after 0.3 s", "call: timeout message");
    tap::ok(took >= 0.29 && took < 1.5,
            "call: timeout is honoured (" + std::to_string(took) + " s)");
    ::close(lfd);
    ::unlink(mute.c_str());

    // Servers that answer wrongly.
    struct Case {
        const char* answer;
        const char* want;
    } cases[] = {
        {"HTTP/1.1 200 OK\r\n\r\n", ": bad reply header"},
        {"", ": connection closed before the reply"},
        {"200 10      \nshort", ": connection closed before the reply"},
    };
    for (const auto& c : cases) {
        std::string path = dir + "/liar.sock";
        int fd = raw_listen(path);
        pid_t pid = ::fork();
        if (pid == 0) {
            int cfd = ::accept(fd, nullptr, nullptr);
            char buf[100];
            ssize_t k = ::read(cfd, buf, sizeof buf);
            (void)k;
            send_all(cfd, c.answer);
            ::_exit(0);
        }
        ::close(fd);
        bool ok = sj::control_call(path, "ping", 2.0, &r, &err);
        ::waitpid(pid, nullptr, 0);
        ::unlink(path.c_str());
        tap::ok(!ok && err.rfind(path + c.want, 0) == 0,
                std::string("call: '") + c.want + "' (" + err + ")");
    }
    tap::ok(!sj::control_call(missing, "a\nb", 1.0, &r, &err),
            "call: refuses a command with a newline");
}

void
test_server(const std::string& dir)
{
    std::string path = dir + "/ctl.sock";
    std::string log_path = dir + "/server.log";
    std::string err;

    // A stale socket: bound by a process that went away without unlinking.
    int stale = raw_listen(path);
    ::close(stale);
    tap::ok(exists(path), "stale socket file is there");

    pid_t pid = start_server(path, static_cast<uid_t>(-1),
                             static_cast<gid_t>(-1), -1, log_path, &err);
    tap::ok(pid > 0, "server replaced the stale socket (" + err + ")");
    if (pid <= 0)
        return;

    struct stat st;
    tap::ok(::stat(path.c_str(), &st) == 0 && S_ISSOCK(st.st_mode) &&
                (st.st_mode & 07777) == 0660,
            "socket mode is 0660");

    tap::is(brief(call(path, "ping")), "200 pong\n", "ping answers pong");
    tap::is(brief(call(path, "stop")), "200 stopping\n",
            "mutating command runs for our own uid");
    tap::is(brief(call(path, "show config")), "200 config:\n",
            "two-word command");
    tap::is(brief(call(path, "show config a \"b c\"")), "200 config:a|b c\n",
            "longest prefix wins; the rest are the arguments");
    tap::is(brief(call(path, "show configs")), "200 show:configs\n",
            "a word is matched whole, not by its prefix");
    tap::is(brief(call(path, "  show   other ")), "200 show:other\n",
            "shorter command with an argument");
    tap::is(brief(call(path, "list all nodes")), "200 all:nodes\n",
            "longest prefix wins whatever the registration order");
    tap::is(brief(call(path, "list nodes")), "200 list:nodes\n",
            "the shorter command still matches alone");
    tap::is(brief(call(path, "frobnicate now")),
            "404 unknown command 'frobnicate now'; try help\n",
            "unknown command is 404");
    ControlReply r = call(path, "show \"open");
    tap::ok(r.status == 400 &&
                r.body.find("unterminated quote") != std::string::npos,
            "quote error is 400: " + r.body.substr(0, r.body.size() - 1));
    tap::is(brief(call(path, "boom")), "500 boom went the handler\n",
            "a handler's exception becomes 500");
    tap::is(brief(call(path, "ping")), "200 pong\n",
            "the server survives the exception");
    tap::is(brief(call(path, "whoami")),
            "200 uid=" + std::to_string(::geteuid()) + " admin=1\n",
            "peer credentials reach the handler");
    r = call(path, "help");
    tap::is(brief(r),
            "200 help\nping\nstop\nshow\nshow config\nlist all\nlist\n"
            "boom\nwhoami\n"
            "big\nquit\n",
            "help lists every command");
    r = call(path, "big");
    tap::ok(r.status == 200 && r.body.size() == kBigBody,
            "a large reply arrives whole");

    // Several commands in one write, answered in order on one connection.
    {
        int fd = raw_connect(path);
        send_all(fd, "ping\nbig\r\n\n   \nshow config x\nnope\nping");
        ::shutdown(fd, SHUT_WR);
        bool eof, clean;
        auto replies = parse_replies(read_all(fd, 5.0, &eof), &clean);
        ::close(fd);
        tap::ok(eof && clean, "pipelined: clean frames, then close");
        tap::is(replies.size(), size_t(5),
                "pipelined: one reply per command, blank lines ignored");
        if (replies.size() == 5) {
            tap::is(brief(replies[0]), "200 pong\n", "pipelined: 1st");
            tap::ok(replies[1].status == 200 &&
                        replies[1].body.size() == kBigBody,
                    "pipelined: 2nd (big, \\r stripped)");
            tap::is(brief(replies[2]), "200 config:x\n", "pipelined: 3rd");
            tap::is(replies[3].status, 404, "pipelined: 4th");
            tap::is(brief(replies[4]), "200 pong\n",
                    "pipelined: a last line without newline at eof");
        }
    }

    // An over-long line: 400, and the connection is closed even though the
    // client would send more.
    {
        int fd = raw_connect(path);
        send_all(fd, std::string(sj::kControlMaxLine + 10, 'a') + "\nping\n");
        bool eof, clean;
        auto replies = parse_replies(read_all(fd, 5.0, &eof), &clean);
        ::close(fd);
        tap::ok(eof && clean && replies.size() == 1 &&
                    brief(replies[0]) == "400 line too long\n",
                "over-long line: 400 then close");
    }
    {
        int fd = raw_connect(path);
        send_all(fd, std::string(sj::kControlMaxLine + 10, 'a'));
        bool eof, clean;
        auto replies = parse_replies(read_all(fd, 5.0, &eof), &clean);
        ::close(fd);
        tap::ok(eof && clean && replies.size() == 1 && replies[0].status == 400,
                "over-long line without a newline: 400 then close");
    }
    {
        // A line of exactly the limit is fine.
        std::string line = "show " + std::string(sj::kControlMaxLine - 5, 'z');
        r = call(path, line);
        tap::ok(r.status == 200 && r.body.size() == sj::kControlMaxLine + 1,
                "a line of exactly kControlMaxLine is served");
    }

    // A second server on a live socket refuses, and leaves it alone.
    {
        struct ev_loop* loop = ev_loop_new(EVFLAG_AUTO);
        {
            sj::ControlServer second(loop, path);
            tap::ok(!second.open(static_cast<uid_t>(-1), static_cast<gid_t>(-1),
                                 -1, &err),
                    "a live socket refuses a second server");
            tap::is(err, path + ": another process is listening",
                    "live socket message");
        }
        ev_loop_destroy(loop);
        tap::is(brief(call(path, "ping")), "200 pong\n",
                "the first server still answers");
    }

    // close() from a handler: the reply still goes out, the socket goes.
    tap::is(brief(call(path, "quit")), "200 bye\n",
            "quit answers although its handler closed the server");
    int status = -1;
    ::waitpid(pid, &status, 0);
    tap::ok(WIFEXITED(status) && WEXITSTATUS(status) == 0,
            "close() unlinked the socket while the server still ran");
    tap::ok(!exists(path), "socket is gone after close()");

    std::string log = slurp(log_path);
    tap::ok(log.find("replaced a stale socket") != std::string::npos,
            "the stale socket takeover is logged");
}

void
test_close_in_process(const std::string& dir)
{
    std::string path = dir + "/local.sock";
    std::string err;
    struct ev_loop* loop = ev_loop_new(EVFLAG_AUTO);
    {
        sj::ControlServer s(loop, path);
        tap::ok(
            s.open(static_cast<uid_t>(-1), static_cast<gid_t>(-1), -1, &err),
            "in-process open (" + err + ")");
        tap::ok(exists(path), "socket exists after open()");
        s.close();
        tap::ok(!exists(path), "close() unlinks the socket");
        s.close();
        tap::ok(!exists(path), "close() twice is harmless");

        tap::ok(
            s.open(static_cast<uid_t>(-1), static_cast<gid_t>(-1), -1, &err),
            "open again after close");
        ::unlink(path.c_str());
        {
            std::ofstream f(path);
            f << "successor\n";
        }
    }
    tap::is(slurp(path), "successor\n",
            "the destructor does not unlink a file that is not its socket");

    {
        sj::ControlServer s(loop, path);
        tap::ok(
            !s.open(static_cast<uid_t>(-1), static_cast<gid_t>(-1), -1, &err),
            "open refuses a path that is a regular file");
        tap::is(err, path + ": exists and is not a socket",
                "not-a-socket message");
    }
    tap::is(slurp(path), "successor\n", "the regular file is untouched");
    ::unlink(path.c_str());
    ev_loop_destroy(loop);
}

void
test_permissions(const std::string& dir)
{
    if (::geteuid() != 0) {
        skip("not root");
        return;
    }
    std::string path = dir + "/perm.sock";
    std::string log_path = dir + "/perm.log";
    std::string err;

    // Group nogroup may connect; no admin group.
    pid_t pid = start_server(
        path, static_cast<uid_t>(-1), kNogroup, -1, log_path, &err);
    tap::ok(pid > 0, "permission server starts (" + err + ")");
    if (pid <= 0)
        return;
    struct stat st;
    tap::ok(::stat(path.c_str(), &st) == 0 && st.st_uid == 0 &&
                st.st_gid == kNogroup,
            "socket is chowned to root:nogroup");
    std::string got = as_nobody(kNogroup, [&] {
        return brief(call(path, "ping")) + brief(call(path, "stop")) +
               brief(call(path, "whoami"));
    });
    tap::is(got,
            "200 pong\n"
            "403 permission denied: 'stop' needs root or the admin group\n"
            "200 uid=65534 admin=0\n",
            "nobody may ping but not stop");
    std::string log = slurp(log_path);
    tap::ok(log.find("refused 'stop' from uid 65534 pid ") != std::string::npos,
            "the refusal is logged with uid and pid");
    got = as_nobody(4242, [&] { return call(path, "ping").body; });
    tap::is(got, "connect " + path + ": Permission denied",
            "outside the socket's group, no connect at all");
    stop_server(pid);
    ::unlink(path.c_str());

    // nogroup is the admin group: nobody may stop.
    pid = start_server(path, static_cast<uid_t>(-1), kNogroup,
                       static_cast<long>(kNogroup), log_path, &err);
    got = as_nobody(kNogroup, [&] { return brief(call(path, "stop")); });
    tap::is(got, "200 stopping\n", "a member of the admin group may stop");
    stop_server(pid);
    ::unlink(path.c_str());

    // The peer's primary gid (4242, the socket's group) is not the admin
    // group, but its account's groups (nogroup) are: found via getgrouplist.
    pid = start_server(path, static_cast<uid_t>(-1), 4242,
                       static_cast<long>(kNogroup), log_path, &err);
    got = as_nobody(4242, [&] { return brief(call(path, "whoami")); });
    tap::is(got, "200 uid=65534 admin=1\n",
            "admin group membership from the account's group list");
    stop_server(pid);
    ::unlink(path.c_str());

    // The peer's own gid from SO_PEERCRED is the admin group, though its
    // account's groups do not include it.
    pid =
        start_server(path, static_cast<uid_t>(-1), 4242, 4242L, log_path, &err);
    got = as_nobody(4242, [&] { return brief(call(path, "whoami")); });
    tap::is(got, "200 uid=65534 admin=1\n",
            "admin group membership from the peer's own gid");
    stop_server(pid);
    ::unlink(path.c_str());

    // A daemon running as nobody: its own uid may do everything.
    std::string own_dir = dir + "/nobody";
    ::mkdir(own_dir.c_str(), 0755);
    if (::chown(own_dir.c_str(), kNobody, kNogroup) < 0)
        tap::diag("chown " + own_dir + " failed");
    std::string own = own_dir + "/own.sock";
    pid = start_server(own, static_cast<uid_t>(-1), static_cast<gid_t>(-1), -1,
                       own_dir + "/own.log", &err, true);
    got = as_nobody(kNogroup, [&] { return brief(call(own, "whoami")); });
    tap::is(got, "200 uid=65534 admin=1\n",
            "the daemon's own uid is admin without an admin group");
    stop_server(pid);
    ::unlink(own.c_str());

    // Another admin group: nobody is read-only again.
    pid = start_server(path, static_cast<uid_t>(-1), kNogroup, 4242L, log_path,
                       &err);
    got = as_nobody(kNogroup, [&] { return brief(call(path, "stop")); });
    tap::is(got.substr(0, 4), "403 ", "not a member of the admin group: 403");
    stop_server(pid);
    ::unlink(path.c_str());
}

}  // namespace

int
main()
{
    ::signal(SIGPIPE, SIG_IGN);
    test_split();
    test_quote();
    test_framing();

    char tmpl[] = "/tmp/control_test.XXXXXX";
    if (!::mkdtemp(tmpl)) {
        tap::ok(false, "mkdtemp");
        return tap::done_testing();
    }
    std::string dir = tmpl;
    // nobody must reach the sockets in here.
    ::chmod(dir.c_str(), 0755);

    test_call_errors(dir);
    test_server(dir);
    test_close_in_process(dir);
    test_permissions(dir);

    std::string rm = "rm -rf '" + dir + "'";
    if (std::system(rm.c_str()) != 0)
        tap::diag("could not remove " + dir);
    return tap::done_testing();
}
