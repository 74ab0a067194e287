// HTTP caching rules (RFC 9111 and friends); see http_cache.h.

#include "cached/http_cache.h"

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <cstring>

namespace sj {

namespace {

bool
is_ows(char c) noexcept
{
    return c == ' ' || c == '\t';
}

std::string_view
trim(std::string_view s) noexcept
{
    while (!s.empty() && is_ows(s.front()))
        s.remove_prefix(1);
    while (!s.empty() && is_ows(s.back()))
        s.remove_suffix(1);
    return s;
}

char
lower(char c) noexcept
{
    return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c;
}

bool
is_digit(char c) noexcept
{
    return c >= '0' && c <= '9';
}

void
set_min(int64_t* field, int64_t v) noexcept
{
    if (*field < 0 || v < *field)
        *field = v;
}

// Splits a comma-separated list, honouring quoted strings; calls fn with
// each trimmed, non-empty member.
template <typename F>
void
for_each_member(std::string_view list, F fn)
{
    size_t start = 0;
    bool quoted = false;
    for (size_t i = 0; i <= list.size(); ++i) {
        if (i < list.size()) {
            char c = list[i];
            if (quoted && c == '\\') {
                ++i;
                continue;
            }
            if (c == '"')
                quoted = !quoted;
            if (quoted || c != ',')
                continue;
        }
        std::string_view m = trim(list.substr(start, i - start));
        if (!m.empty())
            fn(m);
        start = i + 1;
    }
}

bool
status_understood(int s) noexcept
{
    switch (s) {
    case 200:
    case 203:
    case 204:
    case 300:
    case 301:
    case 302:
    case 307:
    case 308:
    case 404:
    case 405:
    case 410:
    case 414:
    case 501: return true;
    default: return false;
    }
}

// Days since 1970-01-01 of a civil date (Howard Hinnant's algorithm).
int64_t
days_from_civil(int64_t y, unsigned m, unsigned d) noexcept
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    unsigned yoe = static_cast<unsigned>(y - era * 400);
    unsigned doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + static_cast<int64_t>(doe) - 719468;
}

const char* const kMonths[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                               "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
const char* const kDays[] = {"Thu", "Fri", "Sat", "Sun",
                             "Mon", "Tue", "Wed"};  // from 1970-01-01

int
month_of(std::string_view s) noexcept
{
    for (int i = 0; i < 12; ++i)
        if (s == kMonths[i])
            return i + 1;
    return 0;
}

bool
digits(std::string_view s, int* out) noexcept
{
    if (s.empty())
        return false;
    int v = 0;
    for (char c : s) {
        if (!is_digit(c))
            return false;
        v = v * 10 + (c - '0');
    }
    *out = v;
    return true;
}

bool
make_time(int y, int mon, int d, std::string_view hms, int64_t* t) noexcept
{
    int h, mi, s;
    if (hms.size() != 8 || hms[2] != ':' || hms[5] != ':' ||
        !digits(hms.substr(0, 2), &h) || !digits(hms.substr(3, 2), &mi) ||
        !digits(hms.substr(6, 2), &s))
        return false;
    if (mon < 1 || d < 1 || d > 31 || h > 23 || mi > 59 || s > 60)
        return false;
    *t = days_from_civil(y, static_cast<unsigned>(mon),
                         static_cast<unsigned>(d)) *
             86400 +
         h * 3600 + mi * 60 + s;
    return true;
}

bool
is_accept_field(std::string_view name) noexcept
{
    return name == "accept-encoding" || name == "accept-language" ||
           name == "accept-charset" || name == "accept";
}

bool
hop_by_hop(std::string_view name) noexcept
{
    static const char* const kHop[] = {
        "connection", "keep-alive",         "proxy-connection",
        "te",         "transfer-encoding",  "upgrade",
        "trailer",    "proxy-authenticate", "proxy-authorization"};
    for (const char* h : kHop)
        if (http_iequals(name, h))
            return true;
    return false;
}

void
append_num(std::string* out, uint64_t v)
{
    char b[24];
    int n = std::snprintf(b, sizeof b, "%llu",
                          static_cast<unsigned long long>(v));
    out->append(b, static_cast<size_t>(n));
}

void
append_int(std::string* out, int64_t v)
{
    char b[24];
    int n = std::snprintf(b, sizeof b, "%lld", static_cast<long long>(v));
    out->append(b, static_cast<size_t>(n));
}

bool
strip_default_port(std::string_view* host) noexcept
{
    for (std::string_view p : {":80", ":443"}) {
        if (host->size() > p.size() &&
            host->substr(host->size() - p.size()) == p) {
            host->remove_suffix(p.size());
            return true;
        }
    }
    return false;
}

bool
same_host(std::string_view a, std::string_view b) noexcept
{
    strip_default_port(&a);
    strip_default_port(&b);
    return http_iequals(a, b);
}

// Splits an absolute URI "scheme://host/path" into host and path.
bool
split_absolute(std::string_view uri, std::string_view* host,
               std::string_view* path) noexcept
{
    size_t p = uri.find("://");
    if (p == std::string_view::npos || p == 0)
        return false;
    for (size_t i = 0; i < p; ++i)
        if (!std::isalpha(static_cast<unsigned char>(uri[i])) &&
            uri[i] != '+' && uri[i] != '-' && uri[i] != '.')
            return false;
    std::string_view rest = uri.substr(p + 3);
    size_t slash = rest.find_first_of("/?");
    *host = rest.substr(0, slash);
    *path = slash == std::string_view::npos ? std::string_view("/")
                                            : rest.substr(slash);
    return !host->empty();
}

}  // namespace

// ---------------------------------------------------------------- parsing

int64_t
parse_delta_seconds(std::string_view s) noexcept
{
    if (s.empty())
        return -1;
    int64_t v = 0;
    for (char c : s) {
        if (!is_digit(c))
            return -1;
        if (v < kDeltaMax)
            v = v * 10 + (c - '0');
    }
    return v < kDeltaMax ? v : kDeltaMax;
}

void
parse_cache_control(std::string_view value, CacheControl* cc) noexcept
{
    for_each_member(value, [cc](std::string_view m) {
        size_t eq = m.find('=');
        std::string_view name = trim(m.substr(0, eq));
        std::string_view arg;
        bool has_arg = eq != std::string_view::npos;
        std::string unq;
        if (has_arg) {
            arg = trim(m.substr(eq + 1));
            if (arg.size() >= 2 && arg.front() == '"' && arg.back() == '"') {
                // §5.2: accept the quoted form of every argument.
                for (size_t i = 1; i + 1 < arg.size(); ++i) {
                    if (arg[i] == '\\' && i + 2 < arg.size())
                        ++i;
                    unq.push_back(arg[i]);
                }
                arg = unq;
            }
        }
        auto is = [name](const char* d) { return http_iequals(name, d); };
        int64_t delta = has_arg ? parse_delta_seconds(arg) : -1;
        if (is("no-store")) {
            cc->no_store = true;
        } else if (is("no-cache")) {
            // The qualified form would let the rest of the response be
            // reused; without per-field stripping the safe reading is
            // the unqualified one.
            cc->no_cache = true;
            cc->no_cache_fields |= has_arg;
        } else if (is("private")) {
            cc->private_ = true;
        } else if (is("public")) {
            cc->public_ = true;
        } else if (is("must-revalidate")) {
            cc->must_revalidate = true;
        } else if (is("proxy-revalidate")) {
            cc->proxy_revalidate = true;
        } else if (is("must-understand")) {
            cc->must_understand = true;
        } else if (is("no-transform")) {
            cc->no_transform = true;
        } else if (is("only-if-cached")) {
            cc->only_if_cached = true;
        } else if (is("immutable")) {
            cc->immutable = true;
        } else if (is("max-age")) {
            // §4.2.1: invalid freshness information means stale.
            set_min(&cc->max_age, delta < 0 ? 0 : delta);
        } else if (is("s-maxage")) {
            set_min(&cc->s_maxage, delta < 0 ? 0 : delta);
        } else if (is("max-stale")) {
            if (!has_arg)
                cc->max_stale_any = true;
            else if (delta >= 0)
                set_min(&cc->max_stale, delta);
        } else if (is("min-fresh")) {
            if (delta >= 0 && delta > cc->min_fresh)
                cc->min_fresh = delta;
        } else if (is("stale-while-revalidate")) {
            if (delta >= 0)
                set_min(&cc->stale_while_revalidate, delta);
        } else if (is("stale-if-error")) {
            if (delta >= 0)
                set_min(&cc->stale_if_error, delta);
        }
        // Anything else is an extension we do not know: ignored (§5.2.3).
    });
}

CacheControl
cache_control_of(const HttpMessage& m) noexcept
{
    CacheControl cc;
    bool any = false;
    for (size_t i = 0; i < m.header_count(); ++i) {
        if (http_iequals(m.header_name(i), "cache-control")) {
            any = true;
            parse_cache_control(m.header_value(i), &cc);
        }
    }
    if (!any) {
        for (size_t i = 0; i < m.header_count(); ++i) {
            if (!http_iequals(m.header_name(i), "pragma"))
                continue;
            for_each_member(m.header_value(i), [&cc](std::string_view v) {
                if (http_iequals(v, "no-cache"))
                    cc.no_cache = true;
            });
        }
    }
    return cc;
}

bool
parse_http_date(std::string_view s, int64_t* t) noexcept
{
    int d, y;
    if (s.size() == 29 && s[3] == ',' && s.substr(25) == " GMT") {
        // IMF-fixdate: Sun, 06 Nov 1994 08:49:37 GMT
        if (s[4] != ' ' || s[7] != ' ' || s[11] != ' ' || s[16] != ' ' ||
            !digits(s.substr(5, 2), &d) || !digits(s.substr(12, 4), &y))
            return false;
        return make_time(y, month_of(s.substr(8, 3)), d, s.substr(17, 8), t);
    }
    size_t comma = s.find(',');
    if (comma != std::string_view::npos && comma >= 6) {
        // RFC 850: Sunday, 06-Nov-94 08:49:37 GMT
        std::string_view r = s.substr(comma + 1);
        if (r.size() != 23 || r[0] != ' ' || r[3] != '-' || r[7] != '-' ||
            r[10] != ' ' || r.substr(19) != " GMT" ||
            !digits(r.substr(1, 2), &d) || !digits(r.substr(8, 2), &y))
            return false;
        // RFC 9110 §5.6.7: a two-digit year more than 50 years ahead is in
        // the past century; for any current date that is 1970..2069.
        y += y < 70 ? 2000 : 1900;
        return make_time(y, month_of(r.substr(4, 3)), d, r.substr(11, 8), t);
    }
    if (s.size() == 24 && s[3] == ' ' && s[7] == ' ' && s[10] == ' ' &&
        s[19] == ' ') {
        // asctime: Sun Nov  6 08:49:37 1994
        std::string_view dd = s.substr(8, 2);
        if (dd[0] == ' ')
            dd.remove_prefix(1);
        if (!digits(dd, &d) || !digits(s.substr(20, 4), &y))
            return false;
        return make_time(y, month_of(s.substr(4, 3)), d, s.substr(11, 8), t);
    }
    return false;
}

void
format_http_date(int64_t t, char out[30]) noexcept
{
    int64_t days = t >= 0 ? t / 86400 : (t - 86399) / 86400;
    int64_t secs = t - days * 86400;
    // civil_from_days (Hinnant).
    int64_t z = days + 719468;
    int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    unsigned doe = static_cast<unsigned>(z - era * 146097);
    unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    int64_t y = static_cast<int64_t>(yoe) + era * 400;
    unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    unsigned mp = (5 * doy + 2) / 153;
    unsigned d = doy - (153 * mp + 2) / 5 + 1;
    unsigned m = mp < 10 ? mp + 3 : mp - 9;
    y += m <= 2;
    int wd = static_cast<int>(((days % 7) + 7) % 7);
    y = std::clamp<int64_t>(y, 0, 9999);
    auto put2 = [](char* p, unsigned v) {
        p[0] = static_cast<char>('0' + v / 10 % 10);
        p[1] = static_cast<char>('0' + v % 10);
    };
    std::memcpy(out, "Thu, 01 Jan 1970 00:00:00 GMT", 30);
    std::memcpy(out, kDays[wd], 3);
    put2(out + 5, d);
    std::memcpy(out + 8, kMonths[m - 1], 3);
    put2(out + 12, static_cast<unsigned>(y / 100));
    put2(out + 14, static_cast<unsigned>(y % 100));
    put2(out + 17, static_cast<unsigned>(secs / 3600));
    put2(out + 20, static_cast<unsigned>(secs / 60 % 60));
    put2(out + 23, static_cast<unsigned>(secs % 60));
}

// ---------------------------------------------------------------- storing

const char*
store_verdict_name(StoreVerdict v) noexcept
{
    switch (v) {
    case StoreVerdict::kStorable: return "storable";
    case StoreVerdict::kMethod: return "method";
    case StoreVerdict::kStatus: return "status";
    case StoreVerdict::kNoStore: return "no-store";
    case StoreVerdict::kPrivate: return "private";
    case StoreVerdict::kAuthorization: return "authorization";
    case StoreVerdict::kSetCookie: return "set-cookie";
    case StoreVerdict::kVaryStar: return "vary-star";
    case StoreVerdict::kNoFreshness: return "no-freshness";
    case StoreVerdict::kTruncated: return "truncated";
    }
    return "?";
}

bool
heuristically_cacheable(int status) noexcept
{
    switch (status) {
    case 200:
    case 203:
    case 204:
    case 206:
    case 300:
    case 301:
    case 308:
    case 404:
    case 405:
    case 410:
    case 414:
    case 501: return true;
    default: return false;
    }
}

StoreVerdict
storable(const HttpMessage& req, const CacheControl& req_cc,
         const HttpMessage& resp, const CacheControl& resp_cc, bool complete,
         const StorePolicy& policy) noexcept
{
    if (req.method() != "GET")
        return StoreVerdict::kMethod;
    if (!status_understood(resp.status))
        return StoreVerdict::kStatus;
    // §5.2.1.5: no-store in the request covers the response too.
    if (req_cc.no_store || resp_cc.no_store)
        return StoreVerdict::kNoStore;
    if (resp_cc.private_)
        return StoreVerdict::kPrivate;
    // §3.5: a shared cache may reuse an answer to an authenticated request
    // only when the response says so.
    if (req.header("authorization") && !resp_cc.public_ &&
        resp_cc.s_maxage < 0 && !resp_cc.must_revalidate)
        return StoreVerdict::kAuthorization;
    if (!policy.store_set_cookie && resp.header("set-cookie"))
        return StoreVerdict::kSetCookie;
    std::string names;
    bool star = false;
    vary_names(resp, &names, &star);
    if (star)
        return StoreVerdict::kVaryStar;
    if (!resp_cc.public_ && resp_cc.max_age < 0 && resp_cc.s_maxage < 0 &&
        !resp.header("expires") && !heuristically_cacheable(resp.status))
        return StoreVerdict::kNoFreshness;
    if (!complete)
        return StoreVerdict::kTruncated;
    return StoreVerdict::kStorable;
}

// ---------------------------------------------------------------- freshness

int64_t
date_value(const HttpMessage& resp, int64_t response_time) noexcept
{
    int64_t t;
    auto d = resp.header("date");
    if (d && parse_http_date(trim(*d), &t))
        return t;
    return response_time;
}

int64_t
age_value(const HttpMessage& resp) noexcept
{
    auto a = resp.header("age");
    if (!a)
        return 0;
    int64_t v = parse_delta_seconds(trim(*a));
    return v < 0 ? 0 : v;
}

int64_t
freshness_lifetime(const HttpMessage& resp, const CacheControl& cc,
                   int64_t date, const FreshnessPolicy& policy,
                   bool* heuristic) noexcept
{
    if (heuristic != nullptr)
        *heuristic = false;
    if (cc.s_maxage >= 0)
        return cc.s_maxage;
    if (cc.max_age >= 0)
        return cc.max_age;
    if (auto e = resp.header("expires")) {
        int64_t t;
        // §5.3: an invalid Expires, such as "0", is in the past.
        if (!parse_http_date(trim(*e), &t))
            return 0;
        return std::clamp<int64_t>(t - date, 0, kDeltaMax);
    }
    auto lm = resp.header("last-modified");
    int64_t t;
    if (!heuristically_cacheable(resp.status) || !lm ||
        !parse_http_date(trim(*lm), &t) || t > date)
        return 0;
    if (heuristic != nullptr)
        *heuristic = true;
    auto h = static_cast<int64_t>(
        static_cast<double>(date - t) * policy.heuristic_fraction);
    return std::min(h, policy.heuristic_max);
}

int64_t
current_age(const AgeInputs& a, int64_t now) noexcept
{
    int64_t apparent_age = std::max<int64_t>(0, a.response_time - a.date_value);
    int64_t response_delay = a.response_time - a.request_time;
    int64_t corrected_age_value = a.age_value + response_delay;
    int64_t corrected_initial_age = std::max(apparent_age, corrected_age_value);
    int64_t resident_time = now - a.response_time;
    int64_t age = corrected_initial_age + resident_time;
    return std::clamp<int64_t>(age, 0, kDeltaMax);
}

uint32_t
stored_flags(const CacheControl& cc, bool heuristic) noexcept
{
    uint32_t f = 0;
    // §5.2.2.8 proxy-revalidate and §5.2.2.10 s-maxage mean must-revalidate
    // in a shared cache.
    if (cc.must_revalidate || cc.proxy_revalidate || cc.s_maxage >= 0)
        f |= kStoredMustRevalidate;
    if (cc.no_cache)
        f |= kStoredNoCache;
    if (heuristic)
        f |= kStoredHeuristic;
    return f;
}

const char*
reuse_name(Reuse r) noexcept
{
    switch (r) {
    case Reuse::kFresh: return "fresh";
    case Reuse::kStaleAllowed: return "stale-allowed";
    case Reuse::kStaleWhileRevalidate: return "stale-while-revalidate";
    case Reuse::kRevalidate: return "revalidate";
    }
    return "?";
}

Reuse
reuse_decision(const StoredFreshness& f, const CacheControl& req_cc,
               int64_t grace) noexcept
{
    // §5.2.2.4 / §5.2.1.4: no-cache either side means validate first.
    if (f.no_cache || req_cc.no_cache)
        return Reuse::kRevalidate;
    // §5.2.1.1: the client does not want anything older than max-age.
    if (req_cc.max_age >= 0 && f.age > req_cc.max_age)
        return Reuse::kRevalidate;
    if (f.lifetime > f.age) {
        // §5.2.1.3: nor anything that will be stale within min-fresh.
        if (req_cc.min_fresh >= 0 && f.lifetime - f.age < req_cc.min_fresh)
            return Reuse::kRevalidate;
        return Reuse::kFresh;
    }
    // Stale. §4.2.4: never served stale against must-revalidate.
    if (f.must_revalidate)
        return Reuse::kRevalidate;
    int64_t staleness = f.age - f.lifetime;
    if (req_cc.max_stale_any ||
        (req_cc.max_stale >= 0 && staleness <= req_cc.max_stale))
        return Reuse::kStaleAllowed;
    int64_t swr = std::max(f.stale_while_revalidate, grace > 0 ? grace : -1);
    if (swr >= 0 && staleness <= swr)
        return Reuse::kStaleWhileRevalidate;
    return Reuse::kRevalidate;
}

bool
usable_on_error(const StoredFreshness& f, const CacheControl& req_cc,
                int64_t grace) noexcept
{
    // §4.2.4: must-revalidate and no-cache forbid stale answers even when
    // the origin cannot be reached (§5.2.2.2: a 504 instead).
    if (f.must_revalidate || f.no_cache)
        return false;
    int64_t staleness = f.age - f.lifetime;
    if (staleness <= 0)
        return true;
    int64_t window = std::max({f.stale_if_error, req_cc.stale_if_error, grace});
    return staleness <= window;
}

// ---------------------------------------------------------------- vary

void
vary_names(const HttpMessage& resp, std::string* out, bool* star)
{
    out->clear();
    *star = false;
    for (size_t i = 0; i < resp.header_count(); ++i) {
        if (!http_iequals(resp.header_name(i), "vary"))
            continue;
        for_each_member(resp.header_value(i), [&](std::string_view n) {
            if (n == "*") {
                *star = true;
                return;
            }
            std::string low(n.size(), '\0');
            std::transform(n.begin(), n.end(), low.begin(), lower);
            // Skip a name already listed.
            std::string_view have = *out;
            size_t pos = 0;
            while (pos <= have.size()) {
                size_t c = have.find(',', pos);
                if (have.substr(pos, c - pos) == low)
                    return;
                if (c == std::string_view::npos)
                    break;
                pos = c + 1;
            }
            if (!out->empty())
                out->push_back(',');
            out->append(low);
        });
    }
}

void
vary_values(const HttpMessage& req, std::string_view names, std::string* out)
{
    out->clear();
    size_t pos = 0;
    bool first_name = true;
    while (pos < names.size()) {
        size_t c = names.find(',', pos);
        std::string_view name = names.substr(pos, c - pos);
        pos = c == std::string_view::npos ? names.size() : c + 1;
        if (!first_name)
            out->push_back('\n');
        first_name = false;
        bool found = false, first = true;
        bool fold = is_accept_field(name);
        for (size_t i = 0; i < req.header_count(); ++i) {
            if (!http_iequals(req.header_name(i), name))
                continue;
            found = true;
            // §4.1: lines combined as one list, members trimmed.
            for_each_member(req.header_value(i), [&](std::string_view m) {
                if (!first)
                    out->push_back(',');
                first = false;
                for (char ch : m)
                    out->push_back(fold ? lower(ch) : ch);
            });
        }
        if (!found)
            out->push_back('\x01');
    }
}

bool
vary_matches(const HttpMessage& req, std::string_view names,
             std::string_view stored_values)
{
    if (names.empty())
        return true;
    std::string v;
    vary_values(req, names, &v);
    return v == stored_values;
}

// ---------------------------------------------------------------- headers

bool
HeaderBlock::next(std::string_view* name, std::string_view* value) noexcept
{
    while (!rest_.empty()) {
        size_t end = rest_.find("\r\n");
        std::string_view line = rest_.substr(0, end);
        rest_ = end == std::string_view::npos ? std::string_view()
                                              : rest_.substr(end + 2);
        size_t colon = line.find(':');
        if (colon == std::string_view::npos || colon == 0)
            continue;
        *name = line.substr(0, colon);
        *value = trim(line.substr(colon + 1));
        return true;
    }
    return false;
}

bool
HeaderBlock::find(std::string_view block, std::string_view name,
                  std::string_view* value) noexcept
{
    HeaderBlock b(block);
    std::string_view n, v;
    while (b.next(&n, &v)) {
        if (http_iequals(n, name)) {
            *value = v;
            return true;
        }
    }
    return false;
}

void
stored_header_block(const HttpMessage& resp, bool keep_set_cookie,
                    std::string* out)
{
    // The fields named by Connection are hop-by-hop too (RFC 9110 §7.6.1).
    std::vector<std::string_view> listed;
    for (size_t i = 0; i < resp.header_count(); ++i)
        if (http_iequals(resp.header_name(i), "connection"))
            for_each_member(resp.header_value(i),
                            [&](std::string_view t) { listed.push_back(t); });
    for (size_t i = 0; i < resp.header_count(); ++i) {
        std::string_view n = resp.header_name(i);
        if (hop_by_hop(n) || http_iequals(n, "age") ||
            (!keep_set_cookie && http_iequals(n, "set-cookie")) ||
            std::any_of(listed.begin(), listed.end(),
                        [n](std::string_view l) { return http_iequals(l, n); }))
            continue;
        out->append(n);
        out->append(": ");
        out->append(resp.header_value(i));
        out->append("\r\n");
    }
}

bool
revalidation_headers(std::string_view etag, std::string_view last_modified,
                     std::string* out)
{
    if (!etag.empty()) {
        out->append("If-None-Match: ");
        out->append(etag);
        out->append("\r\n");
    }
    if (!last_modified.empty()) {
        out->append("If-Modified-Since: ");
        out->append(last_modified);
        out->append("\r\n");
    }
    return !etag.empty() || !last_modified.empty();
}

void
apply_304(std::string_view stored, const HttpMessage& r, bool keep_set_cookie,
          std::string* out)
{
    auto updatable = [keep_set_cookie](std::string_view n) {
        return !hop_by_hop(n) && !http_iequals(n, "content-length") &&
               !http_iequals(n, "content-range") &&
               !http_iequals(n, "content-encoding") &&
               !http_iequals(n, "age") &&
               (keep_set_cookie || !http_iequals(n, "set-cookie"));
    };
    auto in_304 = [&](std::string_view n) {
        for (size_t i = 0; i < r.header_count(); ++i)
            if (http_iequals(r.header_name(i), n) &&
                updatable(r.header_name(i)))
                return true;
        return false;
    };
    out->clear();
    HeaderBlock b(stored);
    std::string_view n, v;
    while (b.next(&n, &v)) {
        if (in_304(n))
            continue;
        out->append(n);
        out->append(": ");
        out->append(v);
        out->append("\r\n");
    }
    for (size_t i = 0; i < r.header_count(); ++i) {
        if (!updatable(r.header_name(i)))
            continue;
        out->append(r.header_name(i));
        out->append(": ");
        out->append(r.header_value(i));
        out->append("\r\n");
    }
}

bool
etag_weak_equal(std::string_view a, std::string_view b) noexcept
{
    if (a.substr(0, 2) == "W/")
        a.remove_prefix(2);
    if (b.substr(0, 2) == "W/")
        b.remove_prefix(2);
    return a.size() >= 2 && a.front() == '"' && a.back() == '"' && a == b;
}

bool
etag_strong_equal(std::string_view a, std::string_view b) noexcept
{
    return a.substr(0, 2) != "W/" && b.substr(0, 2) != "W/" &&
           etag_weak_equal(a, b);
}

bool
not_modified_matches(const HttpMessage& r, std::string_view etag,
                     std::string_view last_modified) noexcept
{
    if (auto e = r.header("etag"))
        return etag_weak_equal(trim(*e), etag);
    if (auto lm = r.header("last-modified")) {
        int64_t a, b;
        return parse_http_date(trim(*lm), &a) &&
               parse_http_date(last_modified, &b) && a == b;
    }
    // No validator in the 304: it answers the one conditional request we
    // made for this stored response (§4.3.4's last case, relaxed to the
    // stored response we asked about).
    return true;
}

Conditional
evaluate_conditional(const HttpMessage& req, std::string_view etag,
                     std::string_view last_modified, int64_t now) noexcept
{
    if (req.method() != "GET" && req.method() != "HEAD")
        return Conditional::kNone;
    bool has_inm = false, match = false;
    for (size_t i = 0; i < req.header_count(); ++i) {
        if (!http_iequals(req.header_name(i), "if-none-match"))
            continue;
        has_inm = true;
        for_each_member(req.header_value(i), [&](std::string_view t) {
            if (t == "*" || (!etag.empty() && etag_weak_equal(t, etag)))
                match = true;
        });
    }
    // RFC 9110 §13.2.2: If-None-Match, when present, decides alone.
    if (has_inm)
        return match ? Conditional::kNotModified : Conditional::kNone;
    auto ims = req.header("if-modified-since");
    int64_t since, lm;
    if (!ims || req.header_occurrences("if-modified-since") != 1 ||
        !parse_http_date(trim(*ims), &since) || since > now ||
        last_modified.empty() || !parse_http_date(last_modified, &lm))
        return Conditional::kNone;
    return lm <= since ? Conditional::kNotModified : Conditional::kNone;
}

bool
needs_origin_precondition(const HttpMessage& req) noexcept
{
    return req.header("if-match") || req.header("if-unmodified-since");
}

// ---------------------------------------------------------------- ranges

namespace {

// Parses 1*DIGIT; false if empty or not digits; saturates.
bool
parse_u64(std::string_view s, uint64_t* v) noexcept
{
    if (s.empty())
        return false;
    uint64_t x = 0;
    for (char c : s) {
        if (!is_digit(c))
            return false;
        uint64_t d = static_cast<uint64_t>(c - '0');
        x = x > (UINT64_MAX - d) / 10 ? UINT64_MAX : x * 10 + d;
    }
    *v = x;
    return true;
}

}  // namespace

RangeResult
parse_range(std::string_view value, uint64_t size, ByteRange* out,
            size_t* n) noexcept
{
    *n = 0;
    value = trim(value);
    size_t eq = value.find('=');
    if (eq == std::string_view::npos ||
        !http_iequals(trim(value.substr(0, eq)), "bytes"))
        return RangeResult::kIgnore;
    std::string_view specs = value.substr(eq + 1);
    size_t count = 0;
    bool bad = false;
    for_each_member(specs, [&](std::string_view spec) {
        if (bad)
            return;
        if (++count > kMaxRanges) {
            bad = true;
            return;
        }
        size_t dash = spec.find('-');
        if (dash == std::string_view::npos) {
            bad = true;
            return;
        }
        std::string_view a = spec.substr(0, dash), b = spec.substr(dash + 1);
        uint64_t first, last;
        if (a.empty()) {
            // suffix-range: the last b bytes.
            uint64_t len;
            if (!parse_u64(b, &len)) {
                bad = true;
                return;
            }
            if (len == 0 || size == 0)
                return;  // unsatisfiable, dropped
            first = len >= size ? 0 : size - len;
            last = size - 1;
        } else {
            if (!parse_u64(a, &first)) {
                bad = true;
                return;
            }
            if (b.empty()) {
                last = UINT64_MAX;
            } else if (!parse_u64(b, &last) || last < first) {
                bad = true;  // §14.1.1: invalid, the Range is ignored
                return;
            }
            if (first >= size)
                return;  // unsatisfiable, dropped
            last = std::min(last, size - 1);
        }
        out[(*n)++] = ByteRange{first, last};
    });
    if (bad || count == 0) {
        *n = 0;
        return RangeResult::kIgnore;
    }
    if (*n == 0)
        return RangeResult::kUnsatisfiable;
    for (size_t i = 0; i < *n; ++i)
        for (size_t j = i + 1; j < *n; ++j)
            if (out[i].first <= out[j].last && out[j].first <= out[i].last) {
                *n = 0;
                return RangeResult::kIgnore;
            }
    return RangeResult::kSatisfiable;
}

bool
if_range_allows(const HttpMessage& req, std::string_view etag,
                std::string_view last_modified) noexcept
{
    auto ir = req.header("if-range");
    if (!ir)
        return true;
    std::string_view v = trim(*ir);
    if (v.substr(0, 1) == "\"" || v.substr(0, 2) == "W/")
        return etag_strong_equal(v, etag);
    int64_t a, b;
    return parse_http_date(v, &a) && parse_http_date(last_modified, &b) &&
           a == b;
}

void
content_range_header(const ByteRange* r, uint64_t size, std::string* out)
{
    out->append("Content-Range: bytes ");
    if (r != nullptr) {
        append_num(out, r->first);
        out->push_back('-');
        append_num(out, r->last);
    } else {
        out->push_back('*');
    }
    out->push_back('/');
    append_num(out, size);
    out->append("\r\n");
}

uint64_t
multipart_byteranges(const ByteRange* ranges, size_t n, uint64_t size,
                     std::string_view content_type, std::string_view boundary,
                     std::vector<MultipartPiece>* out)
{
    out->clear();
    uint64_t total = 0;
    for (size_t i = 0; i < n; ++i) {
        MultipartPiece p;
        if (i > 0)
            p.text = "\r\n";
        p.text += "--";
        p.text.append(boundary);
        p.text += "\r\n";
        if (!content_type.empty()) {
            p.text += "Content-Type: ";
            p.text.append(content_type);
            p.text += "\r\n";
        }
        content_range_header(&ranges[i], size, &p.text);
        p.text += "\r\n";
        p.has_range = true;
        p.range = ranges[i];
        total += p.text.size() + (ranges[i].last - ranges[i].first + 1);
        out->push_back(std::move(p));
    }
    MultipartPiece end;
    end.text = "\r\n--";
    end.text.append(boundary);
    end.text += "--\r\n";
    total += end.text.size();
    out->push_back(std::move(end));
    return total;
}

// ---------------------------------------------------------------- keys

bool
is_unsafe_method(std::string_view m) noexcept
{
    return m != "GET" && m != "HEAD" && m != "OPTIONS" && m != "TRACE";
}

void
cache_key(std::string_view host, std::string_view target,
          const KeyPolicy& policy, std::string* out)
{
    out->clear();
    std::string_view h2, p2;
    if (split_absolute(target, &h2, &p2)) {
        host = h2;
        target = p2;
    }
    strip_default_port(&host);
    for (char c : host)
        out->push_back(lower(c));
    size_t q = target.find('?');
    out->append(target.substr(0, q));
    if (q == std::string_view::npos)
        return;
    std::string_view query = target.substr(q + 1);
    if (!policy.sort_query && policy.drop_params.empty()) {
        out->push_back('?');
        out->append(query);
        return;
    }
    std::vector<std::string_view> params;
    size_t pos = 0;
    while (pos <= query.size()) {
        size_t amp = query.find('&', pos);
        std::string_view p = query.substr(pos, amp - pos);
        pos = amp == std::string_view::npos ? query.size() + 1 : amp + 1;
        if (p.empty())
            continue;
        std::string_view name = p.substr(0, p.find('='));
        if (std::find(policy.drop_params.begin(), policy.drop_params.end(),
                      name) != policy.drop_params.end())
            continue;
        params.push_back(p);
    }
    if (policy.sort_query)
        std::stable_sort(params.begin(), params.end());
    for (size_t i = 0; i < params.size(); ++i) {
        out->push_back(i == 0 ? '?' : '&');
        out->append(params[i]);
    }
}

void
variant_key(std::string_view primary, std::string_view vary_values,
            std::string* out)
{
    out->assign(primary);
    out->push_back('\0');
    out->append(vary_values);
}

void
invalidation_keys(const HttpMessage& req, const HttpMessage& resp,
                  const KeyPolicy& policy, std::vector<std::string>* out)
{
    // §4.4: only after a non-error response to an unsafe method.
    if (!is_unsafe_method(req.method()) || resp.status < 200 ||
        resp.status >= 400)
        return;
    std::string_view host = req.header("host").value_or("");
    std::string_view th, tp;
    if (split_absolute(req.target(), &th, &tp))
        host = th;
    std::string key;
    cache_key(host, req.target(), policy, &key);
    out->push_back(key);
    for (const char* field : {"location", "content-location"}) {
        auto v = resp.header(field);
        if (!v)
            continue;
        std::string_view uri = trim(*v), h, p;
        if (split_absolute(uri, &h, &p)) {
            // Not on another host: that would let one site purge another.
            if (!same_host(h, host))
                continue;
        } else if (uri.substr(0, 1) != "/" || uri.substr(0, 2) == "//") {
            continue;
        }
        cache_key(host, uri, policy, &key);
        out->push_back(key);
    }
}

// ---------------------------------------------------------------- status

void
cache_status(std::string_view cache_name, const CacheStatusInfo& info,
             std::string* out)
{
    out->append(cache_name);
    switch (info.outcome) {
    case CacheOutcome::kHit:
    case CacheOutcome::kStaleHit: out->append("; hit"); break;
    case CacheOutcome::kMiss: out->append("; fwd=miss"); break;
    case CacheOutcome::kUriMiss: out->append("; fwd=uri-miss"); break;
    case CacheOutcome::kVaryMiss: out->append("; fwd=vary-miss"); break;
    case CacheOutcome::kRequest: out->append("; fwd=request"); break;
    case CacheOutcome::kStale: out->append("; fwd=stale"); break;
    case CacheOutcome::kBypass: out->append("; fwd=bypass"); break;
    }
    if (info.fwd_status > 0) {
        out->append("; fwd-status=");
        append_int(out, info.fwd_status);
    }
    if (info.ttl != INT64_MIN) {
        out->append("; ttl=");
        append_int(out, info.ttl);
    }
    if (info.stored)
        out->append("; stored");
    if (info.collapsed)
        out->append("; collapsed");
    if (!info.detail.empty()) {
        out->append("; detail=");
        bool token =
            std::all_of(info.detail.begin(), info.detail.end(),
                        [](char c) {
                            return std::isalnum(
                                       static_cast<unsigned char>(c)) ||
                                   c == '-' || c == '_' || c == '.';
                        }) &&
            std::isalpha(static_cast<unsigned char>(info.detail[0]));
        if (!token)
            out->push_back('"');
        out->append(info.detail);
        if (!token)
            out->push_back('"');
    }
}

}  // namespace sj
