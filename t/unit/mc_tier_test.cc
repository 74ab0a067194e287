// Unit tests for cached/mc_tier and cached/mc_proto against real memcached
// servers that the test starts on free loopback ports (and kills by pid at
// the end): binary-safe round trips, misses, the size limit, key hashing
// and collisions, distribution, a server killed and restarted, heartbeatd's
// word, a server that never answers, a malformed reply, pipelining,
// callbacks that call back in or destroy the tier, and the strict parser.
//
// The tier runs on a libev loop in this thread; the test reads and writes
// memcached directly over blocking sockets to see where things landed.

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "cached/mc_proto.h"
#include "cached/mc_tier.h"
#include "common/address.h"
#include "common/config.h"
#include "common/log.h"
#include "t/unit/loopback.h"
#include "t/unit/tap.h"

namespace {

using Clock = std::chrono::steady_clock;

constexpr double kTimeout = 0.1;
constexpr double kRetryAfter = 0.5;

double
since(Clock::time_point t0)
{
    return std::chrono::duration<double>(Clock::now() - t0).count();
}

// A real memcached on a loopback port, killed by pid when done.
class Memcached {
public:
    explicit Memcached(uint16_t port = 0)
        : port_(port ? port : sjtest::unused_port())
    {
        start();
    }
    ~Memcached() { stop(SIGTERM); }

    uint16_t port() const { return port_; }

    // Starts it (again) on the same port; false if it does not listen
    // within 3 s.
    bool start()
    {
        std::string p = std::to_string(port_);
        std::vector<const char*> argv = {"memcached", "-l",      "127.0.0.1",
                                         "-p",        p.c_str(), "-U",
                                         "0",         "-m",      "16"};
        if (::geteuid() == 0) {
            argv.push_back("-u");
            argv.push_back("nobody");
        }
        argv.push_back(nullptr);
        pid_ = ::fork();
        if (pid_ == 0) {
            // Dies with the test, even if the test crashes.
            ::prctl(PR_SET_PDEATHSIG, SIGKILL);
            int null = ::open("/dev/null", O_RDWR);
            ::dup2(null, 0);
            ::dup2(null, 1);
            ::dup2(null, 2);
            ::execvp("memcached", const_cast<char* const*>(argv.data()));
            ::_exit(127);
        }
        for (auto t0 = Clock::now(); since(t0) < 3.0;) {
            int fd = sjtest::dial_loopback(port_, 2);
            if (fd >= 0) {
                ::close(fd);
                return true;
            }
            ::usleep(10000);
        }
        return false;
    }

