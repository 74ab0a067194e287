#pragma once
// The shared configuration, sunjammer.conf(5): one libconfig file read by
// every daemon. load_config() parses and validates the whole file (every
// section, whichever daemon reads it) so that `-n` on any daemon catches any
// mistake, and so that a reload either yields a complete new Config or an
// error and no change.
//
// Defaults: the initialisers below are the defaults, and the only place
// they are written down in code; sunjammer.conf(5) documents the same values.
//
// Invariants of a Config returned by load_config():
//   - every pool named by balancerd.pool, balancerd.tcp[].pool and
//     cached.shared_tier exists in `pools`;
//   - node names are unique within a pool, pool names are unique;
//   - every address has been parsed (Address), every number is in range.

#include <map>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "common/address.h"
#include "common/log.h"

namespace sj {

// Thrown by load_config(); what() is "file:line: message" (or "file: message"
// when there is no line to blame, e.g. a missing file).
class ConfigError : public std::runtime_error {
public:
    ConfigError(const std::string& file, int line, const std::string& msg);
    const std::string& file() const noexcept { return file_; }
    int line() const noexcept { return line_; }
    const std::string& message() const noexcept { return msg_; }

private:
    std::string file_;
    int line_;
    std::string msg_;
};

// Limits applied by the HTTP parser to untrusted messages.
struct HttpLimits {
    size_t request_line = 8192;   // max bytes of the request/status line
    size_t header_line = 8192;    // max bytes of one header field line
    size_t header_total = 65536;  // max bytes of the whole header section
    size_t header_count = 100;    // max number of header fields
};

struct GlobalConfig {
    std::string user = "sunjammer";  // children run as this user
    std::string group;               // "" = the user's primary group
    std::string admin_group;         // may send mutating control commands
    std::string run_dir = RUNSTATEDIR "/sunjammer";  // pid files, sockets
    LogLevel log_level = LogLevel::kInfo;
    std::string log_file;  // "" = syslog (or stderr with -d)
    std::string syslog_facility = "daemon";
    double shutdown_timeout = 10.0;  // seconds in-flight work may take on stop
    int nofile = 65536;              // RLIMIT_NOFILE to ask for
};

struct CheckConfig {
    std::string type;  // "" (none), http, tcp, memcached, mysql, script
    std::string method = "GET";
    std::string path = "/";
    std::string host;  // Host header; "" = node address
    std::vector<int> expect_status = {200};
    std::string expect_body;  // substring the body must contain
    bool tls = false;
    std::string user;      // mysql
    std::string password;  // mysql
    std::string script;    // script: command run by /bin/sh -c
    std::string key = "sunjammer:heartbeatd";  // memcached canary key
    std::string notify_script;                 // "" = heartbeatd.notify_script
    double interval = 1.0;
    double timeout = 1.0;
    int rise = 2;
    int fall = 2;
    int max_lag = 10;  // mysql: seconds behind master
    int line = 0;      // where the check group starts
};

struct NodeConfig {
    std::string name;
    Address address;
    std::string address_text;  // as written
    int weight = 10;           // 0..1000; 0 = no new requests
    int maxconn = 0;           // 0 = the pool's maxconn
    bool backup = false;
    int line = 0;
};

struct PoolConfig {
    std::string name;
    std::string balance = "roundrobin";  // roundrobin leastconn hash random
    std::string hash_on = "uri";         // uri source header:NAME cookie:NAME
    std::string mode;                    // "" or "master-master" (mysql)
    int maxconn = 0;                     // per node, 0 = unlimited
    int maxqueue = 0;                    // 0 = unlimited
    double queue_timeout = 5.0;
    int retries = 2;
    double slowstart = 0.0;     // seconds a node ramps up after coming back
    std::string sticky_cookie;  // cookie balancerd inserts; "" = none
    CheckConfig check;
    std::vector<NodeConfig> nodes;
    int line = 0;
};

struct TlsListenConfig {
    std::string certificate;  // PEM chain
    std::string key;          // PEM private key
    // Further certificates on the same listener, chosen by SNI (cached).
    std::vector<std::pair<std::string, std::string>> sni;  // chain, key
};

struct ListenConfig {
    Address address;
    std::string address_text;
    bool tls = false;
    TlsListenConfig tls_config;
    int line = 0;
};

struct CachedConfig {
    bool present = false;  // the section exists
    std::vector<ListenConfig> listen;
    Address origin;
    std::string origin_text;
    size_t memory = 256u << 20;  // shared store size in bytes
    size_t max_object = 8u << 20;
    int workers = 0;                       // 0 = one per CPU
    std::string shared_tier;               // pool name, "" = none
    std::vector<std::string> purge_allow;  // addresses allowed to PURGE
    HttpLimits limits;
    std::string access_log;             // file path, "syslog", or "" = none
    Address metrics_listen;             // Prometheus text endpoint
    std::string metrics_listen_text;    // "" = none
    double stale_grace = 60.0;          // serve stale this long past freshness
    double pass_ttl = 30.0;             // an uncacheable key skips collapsing
    double collapse_wait = 5.0;         // longest wait behind another's fetch
    double header_timeout = 10.0;       // client request head (408)
    double idle_timeout = 60.0;         // client keep-alive wait
    double connect_timeout = 3.0;       // connect to the origin
    double origin_timeout = 30.0;       // origin silent while answering
    double origin_idle_timeout = 10.0;  // pooled idle origin connection
    size_t max_body = 8u << 20;         // request body limit (413)
    int max_connections = 10000;        // client connections per worker
    // Which worker takes a new connection: "pack" or "kernel".
    std::string accept_policy = "pack";
    bool sort_query = false;                 // cache key: sort query parameters
    std::vector<std::string> ignore_params;  // dropped from the cache key
    // Path prefixes under which responses with Set-Cookie may be stored.
    std::vector<std::string> cookie_paths;
    std::string via = "sunjammer";      // pseudonym in Via and Cache-Status
    double tier_timeout = 0.05;         // shared tier request timeout
    size_t tier_max_object = 1u << 20;  // larger objects stay local
};

struct TcpListenConfig {
    Address listen;
    std::string listen_text;
    std::string pool;
    std::string route;            // "" = the pool's balance, "writer"
    double connect_timeout = -1;  // per attempt; < 0 = balancerd's
    double idle_timeout = 600.0;  // no byte either way (close)
    int line = 0;
};

struct BalancerdConfig {
    bool present = false;
    std::vector<ListenConfig> listen;
    std::string pool;
    int pool_line = 0;
    int workers = 1;
    std::vector<TcpListenConfig> tcp;
    std::vector<std::string> trusted;  // peers whose X-Forwarded-For counts
    HttpLimits limits;
    std::string access_log;            // file path, "syslog", or "" = none
    double header_timeout = 10.0;      // client request head (408)
    double idle_timeout = 60.0;        // client keep-alive wait (close)
    double body_timeout = 60.0;        // whole client request body (408)
    double connect_timeout = 3.0;      // connect to a node (retry, 503)
    double server_timeout = 30.0;      // node silent while answering (504)
    double server_idle_timeout = 2.0;  // pooled idle node connection
    double send_timeout = 60.0;   // client accepting no response byte (close)
    int passive_fall = 3;         // consecutive failures that mark a node down
    double passive_hold = 10.0;   // seconds a passively downed node rests
    bool forwarded = false;       // add an RFC 7239 Forwarded header
    size_t max_body = 0;          // request body limit, 0 = none (413)
    int max_connections = 10000;  // client connections per worker
    bool send_batching = true;    // a loop iteration's writes in one call
    Address metrics_listen;       // Prometheus text endpoint
    std::string metrics_listen_text;  // "" = none
};

struct PeerConfig {
    std::string name;
    Address address;
    std::string address_text;
    int line = 0;
};

struct HeartbeatdConfig {
    bool present = false;
    std::string node;    // this machine's name among its peers
    int priority = 100;  // 1..255, higher wins the election
    std::vector<PeerConfig> peers;
    Address listen;  // UDP heartbeats
    std::string listen_text;
    std::string auth_key_file;
    double interval = 0.2;
    double dead_time = 1.0;
    std::vector<std::string> vips;
    std::vector<std::string> notify;  // daemons told of node states
    std::string notify_script;        // run on every node state change
    double notify_timeout = 10.0;     // a notify script is killed after it
};

struct Config {
    std::string file;  // the path it was read from
    GlobalConfig global;
    std::map<std::string, PoolConfig> pools;
    CachedConfig cached;
    BalancerdConfig balancerd;
    HeartbeatdConfig heartbeatd;
};

// Reads and validates `path`. Throws ConfigError.
std::shared_ptr<const Config> load_config(const std::string& path);

// Same, from text in memory; `name` is used as the file in error messages.
std::shared_ptr<const Config> parse_config_text(const std::string& text,
                                                const std::string& name);

// The effective configuration (defaults included) in libconfig syntax, for
// `show config`; re-reading the output yields an equal Config.
std::string dump_config(const Config& config);

// Parses a size: an integer of bytes or a string "64K", "512M", "2G".
bool parse_size(const std::string& text, size_t* out) noexcept;

}  // namespace sj
