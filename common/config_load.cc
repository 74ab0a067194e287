// Reading sunjammer.conf(5): libconfig parses the syntax, then a walk over
// the tree checks every setting's name, type and range against the schema
// that config.h's structs describe. Each section has a small read_*()
// function built on Group, which does the type and range checks once, and
// remembers which names it was asked for so that whatever is left over is
// reported as an unknown setting (a typo must not be silently ignored).

#include <arpa/inet.h>
#include <sys/stat.h>

#include <cctype>
#include <cerrno>
#include <cinttypes>
#include <climits>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <functional>
#include <initializer_list>
#include <set>

#include <libconfig.h++>

#include "common/config.h"

namespace sj {

std::string config_format_size(size_t bytes);  // config.cc

namespace {

using libconfig::Setting;
using PoolMap = std::map<std::string, PoolConfig>;

// Names errors by the file a setting came from. libconfig reports an
// included file by the name written after @include, which it resolved
// against the include directory, so that directory is put back in front.
class Source {
public:
    Source(std::string top, std::string include_dir)
        : top_(std::move(top)), include_dir_(std::move(include_dir))
    {}

    std::string file_of(const char* file) const
    {
        if (file == nullptr || top_ == file)
            return top_;
        if (file[0] == '/' || include_dir_.empty())
            return file;
        return include_dir_ + "/" + file;
    }

    [[noreturn]] void fail(const Setting& s, const std::string& msg) const
    {
        throw ConfigError(file_of(s.getSourceFile()),
                          static_cast<int>(s.getSourceLine()), msg);
    }

private:
    std::string top_;
    std::string include_dir_;
};

std::string
quoted(const std::string& s)
{
    return "'" + s + "'";
}

std::string
join(std::initializer_list<const char*> words)
{
    std::string out;
    for (const char* w : words) {
        if (*w == '\0')
            continue;
        if (!out.empty())
            out += ", ";
        out += w;
    }
    return out;
}

std::string
format_double(double v)
{
    char buf[64];
    std::snprintf(buf, sizeof buf, "%g", v);
    return buf;
}

bool
is_integer(const Setting& s)
{
    return s.getType() == Setting::TypeInt || s.getType() == Setting::TypeInt64;
}

long long
integer_of(const Setting& s)
{
    if (s.getType() == Setting::TypeInt64)
        return static_cast<long long>(s);
    return static_cast<int>(s);
}

// "192.0.2.7", "192.0.2.0/24", "2001:db8::/32".
bool
is_ip_or_network(const std::string& text)
{
    std::string ip = text;
    long prefix = -1;
    size_t slash = text.find('/');
    if (slash != std::string::npos) {
        ip = text.substr(0, slash);
        std::string bits = text.substr(slash + 1);
        if (bits.empty() || bits.size() > 3 ||
            bits.find_first_not_of("0123456789") != std::string::npos)
            return false;
        prefix = std::stol(bits);
    }
    unsigned char buf[16];
    if (inet_pton(AF_INET, ip.c_str(), buf) == 1)
        return prefix <= 32;
    if (inet_pton(AF_INET6, ip.c_str(), buf) == 1)
        return prefix <= 128;
    return false;
}

// An HTTP token (RFC 9110 §5.6.2), for header and cookie names.
bool
is_token(const std::string& s)
{
    if (s.empty())
        return false;
    for (unsigned char c : s) {
        if (c <= 0x20 || c >= 0x7f || std::strchr("\"(),/:;<=>?@[\\]{}", c))
            return false;
    }
    return true;
}

// Node and peer names appear in control commands and log lines.
bool
is_simple_name(const std::string& s)
{
    if (s.empty() || s.size() > 64)
        return false;
    for (unsigned char c : s) {
        if (!std::isalnum(c) && c != '-' && c != '_' && c != '.')
            return false;
    }
    return true;
}

// One group of the tree being read: typed accessors for optional settings
// that leave the default in place when the setting is absent, and finish()
// to complain about any setting nobody asked for.
class Group {
public:
    Group(const Source& src, const Setting& s, std::string path)
        : src_(src), s_(s), path_(std::move(path))
    {}