    void stop(int sig)
    {
        if (pid_ <= 0)
            return;
        ::kill(pid_, sig);
        ::waitpid(pid_, nullptr, 0);
        pid_ = -1;
    }

private:
    uint16_t port_;
    pid_t pid_ = -1;
};

// Sends `req` and reads until `complete` says the reply is whole.
std::string
direct(uint16_t port, const std::string& req,
       bool (*complete)(const std::string&))
{
    int fd = sjtest::dial_loopback(port, 2);
    if (fd < 0)
        return "";
    ::send(fd, req.data(), req.size(), MSG_NOSIGNAL);
    std::string got;
    char buf[65536];
    while (!complete(got)) {
        ssize_t n = ::read(fd, buf, sizeof buf);
        if (n <= 0)
            break;
        got.append(buf, static_cast<size_t>(n));
    }
    ::close(fd);
    return got;
}

bool
line_complete(const std::string& s)
{
    return s.size() >= 2 && s.compare(s.size() - 2, 2, "\r\n") == 0;
}

bool
stats_complete(const std::string& s)
{
    return s.size() >= 5 && s.compare(s.size() - 5, 5, "END\r\n") == 0;
}

bool
get_complete(const std::string& s)
{
    if (s.starts_with("END\r\n"))
        return true;
    size_t eol = s.find("\r\n");
    if (eol == std::string::npos)
        return false;
    size_t sp = s.rfind(' ', eol);
    size_t bytes = std::strtoull(s.c_str() + sp + 1, nullptr, 10);
    return s.size() >= eol + 2 + bytes + 7;
}

// Stores an item under a memcached key directly, as other software might.
bool
direct_set(uint16_t port, const std::string& mc_key, uint32_t flags,
           const std::string& data)
{
    std::string req = "set " + mc_key + " " + std::to_string(flags) + " 0 " +
                      std::to_string(data.size()) + "\r\n" + data + "\r\n";
    return direct(port, req, line_complete) == "STORED\r\n";
}

// The data stored under a memcached key, if any.
std::optional<std::string>
direct_get(uint16_t port, const std::string& mc_key)
{
    std::string r = direct(port, "get " + mc_key + "\r\n", get_complete);
    if (!r.starts_with("VALUE "))
        return std::nullopt;
    size_t eol = r.find("\r\n");
    size_t sp = r.rfind(' ', eol);
    size_t bytes = std::strtoull(r.c_str() + sp + 1, nullptr, 10);
    return r.substr(eol + 2, bytes);
}

bool
holds(uint16_t port, const std::string& cache_key)
{
    return direct_get(port, sj::mc::hash_key(cache_key).mc_key).has_value();
}

long
curr_items(uint16_t port)
{
    std::string r = direct(port, "stats\r\n", stats_complete);
    size_t p = r.find("STAT curr_items ");
    return p == std::string::npos ? -1 : std::atol(r.c_str() + p + 16);
}

void
flush_all(uint16_t port)
{
    direct(port, "flush_all\r\n", line_complete);
}

sj::NodeConfig
node(const std::string& name, uint16_t port, int weight = 10)
{
    sj::NodeConfig n;
    n.name = name;
    n.address_text = "127.0.0.1:" + std::to_string(port);
    std::string err;
    if (!sj::parse_address(n.address_text, &n.address, &err))
        std::abort();
    n.weight = weight;
    return n;
}

sj::PoolConfig
pool(std::vector<sj::NodeConfig> nodes)
{
    sj::PoolConfig p;
    p.name = "memcache";
    p.nodes = std::move(nodes);
    return p;
}

sj::McTierOptions
options(size_t max_object = 600000)
{
    sj::McTierOptions o;
    o.timeout = kTimeout;
    o.retry_after = kRetryAfter;
    o.max_object = max_object;
    return o;
}

// ------------------------------------------------------------ the loop

struct ev_loop* g_loop = nullptr;

// Runs the loop until `done()` or `max` seconds passed; true if done.
template <typename F>
bool
run_until(F done, double max = 3.0)
{
    ev_timer guard;
    bool expired = false;
    ev_timer_init(
        &guard,
        [](struct ev_loop*, ev_timer* w, int) {
            *static_cast<bool*>(w->data) = true;
        },
        max, 0.);
    guard.data = &expired;
    ev_timer_start(g_loop, &guard);
    while (!done() && !expired)
        ev_run(g_loop, EVRUN_ONCE);
    ev_timer_stop(g_loop, &guard);
    return done();
}

void
run_for(double seconds)
{
    auto t0 = Clock::now();
    run_until([&] { return since(t0) >= seconds; }, seconds + 0.1);
}

// Every server's queue empty, so what was set has been stored.
bool
settled(const sj::McTier& tier)
{
    std::string d = tier.describe();
    size_t lines = 0, idle = 0;
    for (size_t p = 0; (p = d.find('\n', p)) != std::string::npos; ++p)
        ++lines;
    for (size_t p = 0; (p = d.find(" pending 0 ", p)) != std::string::npos; ++p)
        ++idle;
    return lines == idle;
}

void
settle(const sj::McTier& tier)
{
    run_until([&] { return settled(tier); });
}

struct GetResult {
    bool answered = false;
    bool found = false;
    std::string value;
    double elapsed = 0;
};

GetResult
sync_get(sj::McTier& tier, const std::string& key)
{
    auto r = std::make_shared<GetResult>();
    auto t0 = Clock::now();
    tier.get(key, [r, t0](bool found, std::string_view v) {
        r->answered = true;
        r->found = found;
        r->value = std::string(v);
        r->elapsed = since(t0);
    });
    run_until([&] { return r->answered; });
    return *r;
}

std::string
random_bytes(size_t n, uint64_t seed)
{
    std::string s(n, '\0');
    uint64_t x = seed * 0x9e3779b97f4a7c15ull + 1;
    for (size_t i = 0; i < n; ++i) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        s[i] = static_cast<char>(x);
    }
    return s;
}

