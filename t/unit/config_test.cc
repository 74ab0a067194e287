// sunjammer.conf(5): a full configuration, the defaults, one exact
// `file:line: message` per kind of mistake, @include, and the dump round
// trip.

#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <string>

#include "common/config.h"
#include "t/unit/tap.h"

namespace {

using sj::Config;
using sj::ConfigError;

// Parses `text` and returns the error message, or "" if it parsed.
std::string
error_of(const std::string& text)
{
    try {
        sj::parse_config_text(text, "t.conf");
    } catch (const ConfigError& e) {
        return e.what();
    }
    return "";
}

void
expect_error(const std::string& text, const std::string& want,
             const std::string& name)
{
    tap::is(error_of(text), want, name);
}

void
write_file(const std::string& path, const std::string& text)
{
    std::ofstream f(path);
    f << text;
}

const char* const kPools =
    "pools = {\n"                                                   // 1
    "  php = { nodes = ( { name = \"php1\";\n"                      // 2
    "                      address = \"127.0.0.1:81\"; } ); };\n";  // 3
// kPools ends with the pools group open; close it with "};\n" (line 4).

const char* const kFull =
    "global = {\n"
    "  user = \"www\"; group = \"www\"; admin_group = \"adm\";\n"
    "  run_dir = \"/var/run/sj\"; log_level = \"debug\";\n"
    "  log_file = \"/var/log/sj.log\"; syslog_facility = \"local3\";\n"
    "  shutdown_timeout = 3; nofile = 4096;\n"
    "};\n"
    "pools = {\n"
    "  php = {\n"
    "    balance = \"hash\"; hash_on = \"cookie:SESSID\";\n"
    "    maxconn = 32; maxqueue = 100; queue_timeout = 2.5; retries = 3;\n"
    "    check = { type = \"http\"; method = \"HEAD\"; path = \"/h.php\";\n"
    "              host = \"example.org\"; expect_status = [200, 204];\n"
    "              expect_body = \"OK\"; tls = true; interval = 0.5;\n"
    "              timeout = 2; rise = 3; fall = 4; };\n"
    "    nodes = ( { name = \"php1\"; address = \"127.0.0.1:8081\";\n"
    "                weight = 20; maxconn = 5; },\n"
    "              { name = \"php2\"; address = \"[::1]:8082\";\n"
    "                backup = true; } );\n"
    "  };\n"
    "  memcache = { check = { type = \"memcached\"; };\n"
    "    nodes = ( { name = \"mc1\"; address = \"127.0.0.1:11211\"; } ); };\n"
    "  mysql = { mode = \"master-master\";\n"
    "    check = { type = \"mysql\"; user = \"mon\"; password = \"pw\";\n"
    "              max_lag = 30; };\n"
    "    nodes = ( { name = \"db1\"; address = \"127.0.0.1:3307\"; },\n"
    "              { name = \"db2\"; address = \"127.0.0.1:3308\"; } ); };\n"
    "};\n"
    "cached = {\n"
    "  listen = ( \"127.0.0.1:8080\",\n"
    "             { address = \"127.0.0.1:8443\";\n"
    "               tls = { certificate = \"/c.pem\"; key = \"/k.pem\"; }; } "
    ");\n"
    "  origin = \"unix:/run/sj/b.sock\"; memory = \"64M\";\n"
    "  max_object = 1048576; workers = 4; shared_tier = \"memcache\";\n"
    "  purge_allow = [ \"127.0.0.1\", \"10.0.0.0/8\" ];\n"
    "  limits = { request_line = \"16K\"; header_line = 4096;\n"
    "             header_total = 131072; header_count = 50; };\n"
    "  access_log = \"/var/log/sj-access.log\";\n"
    "};\n"
    "balancerd = {\n"
    "  listen = ( \"unix:/run/sj/b.sock\" );\n"
    "  pool = \"php\"; workers = 2;\n"
    "  tcp = ( { listen = \"127.0.0.1:3306\"; pool = \"mysql\";\n"
    "            route = \"writer\"; } );\n"
    "  trusted = [ \"127.0.0.1\" ];\n"
    "  limits = { header_count = 20; };\n"
    "  access_log = \"/var/log/b.log\";\n"
    "};\n"
    "heartbeatd = {\n"
    "  node = \"lb1\"; priority = 150;\n"
    "  peers = ( { name = \"lb2\"; address = \"192.0.2.2:694\"; } );\n"
    "  listen = \"0.0.0.0:694\"; auth_key_file = \"/etc/sj/key\";\n"
    "  interval = 0.25; dead_time = 2;\n"
    "  vips = [ \"192.0.2.100/24\" ]; notify = [ \"cached\", \"balancerd\" ];\n"
    "};\n";

void
test_full()
{
    auto c = sj::parse_config_text(kFull, "full.conf");
    tap::is(c->file, std::string("full.conf"), "file name kept");
    tap::is(c->global.user, std::string("www"), "global.user");
    tap::is(c->global.group, std::string("www"), "global.group");
    tap::is(c->global.admin_group, std::string("adm"), "global.admin_group");
    tap::is(c->global.run_dir, std::string("/var/run/sj"), "global.run_dir");
    tap::ok(c->global.log_level == sj::LogLevel::kDebug, "global.log_level");
    tap::is(c->global.log_file, std::string("/var/log/sj.log"), "log_file");
    tap::is(c->global.syslog_facility, std::string("local3"), "facility");
    tap::is(c->global.shutdown_timeout, 3.0, "integer seconds accepted");
    tap::is(c->global.nofile, 4096, "global.nofile");

    tap::is(c->pools.size(), size_t{3}, "three pools");
    const sj::PoolConfig& php = c->pools.at("php");
    tap::is(php.name, std::string("php"), "pool name");
    tap::is(php.balance, std::string("hash"), "pool balance");
    tap::is(php.hash_on, std::string("cookie:SESSID"), "pool hash_on");
    tap::is(php.maxconn, 32, "pool maxconn");
    tap::is(php.maxqueue, 100, "pool maxqueue");
    tap::is(php.queue_timeout, 2.5, "pool queue_timeout");
    tap::is(php.retries, 3, "pool retries");
    tap::is(php.line, 8, "pool line");
    tap::is(php.check.type, std::string("http"), "check type");
    tap::is(php.check.method, std::string("HEAD"), "check method");
    tap::is(php.check.path, std::string("/h.php"), "check path");
    tap::is(php.check.host, std::string("example.org"), "check host");
    tap::ok(php.check.expect_status == std::vector<int>({200, 204}),
            "check expect_status");
    tap::is(php.check.expect_body, std::string("OK"), "check expect_body");
    tap::ok(php.check.tls, "check tls");
    tap::is(php.check.interval, 0.5, "check interval");
    tap::is(php.check.timeout, 2.0, "check timeout");
    tap::is(php.check.rise, 3, "check rise");
    tap::is(php.check.fall, 4, "check fall");
    tap::is(php.check.line, 11, "check line");
    tap::is(php.nodes.size(), size_t{2}, "two php nodes");
    tap::is(php.nodes[0].name, std::string("php1"), "node name");
    tap::is(php.nodes[0].address.to_string(), std::string("127.0.0.1:8081"),
            "node address parsed");
    tap::is(php.nodes[0].address_text, std::string("127.0.0.1:8081"),
            "node address text");
    tap::is(php.nodes[0].weight, 20, "node weight");
    tap::is(php.nodes[0].maxconn, 5, "node maxconn");
    tap::ok(!php.nodes[0].backup, "node backup default");
    tap::is(php.nodes[0].line, 15, "node line");
    tap::ok(php.nodes[1].address.family == sj::Address::Family::kInet6,
            "IPv6 node");
    tap::ok(php.nodes[1].backup, "node backup");
    tap::is(php.nodes[1].weight, 10, "node weight default");
    const sj::PoolConfig& mysql = c->pools.at("mysql");
    tap::is(mysql.mode, std::string("master-master"), "pool mode");
    tap::is(mysql.check.user, std::string("mon"), "mysql check user");
    tap::is(mysql.check.password, std::string("pw"), "mysql check password");
    tap::is(mysql.check.max_lag, 30, "mysql max_lag");

    const sj::CachedConfig& ca = c->cached;
    tap::ok(ca.present, "cached present");
    tap::is(ca.listen.size(), size_t{2}, "cached two listeners");
    tap::ok(!ca.listen[0].tls, "plain listener");
    tap::is(ca.listen[0].address.port, 8080, "listener port");
    tap::ok(ca.listen[1].tls, "tls listener");
    tap::is(ca.listen[1].tls_config.certificate, std::string("/c.pem"),
            "tls certificate");
    tap::is(ca.listen[1].tls_config.key, std::string("/k.pem"), "tls key");
    tap::ok(ca.origin.is_unix(), "origin unix");
    tap::is(ca.origin.path, std::string("/run/sj/b.sock"), "origin path");
    tap::is(ca.memory, size_t{64} << 20, "memory string size");
    tap::is(ca.max_object, size_t{1048576}, "max_object integer size");
    tap::is(ca.workers, 4, "cached workers");
    tap::is(ca.shared_tier, std::string("memcache"), "shared_tier");
    tap::ok(ca.purge_allow ==
                std::vector<std::string>({"127.0.0.1", "10.0.0.0/8"}),
            "purge_allow");
    tap::is(ca.limits.request_line, size_t{16384}, "limits.request_line");
    tap::is(ca.limits.header_line, size_t{4096}, "limits.header_line");
    tap::is(ca.limits.header_total, size_t{131072}, "limits.header_total");
    tap::is(ca.limits.header_count, size_t{50}, "limits.header_count");
    tap::is(ca.access_log, std::string("/var/log/sj-access.log"),
            "cached access_log");

    const sj::BalancerdConfig& b = c->balancerd;
    tap::ok(b.present, "balancerd present");
    tap::ok(b.listen.size() == 1 && b.listen[0].address.is_unix(),
            "balancerd unix listener");
    tap::is(b.pool, std::string("php"), "balancerd pool");
    tap::is(b.pool_line, 41, "balancerd pool_line");
    tap::is(b.workers, 2, "balancerd workers");
    tap::is(b.tcp.size(), size_t{1}, "one tcp route");
    tap::is(b.tcp[0].listen.port, 3306, "tcp listen");
    tap::is(b.tcp[0].pool, std::string("mysql"), "tcp pool");
    tap::is(b.tcp[0].route, std::string("writer"), "tcp route");
    tap::ok(b.trusted == std::vector<std::string>({"127.0.0.1"}), "trusted");
    tap::is(b.limits.header_count, size_t{20}, "balancerd limits");
    tap::is(b.limits.header_total, size_t{65536}, "limits default kept");

    const sj::HeartbeatdConfig& h = c->heartbeatd;
    tap::ok(h.present, "heartbeatd present");
    tap::is(h.node, std::string("lb1"), "heartbeatd node");
    tap::is(h.priority, 150, "heartbeatd priority");
    tap::ok(h.peers.size() == 1 && h.peers[0].name == "lb2" &&
                h.peers[0].address.port == 694,
            "heartbeatd peers");
    tap::is(h.listen.port, 694, "heartbeatd listen");
    tap::is(h.auth_key_file, std::string("/etc/sj/key"), "auth_key_file");
    tap::is(h.interval, 0.25, "heartbeatd interval");
    tap::is(h.dead_time, 2.0, "heartbeatd dead_time");
    tap::ok(h.vips == std::vector<std::string>({"192.0.2.100/24"}), "vips");
    tap::ok(h.notify == std::vector<std::string>({"cached", "balancerd"}),
            "notify");
}

void
test_defaults()
{
    auto c = sj::parse_config_text("", "empty.conf");
    const Config d;
    tap::is(c->global.user, std::string("sunjammer"), "default user");
    tap::is(c->global.run_dir, d.global.run_dir, "default run_dir");
    tap::ok(c->global.log_level == sj::LogLevel::kInfo, "default log_level");
    tap::is(c->global.syslog_facility, std::string("daemon"),
            "default facility");
    tap::is(c->global.shutdown_timeout, 10.0, "default shutdown_timeout");
    tap::is(c->global.nofile, 65536, "default nofile");
    tap::ok(c->pools.empty(), "no pools");
    tap::ok(!c->cached.present && !c->balancerd.present &&
                !c->heartbeatd.present,
            "no daemon sections present");
    tap::is(c->cached.memory, size_t{256} << 20, "default memory");
    tap::is(c->balancerd.workers, 1, "default balancerd workers");

    auto p = sj::parse_config_text(std::string(kPools) + "};\n", "p.conf");
    const sj::PoolConfig& php = p->pools.at("php");
    tap::is(php.balance, std::string("roundrobin"), "default balance");
    tap::is(php.hash_on, std::string("uri"), "default hash_on");
    tap::is(php.retries, 2, "default retries");
    tap::is(php.queue_timeout, 5.0, "default queue_timeout");
    tap::is(php.check.type, std::string(""), "default check: none");
    tap::ok(php.check.expect_status == std::vector<int>({200}),
            "default expect_status");
    tap::is(php.check.line, 0, "no check group, no line");

    auto h = sj::parse_config_text("heartbeatd = { };\n", "h.conf");
    tap::ok(h->heartbeatd.present, "empty heartbeatd section is present");
    tap::is(h->heartbeatd.priority, 100, "default priority");
    tap::is(h->heartbeatd.interval, 0.2, "default interval");
    tap::is(h->heartbeatd.dead_time, 1.0, "default dead_time");

    auto one = sj::parse_config_text(
        std::string(kPools) +
            "};\nbalancerd = { listen = \"*:8000\"; "
            "pool = \"php\"; };\n",
        "one.conf");
    tap::ok(one->balancerd.listen.size() == 1 &&
                one->balancerd.listen[0].address.port == 8000,
            "a lone listen address is a list of one");
}

// balancerd's balancing settings: values read, defaults, ranges, dump.
void
test_balancerd_settings()
{
    std::string pools = std::string(kPools) + "};\n";  // lines 1-4
    auto c = sj::parse_config_text(
        "pools = { php = { slowstart = 4.5; sticky_cookie = \"SJNODE\";\n"
        "  nodes = ( { name = \"a\"; address = \"127.0.0.1:1\"; } ); }; };\n"
        "balancerd = { listen = \"*:1\"; pool = \"php\";\n"
        "  trusted = [ \"unix\", \"10.0.0.0/8\" ]; header_timeout = 2.0;\n"
        "  idle_timeout = 3.0; body_timeout = 4.0; connect_timeout = 0.5;\n"
        "  server_timeout = 6.0; server_idle_timeout = 0.0;\n"
        "  passive_fall = 5; passive_hold = 7.0; forwarded = true;\n"
        "  max_body = \"1M\"; max_connections = 100; send_timeout = 9.0;\n"
        "  tcp = ( { listen = \"127.0.0.1:3306\"; pool = \"php\";\n"
        "            idle_timeout = 30.0; },\n"
        "          { listen = \"127.0.0.1:3307\"; pool = \"php\";\n"
        "            connect_timeout = 0.2; } );\n"
        "  metrics_listen = \"127.0.0.1:9102\"; };\n",
        "t.conf");
    const sj::BalancerdConfig& b = c->balancerd;
    const sj::PoolConfig& p = c->pools.at("php");
    tap::ok(p.slowstart == 4.5 && p.sticky_cookie == "SJNODE",
            "pool slowstart and sticky_cookie");
    tap::ok(b.trusted.size() == 2 && b.trusted[0] == "unix",
            "trusted accepts unix");
    tap::ok(b.header_timeout == 2.0 && b.idle_timeout == 3.0 &&
                b.body_timeout == 4.0 && b.connect_timeout == 0.5 &&
                b.server_timeout == 6.0 && b.server_idle_timeout == 0.0,
            "balancerd timeouts");
    tap::ok(b.passive_fall == 5 && b.passive_hold == 7.0 && b.forwarded,
            "passive health and forwarded");
    tap::ok(b.max_body == (1u << 20) && b.max_connections == 100,
            "max_body and max_connections");
    tap::is(b.metrics_listen_text, std::string("127.0.0.1:9102"),
            "metrics_listen");
    tap::ok(b.send_timeout == 9.0, "send_timeout");
    tap::ok(b.tcp.size() == 2 && b.tcp[0].idle_timeout == 30.0 &&
                b.tcp[0].connect_timeout == 0.5 &&
                b.tcp[1].idle_timeout == 600.0 &&
                b.tcp[1].connect_timeout == 0.2,
            "tcp timeouts, connect_timeout defaulting to balancerd's");
    // The dump's first line names the file it came from.
    auto body = [](const std::string& d) { return d.substr(d.find('\n')); };
    auto again = sj::parse_config_text(sj::dump_config(*c), "t.conf");
    tap::is(body(sj::dump_config(*again)), body(sj::dump_config(*c)),
            "balancerd settings survive a dump");
    auto d = sj::parse_config_text(pools +
                                       "balancerd = { listen = \"*:1\"; "
                                       "pool = \"php\"; };\n",
                                   "t.conf");
    tap::ok(d->balancerd.connect_timeout == 3.0 &&
                d->balancerd.server_timeout == 30.0 &&
                d->balancerd.passive_fall == 3 &&
                d->balancerd.send_timeout == 60.0 &&
                d->balancerd.metrics_listen_text.empty() &&
                d->pools.at("php").slowstart == 0.0 &&
                d->pools.at("php").sticky_cookie.empty(),
            "balancerd defaults");
    expect_error(pools +
                     "balancerd = { listen = \"*:1\"; pool = \"php\";\n"
                     "  connect_timeout = 0.0; };\n",
                 "t.conf:6: 'connect_timeout' must be between 0.01 and 3600",
                 "connect_timeout range");
    expect_error(pools +
                     "balancerd = { listen = \"*:1\"; pool = \"php\";\n"
                     "  trusted = [ \"local\" ]; };\n",
                 "t.conf:6: 'trusted' entries must be \"unix\", IP addresses "
                 "or networks such as \"192.0.2.0/24\"",
                 "trusted must be unix or networks");
    expect_error(
        "pools = { php = { sticky_cookie = \"a b\";\n"
        "  nodes = ( { name = \"a\"; address = \"127.0.0.1:1\"; } ); "
        "}; };\n",
        "t.conf:1: 'sticky_cookie' must be a cookie name (a token)",
        "sticky_cookie must be a token");
}

void
test_errors()
{
    std::string pools = std::string(kPools) + "};\n";  // lines 1-4

    expect_error("global = { user = ; };\n", "t.conf:1: syntax error",
                 "syntax error");
    expect_error("global = {};\nfoo = 1;\n",
                 "t.conf:2: unknown setting 'foo' at top level",
                 "unknown top-level setting");
    expect_error(
        "pools = {\n  php = { nodes = (\n"
        "    { name = \"a\"; address = \"127.0.0.1:1\"; },\n"
        "    { name = \"b\"; address = \"127.0.0.1:2\";\n"
        "      wieght = 3; } ); };\n};\n",
        "t.conf:5: unknown setting 'wieght' in pools.php.nodes[1]",
        "unknown setting in a node");
    expect_error(pools +
                     "balancerd = { listen = \"*:1\"; pool = \"php\";\n"
                     "  foo = 1; };\n",
                 "t.conf:6: unknown setting 'foo' in balancerd",
                 "unknown setting in balancerd");
    expect_error(pools +
                     "cached = { listen = \"*:1\"; origin = \"*:2\";\n"
                     "  workers = \"4\"; };\n",
                 "t.conf:6: 'workers' must be an integer", "wrong type");
    expect_error("heartbeatd = {\n  priority = 0;\n};\n",
                 "t.conf:2: 'priority' must be between 1 and 255",
                 "out of range");
    expect_error("global = { nofile = 10; };\n",
                 "t.conf:1: 'nofile' must be between 64 and 1048576",
                 "nofile out of range");
    expect_error("pools = { php = { balance = \"fastest\"; }; };\n",
                 "t.conf:1: 'balance' must be one of roundrobin, leastconn, "
                 "hash, random",
                 "bad enum");
    expect_error("global = { log_level = \"loud\"; };\n",
                 "t.conf:1: 'log_level' must be one of error, warn, notice, "
                 "info, debug",
                 "bad log_level");
    expect_error("global = { shutdown_timeout = \"5\"; };\n",
                 "t.conf:1: 'shutdown_timeout' must be a number of seconds",
                 "duration wrong type");
    expect_error(
        "pools = { php = { nodes = ( { name = \"a\";\n"
        "  address = \"127.0.0.1:99999\"; } ); }; };\n",
        "t.conf:2: 'address': bad address \"127.0.0.1:99999\": port "
        "99999 out of range",
        "bad address");
    expect_error(
        "pools = { php = { nodes = ( { name = \"a\";\n"
        "  address = \"unix:/x.sock\"; } ); }; };\n",
        "t.conf:2: 'address' must be host:port, not a unix socket",
        "node address must not be unix");
    expect_error(
        "pools = { php = { nodes = (\n"
        "  { name = \"a\"; address = \"127.0.0.1:1\"; },\n"
        "  { name = \"a\"; address = \"127.0.0.1:2\"; } ); }; };\n",
        "t.conf:3: duplicate node name 'a' in pool 'php' (first at "
        "line 2)",
        "duplicate node");
    expect_error(pools + "pools = { };\n", "t.conf:5: duplicate setting name",
                 "duplicate pools section");
    expect_error(pools +
                     "balancerd = { listen = \"*:1\";\n"
                     "  pool = \"phpx\"; };\n",
                 "t.conf:6: balancerd: pool 'phpx' is not defined",
                 "undefined pool reference");
    expect_error(pools +
                     "cached = { listen = \"*:1\"; origin = \"*:2\";\n"
                     "  shared_tier = \"mc\"; };\n",
                 "t.conf:6: cached: pool 'mc' is not defined",
                 "undefined shared_tier");
    expect_error(pools +
                     "balancerd = { listen = \"*:1\"; pool = \"php\";\n"
                     "  tcp = ( { listen = \"*:2\"; pool = \"db\"; } ); "
                     "};\n",
                 "t.conf:6: balancerd: pool 'db' is not defined",
                 "undefined tcp pool");
    expect_error(pools + "balancerd = {\n  listen = \"*:1\";\n};\n",
                 "t.conf:5: balancerd: 'pool' is required",
                 "missing balancerd.pool");
    expect_error(pools + "cached = {\n  origin = \"*:2\";\n};\n",
                 "t.conf:5: cached: at least one 'listen' address is required",
                 "cached needs listen");
    expect_error(
        "cached = { listen = \"*:1\"; origin = \"*:2\";\n"
        "  memory = \"12X\"; };\n",
        "t.conf:2: 'memory' must be a size: bytes, or a string such "
        "as \"64K\", \"512M\", \"2G\"",
        "bad size");
    expect_error(
        "cached = { listen = \"*:1\"; origin = \"*:2\";\n"
        "  memory = \"512K\"; };\n",
        "t.conf:2: 'memory' must be at least 1M", "memory too small");
    expect_error(
        "cached = { listen = \"*:1\"; origin = \"*:2\";\n"
        "  memory = \"16M\";\n  max_object = \"32M\"; };\n",
        "t.conf:3: 'max_object' (32M) must not exceed 'memory' (16M)",
        "max_object > memory");
    expect_error("heartbeatd = { interval = 1;\n  dead_time = 1.0; };\n",
                 "t.conf:2: 'dead_time' (1) must be longer than 'interval' (1)",
                 "dead_time <= interval");
    expect_error("heartbeatd = {\n  interval = 2; };\n",
                 "t.conf:1: heartbeatd: 'dead_time' (1) must be longer than "
                 "'interval' (2)",
                 "default dead_time <= interval points at the section");
    expect_error(pools +
                     "balancerd = { pool = \"php\"; listen = (\n"
                     "  { address = \"*:1\";\n"
                     "    tls = { certificate = \"c\"; key = \"k\"; }; } "
                     "); };\n",
                 "t.conf:7: 'tls' is not supported in balancerd (cached "
                 "terminates TLS)",
                 "tls in balancerd refused");
    expect_error(
        "cached = { origin = \"*:2\"; listen = (\n"
        "  { address = \"*:1\";\n    tls = { key = \"k\"; }; } ); };\n",
        "t.conf:3: cached.listen[0].tls: 'certificate' is required",
        "tls without certificate");
    expect_error(
        "heartbeatd = { notify = [ \"cached\",\n"
        "  \"heartbeatd\" ]; };\n",
        "t.conf:2: 'notify' entries must be one of cached, balancerd",
        "bad notify");
    expect_error("pools = { php = { check = {\n  rise = 101; }; }; };\n",
                 "t.conf:2: 'rise' must be between 1 and 100", "rise range");
    expect_error("pools = { php = { check = {\n  interval = 0.001; }; }; };\n",
                 "t.conf:2: 'interval' must be between 0.01 and 3600",
                 "check interval range");
    expect_error(
        "pools = { php = { check = {\n"
        "  expect_status = [ 200, 700 ]; }; }; };\n",
        "t.conf:2: 'expect_status' must be between 100 and 599",
        "expect_status range");
    expect_error("pools = { php = { check = {\n  type = \"ping\"; }; }; };\n",
                 "t.conf:2: 'type' must be one of http, tcp, memcached, "
                 "mysql, script",
                 "bad check type");
    expect_error("pools = { php = {\n  hash_on = \"header:\"; }; };\n",
                 "t.conf:2: 'hash_on' must be uri, source, header:NAME or "
                 "cookie:NAME",
                 "bad hash_on");
    expect_error("pools = { php = {\n  maxconn = 32; }; };\n",
                 "t.conf:1: pools.php: a pool needs at least one node in "
                 "'nodes'",
                 "pool without nodes");
    expect_error(
        "pools = { php = { nodes = ( {\n  weight = 1001;\n"
        "  name = \"a\"; address = \"127.0.0.1:1\"; } ); }; };\n",
        "t.conf:2: 'weight' must be between 0 and 1000", "weight range");
    expect_error(
        "pools = { php = { nodes = ( {\n"
        "  address = \"127.0.0.1:1\"; } ); }; };\n",
        "t.conf:1: pools.php.nodes[0]: 'name' is required",
        "node without name");
    expect_error("global = {\n  syslog_facility = \"local8\"; };\n",
                 "t.conf:2: 'syslog_facility' must be one of daemon, local0, "
                 "local1, local2, local3, local4, local5, local6, local7",
                 "bad syslog_facility");
    expect_error("global = 5;\n", "t.conf:1: 'global' must be a group { ... }",
                 "section of the wrong type");
    expect_error("balancerd = { workers = 0; };\n",
                 "t.conf:1: balancerd: at least one 'listen' address is "
                 "required",
                 "balancerd listen first");
    expect_error(pools +
                     "balancerd = { listen = \"*:1\"; pool = \"php\";\n"
                     "  workers = 65; };\n",
                 "t.conf:6: 'workers' must be between 1 and 64",
                 "balancerd workers range");
    expect_error(
        "cached = { listen = \"*:1\"; origin = \"*:2\"; limits = {\n"
        "  header_count = 7; }; };\n",
        "t.conf:2: 'header_count' must be between 8 and 10000",
        "header_count range");
    expect_error(
        "cached = { listen = \"*:1\"; origin = \"*:2\"; limits = {\n"
        "  request_line = 100; }; };\n",
        "t.conf:2: 'request_line' must be between 256 and 1M",
        "request_line range");
    expect_error(
        "cached = { listen = \"*:1\"; origin = \"*:2\";\n"
        "  purge_allow = [ \"10.0.0.0/33\" ]; };\n",
        "t.conf:2: 'purge_allow' entries must be IP addresses or "
        "networks such as \"192.0.2.0/24\"",
        "bad purge_allow");
    expect_error("global = {\n  run_dir = \"run\"; };\n",
                 "t.conf:2: 'run_dir' must be an absolute path",
                 "relative run_dir");
    expect_error(
        "heartbeatd = { node = \"lb1\"; listen = \"*:694\";\n"
        "  peers = ( { name = \"lb1\"; address = \"10.0.0.2:694\"; } "
        "); };\n",
        "t.conf:2: peer 'lb1' has this machine's 'node' name",
        "peer named like this node");
    expect_error(
        "heartbeatd = {\n  node = \"lb1\";\n"
        "  peers = ( { name = \"lb2\"; address = \"10.0.0.2:694\"; } "
        "); };\n",
        "t.conf:1: heartbeatd: 'listen' is required when 'peers' "
        "are given",
        "peers need listen");
    expect_error("global = { nofile = 1.5; };\n",
                 "t.conf:1: 'nofile' must be an integer", "float for integer");
    expect_error("pools = { php = { check = { tls = 1; }; }; };\n",
                 "t.conf:1: 'tls' must be true or false", "bool wrong type");
}

void
test_files()
{
    char tmpl[] = "/tmp/sj-config-test.XXXXXX";
    std::string dir = mkdtemp(tmpl);
    std::string main_conf = dir + "/main.conf";
    std::string inc_conf = dir + "/pools.conf";

    write_file(inc_conf,
               "php = {\n  nodes = ( { name = \"p1\";\n"
               "    address = \"127.0.0.1:8081\"; } ); };\n");
    write_file(main_conf,
               "pools = {\n@include \"pools.conf\"\n};\n"
               "balancerd = { listen = \"*:1\"; pool = \"php\"; "
               "};\n");
    // Relative to the including file's directory, not the cwd.
    char cwd_buf[4096];
    std::string cwd = getcwd(cwd_buf, sizeof cwd_buf) ? cwd_buf : "/";
    tap::ok(chdir("/") == 0, "chdir /");
    try {
        auto c = sj::load_config(main_conf);
        tap::is(c->file, main_conf, "load_config keeps the path");
        tap::ok(c->pools.count("php") == 1 &&
                    c->pools.at("php").nodes[0].name == "p1",
                "@include relative to the file's directory");
    } catch (const ConfigError& e) {
        tap::ok(false, std::string("load_config: ") + e.what());
        tap::ok(false, "@include");
    }

    write_file(inc_conf,
               "php = {\n  nodes = ( { name = \"p1\";\n"
               "    address = \"127.0.0.1:8081\"; port = 1; } ); "
               "};\n");
    std::string got;
    try {
        sj::load_config(main_conf);
    } catch (const ConfigError& e) {
        got = e.what();
    }
    tap::is(got, inc_conf + ":3: unknown setting 'port' in pools.php.nodes[0]",
            "schema error in an included file names that file");

    write_file(inc_conf, "php = {\n\n  nodes = ( ;\n");
    got.clear();
    try {
        sj::load_config(main_conf);
    } catch (const ConfigError& e) {
        got = e.what();
        tap::is(e.file(), inc_conf, "ConfigError::file()");
        tap::is(e.line(), 3, "ConfigError::line()");
        tap::is(e.message(), std::string("syntax error"),
                "ConfigError::message()");
    }
    tap::is(got, inc_conf + ":3: syntax error",
            "syntax error in an included file names that file");

    got.clear();
    try {
        sj::load_config(dir + "/missing.conf");
    } catch (const ConfigError& e) {
        got = e.what();
    }
    tap::is(got, dir + "/missing.conf: cannot read: No such file or directory",
            "missing file");
    tap::is(ConfigError("f", 0, "m").what(), std::string("f: m"),
            "no line, no number");
    tap::is(ConfigError("f", 7, "m").what(), std::string("f:7: m"),
            "file:line: message");

    tap::ok(chdir(cwd.c_str()) == 0, "chdir back");
    unlink(main_conf.c_str());
    unlink(inc_conf.c_str());
    rmdir(dir.c_str());
}

void
test_sample()
{
    const char* srcdir = std::getenv("SJ_SRCDIR");
    std::string path = std::string(srcdir ? srcdir : ".") +
                       "/etc/sunjammer.conf";
    try {
        auto c = sj::load_config(path);
        tap::ok(c->cached.present && c->balancerd.present &&
                    c->heartbeatd.present,
                "sample config: every daemon section");
        tap::is(c->pools.size(), size_t{3}, "sample config: three pools");
        tap::is(c->pools.at("php").nodes.size(), size_t{3},
                "sample config: three php nodes");
        tap::is(c->balancerd.tcp.size(), size_t{1},
                "sample config: mysql route");
        tap::is(c->cached.shared_tier, std::string("memcache"),
                "sample config: shared tier");
        tap::is(c->heartbeatd.node, std::string("lb1"), "sample config: node");
    } catch (const ConfigError& e) {
        tap::ok(false, std::string("sample config loads: ") + e.what());
    }
}

void
test_dump()
{
    auto c = sj::parse_config_text(kFull, "full.conf");
    std::string d1 = sj::dump_config(*c);
    std::shared_ptr<const Config> c2;
    try {
        c2 = sj::parse_config_text(d1, "dump.conf");
    } catch (const ConfigError& e) {
        tap::ok(false, std::string("dump reads back: ") + e.what());
        tap::diag(d1);
        return;
    }
    tap::ok(true, "dump reads back");
    std::string d2 = sj::dump_config(*c2);
    // The header comment names the file; the rest must be identical.
    tap::is(d2.substr(d2.find('\n')), d1.substr(d1.find('\n')),
            "dump of the dump is the same");
    tap::is(c2->cached.memory, c->cached.memory, "memory survives");
    tap::ok(c2->cached.listen[1].tls &&
                c2->cached.listen[1].tls_config.key == "/k.pem",
            "tls listener survives");
    tap::is(c2->heartbeatd.interval, 0.25, "interval survives");
    tap::is(c2->pools.at("php").check.timeout, 2.0, "check timeout survives");
    tap::ok(c2->pools.at("php").nodes[1].backup, "backup survives");
    tap::ok(c2->global.log_level == sj::LogLevel::kDebug, "log_level survives");
    tap::ok(d1.find("memory = \"64M\";") != std::string::npos,
            "sizes are dumped readably");

    // Defaults are written out, and odd values survive too.
    Config odd;
    odd.file = "odd";
    odd.global.log_file = "/tmp/a \"quoted\"\\ name\n";
    odd.global.shutdown_timeout = 0.1 + 0.2;
    odd.cached.present = true;
    sj::ListenConfig l;
    l.address_text = "127.0.0.1:80";
    odd.cached.listen.push_back(l);
    odd.cached.origin_text = "127.0.0.1:81";
    odd.cached.memory = (size_t{5} << 30) + 1;
    odd.cached.max_object = 12345;
    std::string d3 = sj::dump_config(odd);
    tap::ok(d3.find("nofile = 65536;") != std::string::npos,
            "defaults are dumped");
    try {
        auto c3 = sj::parse_config_text(d3, "odd.conf");
        tap::is(c3->global.log_file, odd.global.log_file,
                "string escapes survive");
        tap::is(c3->global.shutdown_timeout, odd.global.shutdown_timeout,
                "doubles survive exactly");
        tap::is(c3->cached.memory, odd.cached.memory, "int64 size survives");
        tap::is(c3->cached.max_object, size_t{12345}, "odd size survives");
        tap::ok(!c3->balancerd.present && !c3->heartbeatd.present,
                "absent sections stay absent");
    } catch (const ConfigError& e) {
        tap::ok(false, std::string("odd dump reads back: ") + e.what());
        tap::diag(d3);
    }
}

void
test_parse_size()
{
    size_t v = 0;
    tap::ok(sj::parse_size("0", &v) && v == 0, "size 0");
    tap::ok(sj::parse_size("4096", &v) && v == 4096, "size bytes");
    tap::ok(sj::parse_size("64K", &v) && v == 65536, "size K");
    tap::ok(sj::parse_size("512M", &v) && v == (size_t{512} << 20), "size M");
    tap::ok(sj::parse_size("2G", &v) && v == (size_t{2} << 30), "size G");
    tap::ok(sj::parse_size("8k", &v) && v == 8192, "size lowercase k");
    tap::ok(!sj::parse_size("", &v), "empty size");
    tap::ok(!sj::parse_size("K", &v), "unit only");
    tap::ok(!sj::parse_size("1.5M", &v), "fraction");
    tap::ok(!sj::parse_size("-1", &v), "negative");
    tap::ok(!sj::parse_size("10KB", &v), "trailing junk");
    tap::ok(!sj::parse_size(" 10", &v), "leading space");
    tap::ok(!sj::parse_size("99999999999999999999", &v), "overflow");
    tap::ok(!sj::parse_size("17179869184G", &v), "overflow by unit");
}

// heartbeatd's check and notify settings (issue 5).
void
test_heartbeatd_checks()
{
    auto c = sj::parse_config_text(
        "pools = { mc = { check = { type = \"memcached\"; key = \"sj:k\";\n"
        "  notify_script = \"/bin/true\"; };\n"
        "  nodes = ( { name = \"m1\"; address = \"127.0.0.1:11211\"; } ); };\n"
        "};\n"
        "heartbeatd = { notify_script = \"/bin/n\"; notify_timeout = 2.5; };\n",
        "h.conf");
    const sj::CheckConfig& k = c->pools.at("mc").check;
    tap::is(k.key, std::string("sj:k"), "check key");
    tap::is(k.notify_script, std::string("/bin/true"), "check notify_script");
    tap::is(c->heartbeatd.notify_script, std::string("/bin/n"),
            "heartbeatd notify_script");
    tap::is(c->heartbeatd.notify_timeout, 2.5, "notify_timeout");
    auto d = sj::parse_config_text(sj::dump_config(*c), "dump.conf");
    tap::is(d->pools.at("mc").check.key, std::string("sj:k"),
            "key survives dump");
    tap::is(d->heartbeatd.notify_timeout, 2.5, "notify_timeout survives dump");
    auto e = sj::parse_config_text("heartbeatd = { };\n", "e.conf");
    tap::is(e->heartbeatd.notify_timeout, 10.0, "default notify_timeout");
    tap::is(sj::CheckConfig().key, std::string("sunjammer:heartbeatd"),
            "default key");
    expect_error("heartbeatd = {\n  notify_timeout = 0.01;\n};\n",
                 "t.conf:2: 'notify_timeout' must be between 0.1 and 3600",
                 "notify_timeout range");
    expect_error(
        "pools = { p = { check = {\n  key = \"a b\"; };\n"
        "  nodes = ( { name = \"n\"; address = \"127.0.0.1:1\"; } ); }; };\n",
        "t.conf:2: 'key' must be 1 to 250 characters without blanks",
        "key with a blank");
}

// cached's caching settings: values, defaults, errors, SNI certificates,
// and the dump round trip.
void
test_cached_settings()
{
    const std::string head = std::string(kPools) + "};\n";
    auto c = sj::parse_config_text(
        head +
            "cached = { origin = \"127.0.0.1:81\";\n"
            "  listen = ( { address = \"127.0.0.1:443\";\n"
            "    tls = { certificate = \"/a.pem\"; key = \"/a.key\";\n"
            "            sni = ( { certificate = \"/b.pem\"; key = \"/b.key\"; "
            "} ); }; } );\n"
            "  stale_grace = 30; pass_ttl = 2.5; collapse_wait = 1;\n"
            "  header_timeout = 5; idle_timeout = 20; connect_timeout = 1;\n"
            "  origin_timeout = 9; origin_idle_timeout = 4; max_body = "
            "\"1M\";\n"
            "  sort_query = true; ignore_params = [ \"utm_source\" ];\n"
            "  accept_policy = \"kernel\";\n"
            "  cookie_paths = [ \"/static/\" ]; via = \"edge1\";\n"
            "  tier_timeout = 0.1; tier_max_object = \"512K\";\n"
            "  metrics_listen = \"127.0.0.1:9101\";\n"
            "};\n",
        "t.conf");
    const sj::CachedConfig& ca = c->cached;
    tap::is(ca.listen[0].tls_config.sni.size(), size_t{1}, "one SNI cert");
    tap::is(ca.listen[0].tls_config.sni[0].first, std::string("/b.pem"),
            "SNI certificate");
    tap::is(ca.listen[0].tls_config.sni[0].second, std::string("/b.key"),
            "SNI key");
    tap::ok(ca.stale_grace == 30 && ca.pass_ttl == 2.5 && ca.collapse_wait == 1,
            "stale_grace, pass_ttl, collapse_wait");
    tap::ok(ca.header_timeout == 5 && ca.idle_timeout == 20 &&
                ca.connect_timeout == 1 && ca.origin_timeout == 9 &&
                ca.origin_idle_timeout == 4,
            "cached timeouts");
    tap::is(ca.max_body, size_t{1} << 20, "max_body");
    tap::ok(ca.sort_query, "sort_query");
    tap::is(ca.accept_policy, std::string("kernel"), "accept_policy");
    tap::ok(ca.ignore_params == std::vector<std::string>({"utm_source"}),
            "ignore_params");
    tap::ok(ca.cookie_paths == std::vector<std::string>({"/static/"}),
            "cookie_paths");
    tap::is(ca.via, std::string("edge1"), "via");
    tap::ok(ca.tier_timeout == 0.1 && ca.tier_max_object == 512u << 10,
            "tier settings");
    tap::is(ca.metrics_listen.port, 9101, "cached metrics_listen");
    auto again = sj::parse_config_text(sj::dump_config(*c), "t.conf");
    tap::is(sj::dump_config(*again), sj::dump_config(*c),
            "cached settings survive the dump");
    tap::is(again->cached.listen[0].tls_config.sni.size(), size_t{1},
            "SNI certificates survive the dump");

    auto d = sj::parse_config_text(
        head + "cached = { origin = \"*:2\"; listen = \"*:1\"; };\n", "t.conf");
    tap::ok(d->cached.stale_grace == 60 && d->cached.pass_ttl == 30 &&
                d->cached.collapse_wait == 5 && !d->cached.sort_query &&
                d->cached.cookie_paths.empty() &&
                d->cached.via == "sunjammer" &&
                d->cached.max_body == size_t{8} << 20,
            "cached caching defaults");

    tap::is(d->cached.max_connections, 10000, "cached max_connections default");
    tap::is(d->cached.accept_policy, std::string("pack"),
            "cached accept_policy default");
    expect_error(head +
                     "cached = { origin = \"*:2\"; listen = \"*:1\";\n"
                     "  accept_policy = \"random\"; };\n",
                 "t.conf:6: 'accept_policy' must be one of pack, kernel",
                 "cached accept_policy values");
    expect_error(head +
                     "cached = { origin = \"*:2\"; listen = \"*:1\";\n"
                     "  max_connections = 0; };\n",
                 "t.conf:6: 'max_connections' must be between 1 and 1000000",
                 "cached max_connections range");
    expect_error(head +
                     "cached = { origin = \"*:2\"; listen = \"*:1\";\n"
                     "  cookie_paths = [ \"static\" ]; };\n",
                 "t.conf:6: 'cookie_paths' entries must be path prefixes "
                 "starting with '/'",
                 "cookie_paths must be paths");
    expect_error(head +
                     "cached = { origin = \"*:2\"; listen = \"*:1\";\n"
                     "  via = \"a b\"; };\n",
                 "t.conf:6: 'via' must be a token such as \"cache1\"",
                 "via must be a token");
    tap::ok(!error_of(head + "cached = { origin = \"*:2\"; listen = \"*:1\";\n"
                             "  stale_grace = -1; };\n")
                 .empty(),
            "negative stale_grace is an error");
    expect_error(head +
                     "cached = { origin = \"*:2\"; listen = ( {\n"
                     "  address = \"*:1\"; tls = { certificate = \"/a\";\n"
                     "  key = \"/b\"; sni = ( { certificate = \"/c\"; } ); "
                     "}; } ); };\n",
                 "t.conf:7: cached.listen[0].tls.sni[0]: 'key' is required",
                 "SNI entry needs a key");
}

}  // namespace

int
main()
{
    test_heartbeatd_checks();
    test_full();
    test_defaults();
    test_errors();
    test_balancerd_settings();
    test_cached_settings();
    test_files();
    test_sample();
    test_dump();
    test_parse_size();
    return tap::done_testing();
}