    const std::string& path() const { return path_; }
    int line() const { return static_cast<int>(s_.getSourceLine()); }

    [[noreturn]] void fail(const std::string& msg) const
    {
        src_.fail(s_, path_ + ": " + msg);
    }

    [[noreturn]] void fail_at(const Setting& s, const std::string& msg) const
    {
        src_.fail(s, msg);
    }

    [[noreturn]] void require(const char* name) const
    {
        fail(quoted(name) + " is required");
    }

    // The setting `name`, or null; marks the name as known.
    const Setting* find(const char* name)
    {
        known_.insert(name);
        return s_.exists(name) ? &s_[name] : nullptr;
    }

    const Setting* find_group(const char* name)
    {
        const Setting* s = find(name);
        if (s != nullptr && !s->isGroup())
            fail_at(*s, quoted(name) + " must be a group { ... }");
        return s;
    }

    bool get_string(const char* name, std::string* out)
    {
        const Setting* s = find(name);
        if (s == nullptr)
            return false;
        *out = string_of(*s, name);
        return true;
    }

    bool get_bool(const char* name, bool* out)
    {
        const Setting* s = find(name);
        if (s == nullptr)
            return false;
        if (s->getType() != Setting::TypeBoolean)
            fail_at(*s, quoted(name) + " must be true or false");
        *out = static_cast<bool>(*s);
        return true;
    }

    template <typename T>
    bool get_int(const char* name, T* out, long long lo, long long hi)
    {
        const Setting* s = find(name);
        if (s == nullptr)
            return false;
        *out = static_cast<T>(int_in_range(*s, name, lo, hi));
        return true;
    }

    // Seconds, written as an integer or a float.
    bool get_seconds(const char* name, double* out, double lo, double hi)
    {
        const Setting* s = find(name);
        if (s == nullptr)
            return false;
        double v = 0;
        if (is_integer(*s))
            v = static_cast<double>(integer_of(*s));
        else if (s->getType() == Setting::TypeFloat)
            v = static_cast<double>(*s);
        else
            fail_at(*s, quoted(name) + " must be a number of seconds");
        if (!(v >= lo && v <= hi))
            fail_at(*s, quoted(name) + " must be between " + format_double(lo) +
                            " and " + format_double(hi));
        *out = v;
        return true;
    }

    // Bytes, as an integer or a string such as "512M" (parse_size).
    bool get_size(const char* name, size_t* out, size_t lo, size_t hi)
    {
        const Setting* s = find(name);
        if (s == nullptr)
            return false;
        size_t v = 0;
        bool good;
        if (is_integer(*s)) {
            long long n = integer_of(*s);
            good = n >= 0;
            v = static_cast<size_t>(n);
        } else {
            good = s->getType() == Setting::TypeString &&
                   parse_size(s->c_str(), &v);
        }
        if (!good)
            fail_at(*s, quoted(name) +
                            " must be a size: bytes, or a string such as "
                            "\"64K\", \"512M\", \"2G\"");
        if (v < lo || v > hi) {
            std::string range = hi == SIZE_MAX
                                    ? "at least " + config_format_size(lo)
                                    : "between " + config_format_size(lo) +
                                          " and " + config_format_size(hi);
            fail_at(*s, quoted(name) + " must be " + range);
        }
        *out = v;
        return true;
    }

    bool get_enum(const char* name, std::string* out,
                  std::initializer_list<const char*> allowed)
    {
        const Setting* s = find(name);
        if (s == nullptr)
            return false;
        std::string v = string_of(*s, name);
        for (const char* a : allowed) {
            if (v == a) {
                *out = v;
                return true;
            }
        }
        fail_at(*s, quoted(name) + " must be one of " + join(allowed));
    }