// Keys (from "prefix<i>") whose home, with both servers up, is `port`,
// found by storing them and asking memcached.
std::vector<std::string>
keys_on(sj::McTier& tier, uint16_t port, const std::string& prefix, size_t want)
{
    std::vector<std::string> out;
    for (int i = 0; out.size() < want && i < 400; ++i) {
        std::string k = prefix + std::to_string(i);
        tier.set(k, "probe", 0);
        settle(tier);
        if (holds(port, k))
            out.push_back(k);
    }
    return out;
}

// ------------------------------------------------------------ tests

void
test_parser()
{
    using sj::mc::Op;
    using sj::mc::ReplyStatus;
    sj::mc::Reply r;
    auto parse = [&](std::string_view in, Op op = Op::kGet, size_t max = 100) {
        r = {};
        return sj::mc::parse_reply(in, op, "sj:k", max, &r);
    };
    tap::ok(parse("END\r\n") == ReplyStatus::kMiss && r.consumed == 5,
            "parser: END is a miss");
    tap::ok(parse("VALUE sj:k 7 3\r\nabc\r\nEND\r\nx") == ReplyStatus::kHit &&
                r.flags == 7 && r.data == "abc" && r.consumed == 26,
            "parser: a VALUE with its data and END");
    tap::ok(parse("VALUE sj:k 7 3\r\nabc\r\nEN") == ReplyStatus::kNeedMore &&
                parse("VALU") == ReplyStatus::kNeedMore,
            "parser: partial replies need more");
    tap::ok(parse("VALUE sj:other 7 3\r\nabc\r\nEND\r\n") == ReplyStatus::kBad,
            "parser: another key is bad");
    tap::ok(
        parse("VALUE sj:k 07 3\r\nabc\r\nEND\r\n") == ReplyStatus::kBad &&
            parse("VALUE sj:k 7 +3\r\nabc\r\nEND\r\n") == ReplyStatus::kBad &&
            parse("VALUE sj:k 4294967296 3\r\nabc\r\nEND\r\n") ==
                ReplyStatus::kBad &&
            parse("VALUE sj:k 7 3 99\r\nabc\r\nEND\r\n") == ReplyStatus::kBad &&
            parse("VALUE  sj:k 7 3\r\nabc\r\nEND\r\n") == ReplyStatus::kBad,
        "parser: odd numbers and fields are bad");
    tap::ok(parse("VALUE sj:k 7 3\r\nabcd\r\nEND\r\n") == ReplyStatus::kBad &&
                parse("VALUE sj:k 7 3\r\nabc\r\nEND\r\r") == ReplyStatus::kBad,
            "parser: data not followed by CRLF END CRLF is bad");
    tap::ok(parse("STORED\r\n") == ReplyStatus::kBad &&
                parse("ERROR\r\n") == ReplyStatus::kBad &&
                parse("CLIENT_ERROR bad data chunk\r\n") == ReplyStatus::kBad,
            "parser: a reply to another command is bad");
    tap::ok(parse(std::string(600, 'x')) == ReplyStatus::kBad,
            "parser: a line without end is bad at 512 bytes");
    tap::ok(parse("VALUE sj:k 1 1000\r\n") == ReplyStatus::kSkip &&
                r.skip == 1000 && r.consumed == 19,
            "parser: data over the limit is skipped, not held");
    tap::ok(parse("SERVER_ERROR out of memory\r\n", Op::kSet) ==
                    ReplyStatus::kServerError &&
                r.error == "out of memory",
            "parser: SERVER_ERROR");
    tap::ok(parse("STORED\r\n", Op::kSet) == ReplyStatus::kOk &&
                parse("NOT_STORED\r\n", Op::kSet) == ReplyStatus::kOk &&
                parse("DELETED\r\n", Op::kDelete) == ReplyStatus::kOk &&
                parse("NOT_FOUND\r\n", Op::kDelete) == ReplyStatus::kOk &&
                parse("DELETED\r\n", Op::kSet) == ReplyStatus::kBad &&
                parse("END\r\n", Op::kDelete) == ReplyStatus::kBad,
            "parser: set and delete replies");

    tap::ok(sj::mc::exptime(0, 1700000000) == 0 &&
                sj::mc::exptime(300, 1700000000) == 300 &&
                sj::mc::exptime(40 * 86400, 1700000000) ==
                    1700000000 + 40 * 86400,
            "exptime: relative up to 30 days, absolute beyond");

    std::string_view v;
    std::string hdr = sj::mc::value_header("key");
    tap::ok(sj::mc::decode_value(sj::mc::kFlags, hdr + "val", "key", &v) &&
                v == "val",
            "decode: our own item");
    tap::ok(!sj::mc::decode_value(sj::mc::kFlags, hdr + "val", "kez", &v) &&
                !sj::mc::decode_value(0, hdr + "val", "key", &v) &&
                !sj::mc::decode_value(sj::mc::kFlags, hdr.substr(0, 5), "key",
                                      &v) &&
                !sj::mc::decode_value(sj::mc::kFlags, "ab", "key", &v),
            "decode: another key, other flags, truncated: a miss");
}

