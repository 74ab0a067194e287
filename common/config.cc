// ConfigError, sizes, and dump_config(): the effective configuration written
// back in libconfig syntax for `show config`. Reading (and the schema) lives
// in config_load.cc.

#include "common/config.h"

#include <cinttypes>
#include <climits>
#include <cstdio>
#include <cstdlib>

namespace sj {

namespace {

std::string
error_text(const std::string& file, int line, const std::string& msg)
{
    if (line <= 0)
        return file + ": " + msg;
    return file + ":" + std::to_string(line) + ": " + msg;
}

}  // namespace

ConfigError::ConfigError(const std::string& file, int line,
                         const std::string& msg)
    : std::runtime_error(error_text(file, line, msg)), file_(file), line_(line),
      msg_(msg)
{}

bool
parse_size(const std::string& text, size_t* out) noexcept
{
    size_t i = 0;
    size_t v = 0;
    while (i < text.size() && text[i] >= '0' && text[i] <= '9') {
        size_t digit = static_cast<size_t>(text[i] - '0');
        if (v > (SIZE_MAX - digit) / 10)
            return false;
        v = v * 10 + digit;
        ++i;
    }
    if (i == 0)
        return false;
    int shift = 0;
    if (i + 1 == text.size()) {
        switch (text[i]) {
        case 'K':
        case 'k': shift = 10; break;
        case 'M':
        case 'm': shift = 20; break;
        case 'G':
        case 'g': shift = 30; break;
        default: return false;
        }
    } else if (i != text.size()) {
        return false;
    }
    if (v > (SIZE_MAX >> shift))
        return false;
    *out = v << shift;
    return true;
}

// The shortest of "1G", "512M", "64K" or plain bytes that says `bytes`
// exactly; config_load.cc uses it in range messages.
std::string config_format_size(size_t bytes);

std::string
config_format_size(size_t bytes)
{
    static const struct {
        int shift;
        char suffix;
    } kUnits[] = {{30, 'G'}, {20, 'M'}, {10, 'K'}};
    for (const auto& u : kUnits) {
        size_t unit = size_t{1} << u.shift;
        if (bytes != 0 && bytes % unit == 0)
            return std::to_string(bytes / unit) + u.suffix;
    }
    return std::to_string(bytes);
}

namespace {

// Writes libconfig syntax with indentation. List elements need commas
// between them (libconfig 1.5 refuses a trailing one), so each level
// remembers whether it is a list and whether anything was written yet.
class Writer {
public:
    std::string take() { return std::move(out_); }

    void comment(const std::string& text) { out_ += "# " + text + "\n"; }

    void set(const char* name, const std::string& value)
    {
        item_prefix();
        out_ += name;
        out_ += " = " + value + ";\n";
    }

    void str(const char* name, const std::string& v) { set(name, quote(v)); }
    void num(const char* name, long long v) { set(name, std::to_string(v)); }
    void boolean(const char* name, bool v) { set(name, v ? "true" : "false"); }
    void seconds(const char* name, double v) { set(name, real(v)); }

    // A size as "256M" where exact, else bytes (int64 needs the L suffix).
    void size(const char* name, size_t v)
    {
        std::string s = config_format_size(v);
        if (s.back() >= 'A')
            set(name, quote(s));
        else
            set(name, v > INT_MAX ? s + "L" : s);
    }

    // A list of scalars on one line: `name = [ "a", "b" ];`.
    void inline_list(const char* name, char open,
                     const std::vector<std::string>& values)
    {
        std::string v(1, open);
        for (size_t i = 0; i < values.size(); ++i)
            v += (i == 0 ? " " : ", ") + values[i];
        v += open == '[' ? " ]" : " )";
        set(name, v);
    }

    void strings(const char* name, const std::vector<std::string>& values)
    {
        std::vector<std::string> quoted;
        for (const std::string& s : values)
            quoted.push_back(quote(s));
        inline_list(name, '[', quoted);
    }

    // `name = {` or `name = (` or `name = [`; a null name opens an
    // element of the enclosing list.
    void begin(const char* name, char open)
    {
        item_prefix();
        if (name != nullptr)
            out_ += std::string(name) + " = ";
        out_ += open;
        out_ += "\n";
        levels_.push_back({open, false});
    }

    void end()
    {
        char open = levels_.back().open;
        levels_.pop_back();
        if (out_.back() != '\n')
            out_ += "\n";
        out_ += indent();
        out_ += open == '{' ? '}' : open == '(' ? ')' : ']';
        bool in_list = !levels_.empty() && levels_.back().open != '{';
        out_ += in_list ? "" : ";\n";
    }

    void element(const std::string& value)
    {
        item_prefix();
        out_ += value;
    }