    bool get_address(const char* name, Address* addr, std::string* text,
                     bool allow_unix)
    {
        const Setting* s = find(name);
        if (s == nullptr)
            return false;
        *text = string_of(*s, name);
        *addr = address_of(*s, name, *text, allow_unix);
        return true;
    }

    // A list (or array) of values, each passed to `fn` with its index; a
    // lone value stands for a list of one.
    bool get_list(const char* name,
                  const std::function<void(const Setting&, int)>& fn)
    {
        const Setting* s = find(name);
        if (s == nullptr)
            return false;
        if (s->isList() || s->isArray()) {
            for (int i = 0; i < s->getLength(); ++i)
                fn((*s)[i], i);
        } else {
            fn(*s, 0);
        }
        return true;
    }

    bool get_strings(const char* name, std::vector<std::string>* out,
                     const std::function<bool(const std::string&)>& valid,
                     const char* what)
    {
        std::vector<std::string> v;
        bool got = get_list(name, [&](const Setting& e, int) {
            if (e.getType() != Setting::TypeString)
                fail_at(e, quoted(name) + " must be a list of strings");
            v.emplace_back(e.c_str());
            if (valid && !valid(v.back()))
                fail_at(e, quoted(name) + " entries must be " + what);
        });
        if (got)
            *out = std::move(v);
        return got;
    }

    // Each element of the list `name` must be a group; `fn` reads it.
    bool get_groups(const char* name, const std::function<void(Group&)>& fn)
    {
        return get_list(name, [&](const Setting& e, int i) {
            if (!e.isGroup())
                fail_at(e, quoted(name) + " entries must be groups { ... }");
            Group g(src_, e, element_path(name, i));
            fn(g);
            g.finish();
        });
    }

    std::string string_of(const Setting& s, const char* name) const
    {
        if (s.getType() != Setting::TypeString)
            fail_at(s, quoted(name) + " must be a string");
        return s.c_str();
    }

    Address address_of(const Setting& s, const char* name,
                       const std::string& text, bool allow_unix) const
    {
        Address a;
        std::string err;
        if (!parse_address(text, &a, &err))
            fail_at(s, quoted(name) + ": bad address \"" + text + "\": " + err);
        if (a.is_unix() && !allow_unix)
            fail_at(s, quoted(name) + " must be host:port, not a unix socket");
        return a;
    }

    long long int_in_range(const Setting& s, const char* name, long long lo,
                           long long hi) const
    {
        if (!is_integer(s))
            fail_at(s, quoted(name) + " must be an integer");
        long long v = integer_of(s);
        if (v < lo || v > hi)
            fail_at(s, quoted(name) + " must be between " + std::to_string(lo) +
                           " and " + std::to_string(hi));
        return v;
    }

    std::string element_path(const char* name, int i) const
    {
        std::string p = path_.empty() ? name : path_ + "." + name;
        return p + "[" + std::to_string(i) + "]";
    }

    std::string child_path(const char* name) const
    {
        return path_.empty() ? name : path_ + "." + name;
    }

    const Source& source() const { return src_; }