void
test_hashing()
{
    std::set<std::string> seen;
    bool shape = true;
    for (int i = 0; i < 20000; ++i) {
        std::string k = "http://example.com/page?id=" + std::to_string(i);
        std::string m = sj::mc::hash_key(k).mc_key;
        shape = shape && m.size() == 43 && m.starts_with("sj:") &&
                m.find_first_not_of("0123456789abcdef", 3) == std::string::npos;
        seen.insert(m);
    }
    tap::ok(shape, "hash: keys are sj: and 40 hex digits");
    tap::is(seen.size(), size_t{20000}, "hash: 20000 keys, 20000 names");
    std::string binary("a\0b \r\n", 6);
    tap::ok(sj::mc::hash_key(binary).mc_key ==
                    sj::mc::hash_key(binary).mc_key &&
                sj::mc::hash_key(binary).mc_key !=
                    sj::mc::hash_key(std::string("a\0b \r\x0b", 6)).mc_key,
            "hash: binary keys, stable and distinct");
}

void
test_basics(Memcached& a, Memcached& b)
{
    sj::McTier tier(g_loop,
                    pool({node("mc1", a.port()), node("mc2", b.port())}),
                    options());
    struct Case {
        const char* name;
        std::string value;
    };
    std::vector<Case> cases = {
        {"text", "hello world"},
        {"CR LF and END inside", "line\r\nEND\r\nVALUE x 0 1\r\n\r\n"},
        {"NUL bytes", std::string("\0\0a\0", 4)},
        {"empty", ""},
        {"500 KB", random_bytes(500 * 1024, 7)},
    };
    for (size_t i = 0; i < cases.size(); ++i)
        tier.set("rt" + std::to_string(i), cases[i].value, 0);
    for (size_t i = 0; i < cases.size(); ++i) {
        GetResult g = sync_get(tier, "rt" + std::to_string(i));
        tap::ok(g.answered && g.found && g.value == cases[i].value,
                std::string("round trip: ") + cases[i].name);
    }
    GetResult miss = sync_get(tier, "never-stored");
    tap::ok(miss.answered && !miss.found, "a key never stored is a miss");

    uint64_t dropped = tier.stats().dropped;
    tier.set("big", std::string(600001, 'b'), 0);
    tap::is(tier.stats().dropped, dropped + 1, "over max_object: dropped");
    GetResult big = sync_get(tier, "big");
    tap::ok(big.answered && !big.found, "over max_object: not stored");
    tier.set("atmax", std::string(600000, 'm'), 0);
    GetResult atmax = sync_get(tier, "atmax");
    tap::ok(atmax.found && atmax.value.size() == 600000,
            "exactly max_object: stored");

    // A forced collision: the memcached key of "victim" holding an item
    // stored for another cache key, on both servers.
    std::string mk = sj::mc::hash_key("victim").mc_key;
    std::string evil = sj::mc::value_header("intruder") + "evil body";
    bool put = direct_set(a.port(), mk, sj::mc::kFlags, evil) &&
               direct_set(b.port(), mk, sj::mc::kFlags, evil);
    GetResult col = sync_get(tier, "victim");
    tap::ok(put && col.answered && !col.found,
            "collision: an item stored for another key is a miss");
    std::string good = sj::mc::value_header("victim") + "good body";
    put = direct_set(a.port(), mk, sj::mc::kFlags, good) &&
          direct_set(b.port(), mk, sj::mc::kFlags, good);
    GetResult ok = sync_get(tier, "victim");
    tap::ok(put && ok.found && ok.value == "good body",
            "collision: the same bytes written for the right key are a hit");
    put = direct_set(a.port(), mk, 0, good) &&
          direct_set(b.port(), mk, 0, good);
    GetResult foreign = sync_get(tier, "victim");
    tap::ok(put && !foreign.found, "an item with other flags is a miss");

    tier.set("gone", "soon", 0);
    GetResult before = sync_get(tier, "gone");
    tier.remove("gone");
    GetResult after = sync_get(tier, "gone");
    tap::ok(before.found && after.answered && !after.found, "remove deletes");

    // Distribution: each server gets a share.
    flush_all(a.port());
    flush_all(b.port());
    for (int i = 0; i < 400; ++i)
        tier.set("dist" + std::to_string(i), "x", 0);
    settle(tier);
    long na = 0, nb = 0;
    for (int i = 0; i < 400; ++i) {
        na += holds(a.port(), "dist" + std::to_string(i));
        nb += holds(b.port(), "dist" + std::to_string(i));
    }
    tap::diag("distribution over 2 servers: " + std::to_string(na) + " / " +
              std::to_string(nb));
    tap::ok(na + nb == 400 && na >= 120 && nb >= 120,
            "distribution: 400 keys, each server holds at least 30%");
    int found = 0;
    for (int i = 0; i < 400; i += 20)
        found += sync_get(tier, "dist" + std::to_string(i)).found;
    tap::is(found, 20, "distribution: every key found again");

    tap::is(tier.stats().errors, uint64_t{0}, "no errors so far");
    tap::ok(tier.describe().find("mc1 127.0.0.1:" + std::to_string(a.port()) +
                                 " weight 10 up connected") !=
                std::string::npos,
            "describe: name, address, weight, state");
}