    static std::string quote(const std::string& s)
    {
        std::string q = "\"";
        for (unsigned char c : s) {
            switch (c) {
            case '"': q += "\\\""; break;
            case '\\': q += "\\\\"; break;
            case '\n': q += "\\n"; break;
            case '\r': q += "\\r"; break;
            case '\t': q += "\\t"; break;
            case '\f': q += "\\f"; break;
            default:
                if (c < 0x20 || c == 0x7f) {
                    char buf[8];
                    std::snprintf(buf, sizeof buf, "\\x%02x", c);
                    q += buf;
                } else {
                    q += static_cast<char>(c);
                }
            }
        }
        return q + "\"";
    }

    // The shortest decimal that reads back as the same double, always
    // with a '.' or an exponent so libconfig takes it for a float.
    static std::string real(double v)
    {
        char buf[64];
        if (v == static_cast<double>(static_cast<long long>(v)) && v > -1e15 &&
            v < 1e15) {
            std::snprintf(buf, sizeof buf, "%.1f", v);
            return buf;
        }
        for (int prec = 1; prec <= 17; ++prec) {
            std::snprintf(buf, sizeof buf, "%.*g", prec, v);
            if (std::strtod(buf, nullptr) == v)
                break;
        }
        std::string s = buf;
        if (s.find_first_of(".e") == std::string::npos)
            s += ".0";
        return s;
    }

private:
    struct Level {
        char open;
        bool written;
    };

    std::string indent() const { return std::string(4 * levels_.size(), ' '); }

    void item_prefix()
    {
        if (!levels_.empty()) {
            Level& l = levels_.back();
            if (l.open != '{' && l.written)
                out_ += ",\n";
            l.written = true;
        }
        if (out_.empty() || out_.back() == '\n')
            out_ += indent();
    }