    // Reports the first setting that no accessor asked for.
    void finish() const
    {
        for (int i = 0; i < s_.getLength(); ++i) {
            const Setting& c = s_[i];
            if (known_.count(c.getName()) != 0)
                continue;
            fail_at(c, "unknown setting " + quoted(c.getName()) +
                           (path_.empty() ? " at top level" : " in " + path_));
        }
    }

private:
    const Source& src_;
    const Setting& s_;
    std::string path_;
    std::set<std::string> known_;
};

// Runs `fn` on the subgroup `name` of `parent` if it exists, then checks
// it for unknown settings. Returns whether it existed.
bool
with_group(Group& parent, const char* name,
           const std::function<void(Group&)>& fn)
{
    const Setting* s = parent.find_group(name);
    if (s == nullptr)
        return false;
    Group g(parent.source(), *s, parent.child_path(name));
    fn(g);
    g.finish();
    return true;
}

void
read_global(Group& g, GlobalConfig* c)
{
    g.get_string("user", &c->user);
    g.get_string("group", &c->group);
    g.get_string("admin_group", &c->admin_group);
    if (g.get_string("run_dir", &c->run_dir) && c->run_dir[0] != '/')
        g.fail_at(*g.find("run_dir"), "'run_dir' must be an absolute path");
    std::string level;
    if (g.get_string("log_level", &level) &&
        !parse_log_level(level, &c->log_level))
        g.fail_at(*g.find("log_level"),
                  "'log_level' must be one of error, warn, notice, info, "
                  "debug");
    g.get_string("log_file", &c->log_file);
    g.get_enum("syslog_facility", &c->syslog_facility,
               {"daemon", "local0", "local1", "local2", "local3", "local4",
                "local5", "local6", "local7"});
    g.get_seconds("shutdown_timeout", &c->shutdown_timeout, 0, 3600);
    g.get_int("nofile", &c->nofile, 64, 1048576);
}

void
read_check(Group& g, CheckConfig* c)
{
    c->line = g.line();
    g.get_enum("type", &c->type,
               {"", "http", "tcp", "memcached", "mysql", "script"});
    g.get_enum("method", &c->method, {"GET", "HEAD", "OPTIONS"});
    if (g.get_string("path", &c->path) && c->path[0] != '/')
        g.fail_at(*g.find("path"), "'path' must start with /");
    g.get_string("host", &c->host);
    std::vector<int> status;
    if (g.get_list("expect_status", [&](const Setting& e, int) {
            status.push_back(
                static_cast<int>(g.int_in_range(e, "expect_status", 100, 599)));
        })) {
        if (status.empty())
            g.fail_at(*g.find("expect_status"),
                      "'expect_status' needs at least one status");
        c->expect_status = std::move(status);
    }
    g.get_string("expect_body", &c->expect_body);
    g.get_bool("tls", &c->tls);
    g.get_string("user", &c->user);
    g.get_string("password", &c->password);
    g.get_string("script", &c->script);
    if (g.get_string("key", &c->key) &&
        (c->key.empty() || c->key.size() > 250 ||
         c->key.find_first_of(" \t\r\n") != std::string::npos))
        g.fail_at(*g.find("key"),
                  "'key' must be 1 to 250 characters without blanks");
    g.get_string("notify_script", &c->notify_script);
    g.get_seconds("interval", &c->interval, 0.01, 3600);
    g.get_seconds("timeout", &c->timeout, 0.01, 3600);
    g.get_int("rise", &c->rise, 1, 100);
    g.get_int("fall", &c->fall, 1, 100);
    g.get_int("max_lag", &c->max_lag, 0, 86400);
    if (c->type == "script" && c->script.empty())
        g.fail("a script check needs 'script'");
}

void
read_node(Group& g, NodeConfig* n)
{
    n->line = g.line();
    if (!g.get_string("name", &n->name))
        g.require("name");
    if (!is_simple_name(n->name))
        g.fail_at(*g.find("name"),
                  "'name' must be 1 to 64 letters, digits, '-', '_' or '.'");
    if (!g.get_address("address", &n->address, &n->address_text, false))
        g.require("address");
    g.get_int("weight", &n->weight, 0, 1000);
    g.get_int("maxconn", &n->maxconn, 0, 100000);
    g.get_bool("backup", &n->backup);
}

void
read_pool(Group& g, PoolConfig* p)
{
    p->line = g.line();
    g.get_enum("balance", &p->balance,
               {"roundrobin", "leastconn", "hash", "random"});
    if (g.get_string("hash_on", &p->hash_on)) {
        const std::string& h = p->hash_on;
        bool good = h == "uri" || h == "source" ||
                    (h.rfind("header:", 0) == 0 && is_token(h.substr(7))) ||
                    (h.rfind("cookie:", 0) == 0 && is_token(h.substr(7)));
        if (!good)
            g.fail_at(*g.find("hash_on"),
                      "'hash_on' must be uri, source, header:NAME or "
                      "cookie:NAME");
    }
    g.get_enum("mode", &p->mode, {"", "master-master"});
    g.get_int("maxconn", &p->maxconn, 0, 100000);
    g.get_int("maxqueue", &p->maxqueue, 0, 1000000);
    g.get_seconds("queue_timeout", &p->queue_timeout, 0, 3600);
    g.get_int("retries", &p->retries, 0, 10);
    g.get_seconds("slowstart", &p->slowstart, 0, 3600);
    if (g.get_string("sticky_cookie", &p->sticky_cookie) &&
        !p->sticky_cookie.empty() && !is_token(p->sticky_cookie))
        g.fail_at(*g.find("sticky_cookie"),
                  "'sticky_cookie' must be a cookie name (a token)");
    with_group(g, "check", [&](Group& c) { read_check(c, &p->check); });
    g.get_groups("nodes", [&](Group& n) {
        NodeConfig node;
        read_node(n, &node);
        for (const NodeConfig& other : p->nodes) {
            if (other.name == node.name)
                n.fail_at(*n.find("name"),
                          "duplicate node name " + quoted(node.name) +
                              " in pool " + quoted(p->name) +
                              " (first at line " + std::to_string(other.line) +
                              ")");
        }
        p->nodes.push_back(std::move(node));
    });
    if (p->nodes.empty())
        g.fail("a pool needs at least one node in 'nodes'");
}

void
read_pools(Group& g, PoolMap* pools, const Setting& s)
{
    // Pools are named by their setting names, which libconfig already
    // keeps unique within a group ("duplicate setting name").
    for (int i = 0; i < s.getLength(); ++i) {
        const char* name = s[i].getName();
        with_group(g, name, [&](Group& p) {
            PoolConfig pool;
            pool.name = name;
            read_pool(p, &pool);
            (*pools)[name] = std::move(pool);
        });
    }
}

void
read_limits(Group& g, HttpLimits* l)
{
    g.get_size("request_line", &l->request_line, 256, 1048576);
    g.get_size("header_line", &l->header_line, 256, 1048576);
    g.get_size("header_total", &l->header_total, 1024, 16777216);
    g.get_int("header_count", &l->header_count, 8, 10000);
}

// listen = ( "addr", { address = "addr"; tls = { ... }; } ); tls only
// where the daemon terminates TLS.
void
read_listen(Group& g, std::vector<ListenConfig>* out, bool allow_tls)
{
    g.get_list("listen", [&](const Setting& e, int i) {
        ListenConfig l;
        l.line = static_cast<int>(e.getSourceLine());
        if (e.getType() == Setting::TypeString) {
            l.address_text = e.c_str();
            l.address = g.address_of(e, "listen", l.address_text, true);
        } else if (e.isGroup()) {
            Group lg(g.source(), e, g.element_path("listen", i));
            if (!lg.get_address("address", &l.address, &l.address_text, true))
                lg.require("address");
            const Setting* tls = lg.find_group("tls");
            if (tls != nullptr && !allow_tls)
                lg.fail_at(*tls, "'tls' is not supported in " + g.path() +
                                     " (cached terminates TLS)");
            l.tls = with_group(lg, "tls", [&](Group& t) {
                if (!t.get_string("certificate", &l.tls_config.certificate))
                    t.require("certificate");
                if (!t.get_string("key", &l.tls_config.key))
                    t.require("key");
                t.get_groups("sni", [&](Group& sg) {
                    std::string cert, key;
                    if (!sg.get_string("certificate", &cert))
                        sg.require("certificate");
                    if (!sg.get_string("key", &key))
                        sg.require("key");
                    l.tls_config.sni.emplace_back(cert, key);
                });
            });
            lg.finish();
        } else {
            g.fail_at(e,
                      "'listen' entries must be addresses or groups "
                      "{ address = ...; }");
        }
        out->push_back(std::move(l));
    });
    if (out->empty())
        g.fail("at least one 'listen' address is required");
}

// Reads the pool name `name` (required or not) and checks that it exists;
// pools are read before the sections that name them.
bool
get_pool_ref(Group& g, const char* name, std::string* out, const PoolMap& pools,
             const char* section, bool required)
{
    if (!g.get_string(name, out)) {
        if (required)
            g.require(name);
        return false;
    }
    if (!(out->empty() && !required) && pools.count(*out) == 0)
        g.fail_at(*g.find(name), std::string(section) + ": pool " +
                                     quoted(*out) + " is not defined");
    return true;
}

bool
is_any_string(const std::string&)
{
    return true;
}

void
read_cached(Group& g, CachedConfig* c, const PoolMap& pools)
{
    c->present = true;
    read_listen(g, &c->listen, true);
    if (!g.get_address("origin", &c->origin, &c->origin_text, true))
        g.require("origin");
    g.get_size("memory", &c->memory, 1u << 20, SIZE_MAX);
    g.get_size("max_object", &c->max_object, 1, SIZE_MAX);
    if (c->max_object > c->memory) {
        const Setting* s = g.find("max_object");
        std::string msg = "'max_object' (" + config_format_size(c->max_object) +
                          ") must not exceed 'memory' (" +
                          config_format_size(c->memory) + ")";
        if (s != nullptr)
            g.fail_at(*s, msg);
        g.fail(msg);
    }
    g.get_int("workers", &c->workers, 0, 256);
    get_pool_ref(g, "shared_tier", &c->shared_tier, pools, "cached", false);
    g.get_strings("purge_allow", &c->purge_allow, is_ip_or_network,
                  "IP addresses or networks such as \"192.0.2.0/24\"");
    with_group(g, "limits", [&](Group& l) { read_limits(l, &c->limits); });
    g.get_string("access_log", &c->access_log);
    g.get_address("metrics_listen", &c->metrics_listen, &c->metrics_listen_text,
                  true);
    g.get_seconds("stale_grace", &c->stale_grace, 0, 365 * 86400.0);
    g.get_seconds("pass_ttl", &c->pass_ttl, 0, 86400);
    g.get_seconds("collapse_wait", &c->collapse_wait, 0, 300);
    g.get_seconds("header_timeout", &c->header_timeout, 0.01, 3600);
    g.get_seconds("idle_timeout", &c->idle_timeout, 0.01, 86400);
    g.get_seconds("connect_timeout", &c->connect_timeout, 0.01, 3600);
    g.get_seconds("origin_timeout", &c->origin_timeout, 0.01, 86400);
    g.get_seconds("origin_idle_timeout", &c->origin_idle_timeout, 0, 3600);
    g.get_size("max_body", &c->max_body, 0, SIZE_MAX);
    g.get_int("max_connections", &c->max_connections, 1, 1000000);
    g.get_enum("accept_policy", &c->accept_policy, {"pack", "kernel"});
    g.get_bool("sort_query", &c->sort_query);
    g.get_strings("ignore_params", &c->ignore_params, is_any_string,
                  "query parameter names");
    g.get_strings(
        "cookie_paths", &c->cookie_paths,
        [](const std::string& s) { return !s.empty() && s[0] == '/'; },
        "path prefixes starting with '/'");
    g.get_string("via", &c->via);
    if (c->via.empty() ||
        c->via.find_first_of(" \t\r\n,;\"") != std::string::npos)
        g.fail_at(*g.find("via"), "'via' must be a token such as \"cache1\"");
    g.get_seconds("tier_timeout", &c->tier_timeout, 0.001, 10);
    g.get_size("tier_max_object", &c->tier_max_object, 1, 1u << 30);
}

void
read_tcp(Group& g, TcpListenConfig* t, const PoolMap& pools)
{
    t->line = g.line();
    if (!g.get_address("listen", &t->listen, &t->listen_text, true))
        g.require("listen");
    get_pool_ref(g, "pool", &t->pool, pools, "balancerd", true);
    g.get_enum("route", &t->route, {"", "writer"});
    g.get_seconds("connect_timeout", &t->connect_timeout, 0.01, 3600);
    g.get_seconds("idle_timeout", &t->idle_timeout, 0.01, 86400 * 7);
}

void
read_balancerd(Group& g, BalancerdConfig* b, const PoolMap& pools)
{
    b->present = true;
    read_listen(g, &b->listen, false);
    get_pool_ref(g, "pool", &b->pool, pools, "balancerd", true);
    b->pool_line = static_cast<int>(g.find("pool")->getSourceLine());
    g.get_int("workers", &b->workers, 1, 64);
    g.get_groups("tcp", [&](Group& t) {
        TcpListenConfig tcp;
        read_tcp(t, &tcp, pools);
        b->tcp.push_back(std::move(tcp));
    });
    g.get_strings(
        "trusted", &b->trusted,
        [](const std::string& s) { return s == "unix" || is_ip_or_network(s); },
        "\"unix\", IP addresses or networks such as \"192.0.2.0/24\"");
    with_group(g, "limits", [&](Group& l) { read_limits(l, &b->limits); });
    g.get_string("access_log", &b->access_log);
    g.get_seconds("header_timeout", &b->header_timeout, 0.01, 3600);
    g.get_seconds("idle_timeout", &b->idle_timeout, 0.01, 86400);
    g.get_seconds("body_timeout", &b->body_timeout, 0.01, 86400);
    g.get_seconds("connect_timeout", &b->connect_timeout, 0.01, 3600);
    g.get_seconds("server_timeout", &b->server_timeout, 0.01, 86400);
    g.get_seconds("server_idle_timeout", &b->server_idle_timeout, 0, 3600);
    g.get_seconds("send_timeout", &b->send_timeout, 0.01, 86400);
    for (TcpListenConfig& t : b->tcp)
        if (t.connect_timeout < 0)
            t.connect_timeout = b->connect_timeout;
    g.get_int("passive_fall", &b->passive_fall, 0, 1000);
    g.get_seconds("passive_hold", &b->passive_hold, 0, 86400);
    g.get_bool("forwarded", &b->forwarded);
    g.get_size("max_body", &b->max_body, 0, SIZE_MAX);
    g.get_int("max_connections", &b->max_connections, 1, 1000000);
    g.get_bool("send_batching", &b->send_batching);
    g.get_address("metrics_listen", &b->metrics_listen, &b->metrics_listen_text,
                  true);
}

void
read_heartbeatd(Group& g, HeartbeatdConfig* h)
{
    h->present = true;
    // "" is the default: no name, allowed until peers need one.
    if (g.get_string("node", &h->node) && !h->node.empty() &&
        !is_simple_name(h->node))
        g.fail_at(*g.find("node"),
                  "'node' must be 1 to 64 letters, digits, '-', '_' or '.'");
    g.get_int("priority", &h->priority, 1, 255);
    g.get_groups("peers", [&](Group& p) {
        PeerConfig peer;
        peer.line = p.line();
        if (!p.get_string("name", &peer.name))
            p.require("name");
        if (!is_simple_name(peer.name))
            p.fail_at(*p.find("name"),
                      "'name' must be 1 to 64 letters, "
                      "digits, '-', '_' or '.'");
        if (peer.name == h->node)
            p.fail_at(*p.find("name"), "peer " + quoted(peer.name) +
                                           " has this machine's 'node' name");
        for (const PeerConfig& other : h->peers) {
            if (other.name == peer.name)
                p.fail_at(*p.find("name"),
                          "duplicate peer name " + quoted(peer.name));
        }
        if (!p.get_address("address", &peer.address, &peer.address_text, false))
            p.require("address");
        h->peers.push_back(std::move(peer));
    });
    g.get_address("listen", &h->listen, &h->listen_text, false);
    g.get_string("auth_key_file", &h->auth_key_file);
    g.get_seconds("interval", &h->interval, 0.01, 3600);
    g.get_seconds("dead_time", &h->dead_time, 0.01, 3600);
    if (h->dead_time <= h->interval) {
        std::string msg = "'dead_time' (" + format_double(h->dead_time) +
                          ") must be longer than 'interval' (" +
                          format_double(h->interval) + ")";
        const Setting* s = g.find("dead_time");
        if (s != nullptr)
            g.fail_at(*s, msg);
        g.fail(msg);
    }
    g.get_strings("vips", &h->vips, is_any_string, "");
    g.get_strings(
        "notify", &h->notify,
        [](const std::string& d) { return d == "cached" || d == "balancerd"; },
        "one of cached, balancerd");
    g.get_string("notify_script", &h->notify_script);
    g.get_seconds("notify_timeout", &h->notify_timeout, 0.1, 3600);
    if (!h->peers.empty() && h->node.empty())
        g.fail("'node' is required when 'peers' are given");
    if (!h->peers.empty() && h->listen_text.empty())
        g.fail("'listen' is required when 'peers' are given");
}

void
read_root(const Source& src, const Setting& root, Config* c)
{
    Group top(src, root, "");
    with_group(top, "global", [&](Group& g) { read_global(g, &c->global); });
    const Setting* pools = top.find_group("pools");
    with_group(top, "pools",
               [&](Group& g) { read_pools(g, &c->pools, *pools); });
    with_group(top, "cached",
               [&](Group& g) { read_cached(g, &c->cached, c->pools); });
    with_group(top, "balancerd",
               [&](Group& g) { read_balancerd(g, &c->balancerd, c->pools); });
    with_group(top, "heartbeatd",
               [&](Group& g) { read_heartbeatd(g, &c->heartbeatd); });
    top.finish();
}

std::shared_ptr<const Config>
read_config(libconfig::Config& lc, const std::string& name,
            const std::string& include_dir)
{
    auto c = std::make_shared<Config>();
    c->file = name;
    read_root(Source(name, include_dir), lc.getRoot(), c.get());
    return c;
}

}  // namespace

std::shared_ptr<const Config>
load_config(const std::string& path)
{
    // libconfig's FileIOException says nothing about why, so ask first.
    struct stat st;
    FILE* f = std::fopen(path.c_str(), "r");
    if (f == nullptr)
        throw ConfigError(path, 0,
                          std::string("cannot read: ") + std::strerror(errno));
    int fstat_rc = fstat(fileno(f), &st);
    std::fclose(f);
    if (fstat_rc == 0 && S_ISDIR(st.st_mode))
        throw ConfigError(path, 0, "cannot read: Is a directory");

    size_t slash = path.rfind('/');
    std::string dir = slash == std::string::npos ? "."
                      : slash == 0               ? "/"
                                                 : path.substr(0, slash);
    libconfig::Config lc;
    lc.setAutoConvert(false);
    lc.setIncludeDir(dir.c_str());
    Source src(path, dir);
    try {
        lc.readFile(path.c_str());
    } catch (const libconfig::ParseException& e) {
        throw ConfigError(src.file_of(e.getFile()), e.getLine(), e.getError());
    } catch (const libconfig::FileIOException&) {
        throw ConfigError(path, 0, "cannot read: I/O error");
    }
    return read_config(lc, path, dir);
}

std::shared_ptr<const Config>
parse_config_text(const std::string& text, const std::string& name)
{
    libconfig::Config lc;
    lc.setAutoConvert(false);
    try {
        lc.readString(text);
    } catch (const libconfig::ParseException& e) {
        throw ConfigError(Source(name, "").file_of(e.getFile()), e.getLine(),
                          e.getError());
    }
    return read_config(lc, name, "");
}

}  // namespace sj