void
test_weights(Memcached& a, Memcached& b)
{
    flush_all(a.port());
    flush_all(b.port());
    sj::McTier tier(g_loop,
                    pool({node("mc1", a.port(), 0), node("mc2", b.port())}),
                    options());
    for (int i = 0; i < 50; ++i)
        tier.set("w" + std::to_string(i), "x", 0);
    settle(tier);
    int na = 0, nb = 0;
    for (int i = 0; i < 50; ++i) {
        na += holds(a.port(), "w" + std::to_string(i));
        nb += holds(b.port(), "w" + std::to_string(i));
    }
    tap::ok(na == 0 && nb == 50, "weight 0: the server gets no keys");

    sj::McTier weighted(
        g_loop, pool({node("mc1", a.port(), 10), node("mc2", b.port(), 30)}),
        options());
    for (int i = 0; i < 400; ++i)
        weighted.set("wd" + std::to_string(i), "x", 0);
    settle(weighted);
    na = nb = 0;
    for (int i = 0; i < 400; ++i) {
        na += holds(a.port(), "wd" + std::to_string(i));
        nb += holds(b.port(), "wd" + std::to_string(i));
    }
    tap::diag("weights 10 and 30: " + std::to_string(na) + " / " +
              std::to_string(nb));
    tap::ok(na + nb == 400 && na >= 60 && na <= 140,
            "weights 10 and 30: about a quarter and three quarters");
}