    std::string out_;
    std::vector<Level> levels_;
};

void
dump_global(Writer& w, const GlobalConfig& g)
{
    w.begin("global", '{');
    w.str("user", g.user);
    w.str("group", g.group);
    w.str("admin_group", g.admin_group);
    w.str("run_dir", g.run_dir);
    w.str("log_level", log_level_name(g.log_level));
    w.str("log_file", g.log_file);
    w.str("syslog_facility", g.syslog_facility);
    w.seconds("shutdown_timeout", g.shutdown_timeout);
    w.num("nofile", g.nofile);
    w.end();
}

void
dump_check(Writer& w, const CheckConfig& c)
{
    w.begin("check", '{');
    w.str("type", c.type);
    w.str("method", c.method);
    w.str("path", c.path);
    w.str("host", c.host);
    std::vector<std::string> status;
    for (int s : c.expect_status)
        status.push_back(std::to_string(s));
    w.inline_list("expect_status", '[', status);
    w.str("expect_body", c.expect_body);
    w.boolean("tls", c.tls);
    w.str("user", c.user);
    w.str("password", c.password);
    w.str("script", c.script);
    w.str("key", c.key);
    w.str("notify_script", c.notify_script);
    w.seconds("interval", c.interval);
    w.seconds("timeout", c.timeout);
    w.num("rise", c.rise);
    w.num("fall", c.fall);
    w.num("max_lag", c.max_lag);
    w.end();
}

void
dump_pool(Writer& w, const PoolConfig& p)
{
    w.begin(p.name.c_str(), '{');
    w.str("balance", p.balance);
    w.str("hash_on", p.hash_on);
    w.str("mode", p.mode);
    w.num("maxconn", p.maxconn);
    w.num("maxqueue", p.maxqueue);
    w.seconds("queue_timeout", p.queue_timeout);
    w.num("retries", p.retries);
    w.seconds("slowstart", p.slowstart);
    w.str("sticky_cookie", p.sticky_cookie);
    dump_check(w, p.check);
    w.begin("nodes", '(');
    for (const NodeConfig& n : p.nodes) {
        w.begin(nullptr, '{');
        w.str("name", n.name);
        w.str("address", n.address_text);
        w.num("weight", n.weight);
        w.num("maxconn", n.maxconn);
        w.boolean("backup", n.backup);
        w.end();
    }
    w.end();
    w.end();
}

void
dump_limits(Writer& w, const HttpLimits& l)
{
    w.begin("limits", '{');
    w.num("request_line", static_cast<long long>(l.request_line));
    w.num("header_line", static_cast<long long>(l.header_line));
    w.num("header_total", static_cast<long long>(l.header_total));
    w.num("header_count", static_cast<long long>(l.header_count));
    w.end();
}

void
dump_listen(Writer& w, const std::vector<ListenConfig>& listen)
{
    std::vector<std::string> plain;
    for (const ListenConfig& l : listen) {
        if (!l.tls)
            plain.push_back(Writer::quote(l.address_text));
    }
    if (plain.size() == listen.size()) {
        w.inline_list("listen", '(', plain);
        return;
    }
    w.begin("listen", '(');
    for (const ListenConfig& l : listen) {
        if (!l.tls) {
            w.element(Writer::quote(l.address_text));
            continue;
        }
        w.begin(nullptr, '{');
        w.str("address", l.address_text);
        w.begin("tls", '{');
        w.str("certificate", l.tls_config.certificate);
        w.str("key", l.tls_config.key);
        if (!l.tls_config.sni.empty()) {
            w.begin("sni", '(');
            for (const auto& [cert, key] : l.tls_config.sni) {
                w.begin(nullptr, '{');
                w.str("certificate", cert);
                w.str("key", key);
                w.end();
            }
            w.end();
        }
        w.end();
        w.end();
    }
    w.end();
}

void
dump_cached(Writer& w, const CachedConfig& c)
{
    w.begin("cached", '{');
    dump_listen(w, c.listen);
    w.str("origin", c.origin_text);
    w.size("memory", c.memory);
    w.size("max_object", c.max_object);
    w.num("workers", c.workers);
    w.str("shared_tier", c.shared_tier);
    w.strings("purge_allow", c.purge_allow);
    dump_limits(w, c.limits);
    w.str("access_log", c.access_log);
    if (!c.metrics_listen_text.empty())
        w.str("metrics_listen", c.metrics_listen_text);
    w.seconds("stale_grace", c.stale_grace);
    w.seconds("pass_ttl", c.pass_ttl);
    w.seconds("collapse_wait", c.collapse_wait);
    w.seconds("header_timeout", c.header_timeout);
    w.seconds("idle_timeout", c.idle_timeout);
    w.seconds("connect_timeout", c.connect_timeout);
    w.seconds("origin_timeout", c.origin_timeout);
    w.seconds("origin_idle_timeout", c.origin_idle_timeout);
    w.size("max_body", c.max_body);
    w.num("max_connections", c.max_connections);
    w.str("accept_policy", c.accept_policy);
    w.boolean("sort_query", c.sort_query);
    w.strings("ignore_params", c.ignore_params);
    w.strings("cookie_paths", c.cookie_paths);
    w.str("via", c.via);
    w.seconds("tier_timeout", c.tier_timeout);
    w.size("tier_max_object", c.tier_max_object);
    w.end();
}

void
dump_balancerd(Writer& w, const BalancerdConfig& b)
{
    w.begin("balancerd", '{');
    dump_listen(w, b.listen);
    w.str("pool", b.pool);
    w.num("workers", b.workers);
    w.begin("tcp", '(');
    for (const TcpListenConfig& t : b.tcp) {
        w.begin(nullptr, '{');
        w.str("listen", t.listen_text);
        w.str("pool", t.pool);
        w.str("route", t.route);
        w.seconds("connect_timeout", t.connect_timeout);
        w.seconds("idle_timeout", t.idle_timeout);
        w.end();
    }
    w.end();
    w.strings("trusted", b.trusted);
    dump_limits(w, b.limits);
    w.str("access_log", b.access_log);
    w.seconds("header_timeout", b.header_timeout);
    w.seconds("idle_timeout", b.idle_timeout);
    w.seconds("body_timeout", b.body_timeout);
    w.seconds("connect_timeout", b.connect_timeout);
    w.seconds("server_timeout", b.server_timeout);
    w.seconds("server_idle_timeout", b.server_idle_timeout);
    w.seconds("send_timeout", b.send_timeout);
    w.num("passive_fall", b.passive_fall);
    w.seconds("passive_hold", b.passive_hold);
    w.boolean("forwarded", b.forwarded);
    w.size("max_body", b.max_body);
    w.num("max_connections", b.max_connections);
    w.boolean("send_batching", b.send_batching);
    if (!b.metrics_listen_text.empty())
        w.str("metrics_listen", b.metrics_listen_text);
    w.end();
}

void
dump_heartbeatd(Writer& w, const HeartbeatdConfig& h)
{
    w.begin("heartbeatd", '{');
    w.str("node", h.node);
    w.num("priority", h.priority);
    w.begin("peers", '(');
    for (const PeerConfig& p : h.peers) {
        w.begin(nullptr, '{');
        w.str("name", p.name);
        w.str("address", p.address_text);
        w.end();
    }
    w.end();
    // An unset address has no text that would read back; leave it out.
    if (!h.listen_text.empty())
        w.str("listen", h.listen_text);
    w.str("auth_key_file", h.auth_key_file);
    w.seconds("interval", h.interval);
    w.seconds("dead_time", h.dead_time);
    w.strings("vips", h.vips);
    w.strings("notify", h.notify);
    w.str("notify_script", h.notify_script);
    w.seconds("notify_timeout", h.notify_timeout);
    w.end();
}

}  // namespace

std::string
dump_config(const Config& config)
{
    Writer w;
    std::string file = config.file;
    for (char& c : file) {
        if (c == '\n' || c == '\r')
            c = '?';  // keep the comment on one line
    }
    w.comment("effective configuration read from " + file);
    dump_global(w, config.global);
    w.begin("pools", '{');
    for (const auto& [name, pool] : config.pools)
        dump_pool(w, pool);
    w.end();
    if (config.cached.present)
        dump_cached(w, config.cached);
    if (config.balancerd.present)
        dump_balancerd(w, config.balancerd);
    if (config.heartbeatd.present)
        dump_heartbeatd(w, config.heartbeatd);
    return w.take();
}

}  // namespace sj