void
test_pipelining(Memcached& a)
{
    sj::McTier tier(g_loop, pool({node("mc1", a.port())}), options());
    for (int i = 0; i < 100; i += 2)
        tier.set("p" + std::to_string(i), "value " + std::to_string(i), 0);
    std::vector<int> order;
    int right = 0;
    for (int i = 0; i < 100; ++i)
        tier.get("p" + std::to_string(i), [&order, &right,
                                           i](bool found, std::string_view v) {
            order.push_back(i);
            bool want = i % 2 == 0;
            if (found == want && (!want || v == "value " + std::to_string(i)))
                ++right;
        });
    tap::ok(order.empty(), "pipelining: no callback from inside get()");
    run_until([&] { return order.size() == 100; });
    bool in_order = order.size() == 100;
    for (size_t i = 0; in_order && i < order.size(); ++i)
        in_order = order[i] == static_cast<int>(i);
    tap::ok(in_order, "pipelining: 100 gets answered in order");
    tap::is(right, 100, "pipelining: each with its own value or a miss");
}

void
test_reentrancy(Memcached& a)
{
    auto tier = std::make_unique<sj::McTier>(
        g_loop, pool({node("mc1", a.port())}), options());
    tier->set("re1", "one", 0);
    std::string inner;
    bool inner_done = false;
    tier->get("re1", [&](bool found, std::string_view v) {
        // From inside a callback: a set and a get of another key.
        tier->set("re2", std::string(v) + "+two", 0);
        tier->get("re2", [&](bool f2, std::string_view v2) {
            inner = f2 ? std::string(v2) : "(miss)";
            inner_done = true;
        });
        (void)found;
    });
    run_until([&] { return inner_done; });
    tap::is(inner, std::string("one+two"),
            "a callback may set and get through the tier");

    // A callback that destroys the tier: the other pending gets are
    // dropped, never called.
    int called = 0;
    tier->set("re3", "three", 0);
    for (int i = 0; i < 3; ++i)
        tier->get("re3", [&](bool, std::string_view) {
            ++called;
            tier.reset();
        });
    run_until([&] { return !tier; });
    run_for(0.05);
    tap::is(called, 1, "a callback may destroy the tier; the rest dropped");

    tier = std::make_unique<sj::McTier>(g_loop, pool({node("mc1", a.port())}),
                                        options());
    int late = 0;
    for (int i = 0; i < 5; ++i)
        tier->get("re3", [&](bool, std::string_view) { ++late; });
    tier.reset();
    run_for(0.1);
    tap::is(late, 0, "destroying the tier drops pending gets silently");

    tier = std::make_unique<sj::McTier>(g_loop, pool({node("mc1", a.port())}),
                                        options());
    int failed = 0;
    for (int i = 0; i < 5; ++i)
        tier->get("re3", [&](bool f, std::string_view) { failed += !f; });
    tier->fail_pending();
    tap::is(failed, 5, "fail_pending answers every pending get, a miss");
    GetResult again = sync_get(*tier, "re3");
    tap::ok(again.found && again.value == "three",
            "after fail_pending the tier reconnects");
}

void
test_health(Memcached& a, Memcached& b)
{
    flush_all(a.port());
    flush_all(b.port());
    sj::McTier tier(g_loop,
                    pool({node("mc1", a.port()), node("mc2", b.port())}),
                    options());
    std::vector<std::string> home_a = keys_on(tier, a.port(), "h", 10);
    tap::is(home_a.size(), size_t{10}, "health: 10 keys whose home is mc1");

    tap::ok(tier.set_health("mc1", false), "set_health: a known node");
    tap::ok(!tier.set_health("mc9", false) &&
                !tier.set_health("other/mc1", false),
            "set_health: an unknown node or another pool");
    tap::ok(tier.describe().find("mc1 127.0.0.1:" + std::to_string(a.port()) +
                                 " weight 10 down (heartbeatd)") !=
                std::string::npos,
            "describe: down (heartbeatd)");
    flush_all(a.port());
    flush_all(b.port());
    int served = 0, on_a = 0, on_b = 0;
    for (const auto& k : home_a) {
        tier.set(k, "moved", 0);
        served += sync_get(tier, k).value == "moved";
        on_a += holds(a.port(), k);
        on_b += holds(b.port(), k);
    }
    tap::ok(served == 10 && on_a == 0 && on_b == 10,
            "reported down: its keys go to the other server at once");

    tap::ok(tier.set_health("memcache/mc1", true), "set_health: pool/name");
    int home = 0;
    for (const auto& k : home_a) {
        tier.set(k, "home", 0);
        home += sync_get(tier, k).value == "home" && holds(a.port(), k);
    }
    tap::is(home, 10, "reported up: its keys come back");
}

void
test_kill(Memcached& a, Memcached& b)
{
    flush_all(a.port());
    flush_all(b.port());
    sj::McTier tier(g_loop,
                    pool({node("mc1", a.port()), node("mc2", b.port())}),
                    options());
    std::vector<std::string> home_a = keys_on(tier, a.port(), "k", 12);
    tap::is(home_a.size(), size_t{12}, "kill: 12 keys whose home is mc1");
    for (const auto& k : home_a)
        tier.set(k, "v-" + k, 0);
    settle(tier);

    a.stop(SIGKILL);
    GetResult first = sync_get(tier, home_a[0]);
    tap::diag("first get after SIGKILL: " + std::to_string(first.elapsed) +
              " s");
    tap::ok(first.answered && !first.found && first.elapsed < kTimeout + 0.05,
            "kill: the next get fails within the timeout");
    double worst = 0;
    int misses = 0;
    for (size_t i = 1; i < 6; ++i) {
        GetResult g = sync_get(tier, home_a[i]);
        worst = std::max(worst, g.elapsed);
        misses += g.answered && !g.found;
    }
    tap::diag("later gets: worst " + std::to_string(worst) + " s");
    tap::ok(misses == 5 && worst < kTimeout / 4,
            "kill: the gets after that skip it at once");
    tap::ok(tier.describe().find("failed, retry in") != std::string::npos,
            "describe: failed, retry in");
    int moved = 0;
    for (size_t i = 6; i < 12; ++i) {
        tier.set(home_a[i], "new-" + home_a[i], 0);
        moved += sync_get(tier, home_a[i]).value == "new-" + home_a[i];
    }
    tap::is(moved, 6, "kill: its keys are stored and found on the other");
    tap::ok(tier.stats().errors + tier.stats().timeouts >= 1,
            "kill: counted as an error");

    bool up = a.start();
    tap::ok(up, "restarted memcached on the same port");
    run_for(kRetryAfter + 0.05);
    tier.set(home_a[0], "back", 0);
    GetResult back = sync_get(tier, home_a[0]);
    tap::ok(back.value == "back" && holds(a.port(), home_a[0]),
            "after retry_after the restarted server is used again");
}

// A listening socket nobody accepts from: connects succeed, requests are
// never answered.
class BlackHole {
public:
    BlackHole() { fd_ = sjtest::bind_loopback(16, &port_); }
    ~BlackHole() { ::close(fd_); }
    uint16_t port() const { return port_; }

private:
    int fd_ = -1;
    uint16_t port_ = 0;
};

void
test_silent(Memcached& b)
{
    BlackHole hole;
    {
        sj::McTier tier(g_loop, pool({node("hole", hole.port())}), options());
        GetResult first = sync_get(tier, "anything");
        tap::diag("silent server: first get " + std::to_string(first.elapsed) +
                  " s");
        tap::ok(first.answered && !first.found &&
                    first.elapsed >= kTimeout * 0.9 &&
                    first.elapsed < kTimeout + 0.05,
                "silent server: the first get costs one timeout");
        tap::is(tier.stats().timeouts, uint64_t{1}, "counted as a timeout");
        GetResult second = sync_get(tier, "other");
        tap::ok(second.answered && !second.found && second.elapsed < 0.01 &&
                    tier.stats().skipped == 1,
                "silent server: the next get is skipped at once");
        tier.set("x", "y", 0);
        tap::is(tier.stats().skipped, uint64_t{2},
                "silent server: a set with no server up is skipped");
    }
    {
        sj::McTier tier(
            g_loop, pool({node("hole", hole.port()), node("mc2", b.port())}),
            options());
        int slow = 0, found = 0;
        for (int i = 0; i < 20; ++i) {
            std::string k = "s" + std::to_string(i);
            tier.set(k, "v", 0);
            GetResult g = sync_get(tier, k);
            slow += g.elapsed > kTimeout / 2;
            found += g.found;
        }
        tap::ok(slow <= 1 && found >= 19,
                "silent server beside a good one: at most one timeout, then "
                "all keys served");
    }
}

// A server that answers every request with `reply` and keeps listening.
class Scripted {
public:
    explicit Scripted(std::string reply) : reply_(std::move(reply))
    {
        fd_ = sjtest::bind_loopback(16, &port_);
        thread_ = std::thread([this] {
            int c = ::accept4(fd_, nullptr, nullptr, SOCK_CLOEXEC);
            if (c < 0)
                return;
            char buf[4096];
            if (::read(c, buf, sizeof buf) > 0)
                ::send(c, reply_.data(), reply_.size(), MSG_NOSIGNAL);
            // Hold the connection until the test is done with it.
            ::read(c, buf, sizeof buf);
            ::close(c);
        });
    }
    ~Scripted()
    {
        ::shutdown(fd_, SHUT_RDWR);
        thread_.join();
        ::close(fd_);
    }
    uint16_t port() const { return port_; }

private:
    std::string reply_;
    int fd_ = -1;
    uint16_t port_ = 0;
    std::thread thread_;
};

void
test_malformed()
{
    for (const char* reply : {"VALUE sj:wrong 0 1\r\nx\r\nEND\r\n", "HELLO\r\n",
                              "END\r\nEND\r\n"}) {
        Scripted srv(reply);
        sj::McTier tier(g_loop, pool({node("bad", srv.port())}), options());
        GetResult g = sync_get(tier, "key");
        std::string what = reply;
        what = what.substr(0, what.find('\r'));
        tap::ok(g.answered && !g.found && g.elapsed < kTimeout / 2 &&
                    tier.stats().errors == 1 &&
                    tier.describe().find("failed, retry in") !=
                        std::string::npos,
                "malformed reply (" + what +
                    "): a miss at once, the server failed");
        tier.fail_pending();  // lets the scripted server's read() end
    }
}

void
test_oversized_reply(Memcached& a)
{
    // Another instance (bigger max_object) stored 100 KB under a key; this
    // one, limited to 1000 bytes, reads past it and keeps the connection.
    sj::McTier tier(g_loop, pool({node("mc1", a.port())}), options(1000));
    std::string mk = sj::mc::hash_key("huge").mc_key;
    bool put =
        direct_set(a.port(), mk, sj::mc::kFlags,
                   sj::mc::value_header("huge") + random_bytes(100000, 3));
    tier.set("small", "fits", 0);
    GetResult huge = sync_get(tier, "huge");
    GetResult small = sync_get(tier, "small");
    tap::ok(put && huge.answered && !huge.found && small.value == "fits" &&
                tier.stats().errors == 0,
            "a value over our limit is read past as a miss, the connection "
            "kept");
}

}  // namespace

int
main()
{
    ::signal(SIGPIPE, SIG_IGN);
    sj::log_open("mc_tier_test", sj::LogTarget::kStderr, "",
                 sj::LogLevel::kWarn);
    g_loop = ev_default_loop(0);
    auto t0 = Clock::now();

    test_parser();
    test_hashing();

    Memcached a, b;
    if (!tap::ok(curr_items(a.port()) == 0 && curr_items(b.port()) == 0,
                 "two memcached servers started")) {
        return tap::done_testing();
    }
    test_basics(a, b);
    test_weights(a, b);
    test_pipelining(a);
    test_reentrancy(a);
    test_health(a, b);
    test_oversized_reply(a);
    test_silent(b);
    test_malformed();
    test_kill(a, b);

    tap::diag("total " + std::to_string(since(t0)) + " s");
    return tap::done_testing();
}
