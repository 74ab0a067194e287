// Unit tests for cached/http_cache: each RFC 9111 rule (and the RFC 9110
// conditional and range rules, RFC 5861, RFC 9211) with the section it
// comes from.

#include <memory>
#include <string>
#include <vector>

#include "cached/http_cache.h"
#include "common/http_parser.h"
#include "t/unit/tap.h"

using namespace sj;

namespace {

// A parsed message that lives as long as this object.
class Msg {
public:
    Msg(HttpParserType type, std::string text)
        : p_(type), text_(std::move(text))
    {
        if (type == HttpParserType::kResponse)
            p_.set_request_method("GET");
        p_.feed(text_.data(), text_.size());
        if (!p_.done())
            p_.finish();
        ok_ = p_.done();
    }
    const HttpMessage& operator*() const { return p_.message(); }
    bool ok() const { return ok_; }

private:
    HttpParser p_;
    std::string text_;
    bool ok_ = false;
};

std::unique_ptr<Msg>
req(const std::string& headers, const std::string& line = "GET /a HTTP/1.1")
{
    auto m = std::make_unique<Msg>(
        HttpParserType::kRequest,
        line + "\r\nHost: example.com\r\n" + headers + "\r\n");
    if (!m->ok())
        tap::diag("request did not parse: " + headers);
    return m;
}

std::unique_ptr<Msg>
resp(const std::string& headers, int status = 200)
{
    auto m = std::make_unique<Msg>(
        HttpParserType::kResponse,
        "HTTP/1.1 " + std::to_string(status) + " X\r\n" + headers +
            "Content-Length: 0\r\n\r\n");
    if (!m->ok())
        tap::diag("response did not parse: " + headers);
    return m;
}

CacheControl
cc(const std::string& v)
{
    CacheControl c;
    parse_cache_control(v, &c);
    return c;
}

const int64_t kDate = 784111777;  // Sun, 06 Nov 1994 08:49:37 GMT

void
test_cache_control()
{
    CacheControl c = cc("max-age=60, public");
    tap::ok(c.max_age == 60 && c.public_, "cc: max-age and public");
    c = cc("MAX-AGE=\"120\", No-Cache");
    tap::ok(c.max_age == 120 && c.no_cache,
            "cc §5.2: quoted argument and case-insensitive names");
    c = cc("private=\"Set-Cookie, X-Foo\", s-maxage=30");
    tap::ok(c.private_ && c.s_maxage == 30,
            "cc: quoted list with a comma inside stays one directive");
    c = cc("no-cache=\"Set-Cookie\"");
    tap::ok(c.no_cache && c.no_cache_fields,
            "cc §5.2.2.4: qualified no-cache is taken as no-cache");
    c = cc("max-age=60, max-age=10");
    tap::is(c.max_age, int64_t{10},
            "cc §4.2.1: duplicate max-age, the "
            "most restrictive wins");
    c = cc("max-age=abc");
    tap::is(c.max_age, int64_t{0},
            "cc §4.2.1: invalid max-age makes the response stale");
    c = cc("max-age=99999999999999999999");
    tap::is(c.max_age, kDeltaMax, "cc §1.2.2: overflow becomes 2^31");
    c = cc("foo=bar, community=\"UCI\", max-age=5");
    tap::is(c.max_age, int64_t{5}, "cc §5.2.3: unknown extensions ignored");
    c = cc("max-stale");
    tap::ok(c.max_stale_any && c.max_stale == -1, "cc: bare max-stale");
    c = cc("max-stale=30, min-fresh=5, min-fresh=10, only-if-cached");
    tap::ok(c.max_stale == 30 && c.min_fresh == 10 && c.only_if_cached,
            "cc: request directives, the larger min-fresh");
    c = cc("stale-while-revalidate=30, stale-if-error=600, must-revalidate");
    tap::ok(c.stale_while_revalidate == 30 && c.stale_if_error == 600 &&
                c.must_revalidate,
            "cc RFC 5861: stale-while-revalidate, stale-if-error");
    c = cc(" , ,no-store,, ");
    tap::ok(c.no_store, "cc: empty members tolerated");
    c = cc("");
    tap::ok(!c.no_store && c.max_age == -1, "cc: empty value, nothing set");

    auto m = resp("Cache-Control: max-age=60\r\nCache-Control: no-cache\r\n");
    c = cache_control_of(**m);
    tap::ok(c.max_age == 60 && c.no_cache, "cc: several field lines combine");
    auto r = req("Pragma: no-cache\r\n");
    tap::ok(cache_control_of(**r).no_cache,
            "cc §5.4: Pragma: no-cache without Cache-Control");
    r = req("Pragma: no-cache\r\nCache-Control: max-age=5\r\n");
    tap::ok(!cache_control_of(**r).no_cache,
            "cc §5.4: Pragma ignored when Cache-Control is present");
}

void
test_dates()
{
    int64_t t = 0;
    tap::ok(parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT", &t) && t == kDate,
            "date: IMF-fixdate");
    tap::ok(parse_http_date("Sunday, 06-Nov-94 08:49:37 GMT", &t) && t == kDate,
            "date: RFC 850");
    tap::ok(parse_http_date("Sun Nov  6 08:49:37 1994", &t) && t == kDate,
            "date: asctime");
    tap::ok(!parse_http_date("0", &t), "date: \"0\" is invalid");
    tap::ok(!parse_http_date("Sun, 06 Nov 1994 25:49:37 GMT", &t),
            "date: hour out of range");
    tap::ok(!parse_http_date("Sun, 06 Foo 1994 08:49:37 GMT", &t),
            "date: bad month");
    char b[30];
    format_http_date(kDate, b);
    tap::is(std::string(b), std::string("Sun, 06 Nov 1994 08:49:37 GMT"),
            "date: format IMF-fixdate");
    format_http_date(1700000000, b);
    tap::ok(parse_http_date(b, &t) && t == 1700000000,
            "date: format and parse round trip");
    tap::is(parse_delta_seconds("42"), int64_t{42}, "delta: 42");
    tap::is(parse_delta_seconds("-1"), int64_t{-1}, "delta: negative invalid");
}

void
test_storable()
{
    StorePolicy pol;
    auto check = [&](const std::string& reqh, const std::string& resph,
                     int status, StoreVerdict want, const std::string& name,
                     const std::string& line = "GET /a HTTP/1.1",
                     bool complete = true) {
        auto q = req(reqh, line);
        auto p = resp(resph, status);
        StoreVerdict v = storable(**q, cache_control_of(**q), **p,
                                  cache_control_of(**p), complete, pol);
        tap::is(std::string(store_verdict_name(v)),
                std::string(store_verdict_name(want)), name);
    };
    check("", "Cache-Control: max-age=60\r\n", 200, StoreVerdict::kStorable,
          "store §3: GET 200 with max-age");
    check("", "Cache-Control: max-age=60\r\n", 200, StoreVerdict::kMethod,
          "store §3: POST is not stored", "POST /a HTTP/1.1");
    check("", "Cache-Control: no-store, max-age=60\r\n", 200,
          StoreVerdict::kNoStore, "store §5.2.2.5: response no-store");
    check("Cache-Control: no-store\r\n", "Cache-Control: max-age=60\r\n", 200,
          StoreVerdict::kNoStore, "store §5.2.1.5: request no-store");
    check("", "Cache-Control: private, max-age=60\r\n", 200,
          StoreVerdict::kPrivate, "store §5.2.2.7: private in a shared cache");
    check("Authorization: Basic eDp5\r\n", "Cache-Control: max-age=60\r\n", 200,
          StoreVerdict::kAuthorization,
          "store §3.5: Authorization without permission");
    check("Authorization: Basic eDp5\r\n", "Cache-Control: public\r\n", 200,
          StoreVerdict::kStorable, "store §3.5: Authorization with public");
    check("Authorization: Basic eDp5\r\n", "Cache-Control: s-maxage=5\r\n", 200,
          StoreVerdict::kStorable, "store §3.5: Authorization with s-maxage");
    check("Authorization: Basic eDp5\r\n",
          "Cache-Control: must-revalidate, max-age=5\r\n", 200,
          StoreVerdict::kStorable,
          "store §3.5: Authorization with must-revalidate");
    check("", "Cache-Control: max-age=60\r\nSet-Cookie: a=b\r\n", 200,
          StoreVerdict::kSetCookie, "store: Set-Cookie not stored by default");
    pol.store_set_cookie = true;
    check("", "Cache-Control: max-age=60\r\nSet-Cookie: a=b\r\n", 200,
          StoreVerdict::kStorable, "store: Set-Cookie stored when configured");
    pol.store_set_cookie = false;
    check("", "Cache-Control: max-age=60\r\nVary: Accept, *\r\n", 200,
          StoreVerdict::kVaryStar, "store §4.1: Vary: * is not stored");
    check("", "Location: /b\r\n", 302, StoreVerdict::kNoFreshness,
          "store §3: 302 without explicit freshness");
    check("", "Location: /b\r\nCache-Control: max-age=60\r\n", 302,
          StoreVerdict::kStorable, "store §3: 302 with max-age");
    check("", "Last-Modified: Sun, 06 Nov 1994 08:49:37 GMT\r\n", 404,
          StoreVerdict::kStorable, "store §3: 404 is heuristically cacheable");
    check("", "Cache-Control: max-age=60\r\n", 206, StoreVerdict::kStatus,
          "store: partial content is not stored");
    check("", "Cache-Control: max-age=60\r\n", 500, StoreVerdict::kStatus,
          "store: 500 is not stored");
    check("", "Cache-Control: max-age=60\r\n", 200, StoreVerdict::kTruncated,
          "store §3.3: a truncated response never", "GET /a HTTP/1.1", false);
    check("", "Expires: Sun, 06 Nov 1994 08:49:37 GMT\r\n", 302,
          StoreVerdict::kStorable, "store §3: Expires counts as explicit");
}

void
test_freshness()
{
    FreshnessPolicy fp;
    auto life = [&](const std::string& h, int status = 200,
                    bool* heur = nullptr) {
        auto p = resp(h, status);
        return freshness_lifetime(**p, cache_control_of(**p), kDate, fp, heur);
    };
    tap::is(life("Cache-Control: max-age=60, s-maxage=600\r\n"), int64_t{600},
            "fresh §4.2.1: s-maxage before max-age");
    tap::is(life("Cache-Control: max-age=60\r\n"
                 "Expires: Sun, 06 Nov 1994 09:49:37 GMT\r\n"),
            int64_t{60}, "fresh §4.2.1: max-age before Expires");
    tap::is(life("Expires: Sun, 06 Nov 1994 09:49:37 GMT\r\n"), int64_t{3600},
            "fresh §4.2.1: Expires - Date");
    tap::is(life("Expires: 0\r\n"), int64_t{0},
            "fresh §5.3: invalid Expires is in the past");
    tap::is(life("Expires: Sun, 06 Nov 1994 07:49:37 GMT\r\n"), int64_t{0},
            "fresh: Expires before Date, zero");
    bool heur = false;
    tap::is(life("Last-Modified: Tue, 01 Nov 1994 08:49:37 GMT\r\n", 200,
                 &heur),
            int64_t{5 * 86400 / 10},
            "fresh §4.2.2: heuristic 10% of Date - Last-Modified");
    tap::ok(heur, "fresh §4.2.2: reported as heuristic");
    tap::is(life("Last-Modified: Thu, 01 Jan 1970 00:00:00 GMT\r\n"),
            int64_t{86400}, "fresh §4.2.2: heuristic capped");
    tap::is(life("Last-Modified: Sat, 27 Aug 1994 08:49:37 GMT\r\n", 302),
            int64_t{0}, "fresh §4.2.2: no heuristic for 302");
    tap::is(life(""), int64_t{0}, "fresh: nothing at all, zero");

    auto p = resp("Date: Sun, 06 Nov 1994 08:49:37 GMT\r\nAge: 30\r\n");
    tap::is(date_value(**p, 5), kDate, "age: date_value from Date");
    tap::is(age_value(**p), int64_t{30}, "age: age_value from Age");
    auto p2 = resp("Age: abc\r\n");
    tap::is(date_value(**p2, 5), int64_t{5},
            "age: date_value falls back to response_time");
    tap::is(age_value(**p2), int64_t{0}, "age: invalid Age ignored");

    // §4.2.3: apparent_age 2, corrected_age_value 30 + 1; initial 31.
    AgeInputs a{30, 1000, 1001, 1002};
    tap::is(current_age(a, 1002), int64_t{31},
            "age §4.2.3: corrected_age_value wins");
    tap::is(current_age(a, 1102), int64_t{131},
            "age §4.2.3: plus resident time");
    AgeInputs b{0, 900, 1000, 1000};
    tap::is(current_age(b, 1000), int64_t{100},
            "age §4.2.3: apparent_age from a Date in the past");
    AgeInputs c{0, 2000, 1000, 1000};
    tap::is(current_age(c, 1010), int64_t{10},
            "age §4.2.3: a Date in the future counts as 0");
    tap::is(age_to_send(a, 1002), int64_t{31}, "age §5.1: value to send");
}

void
test_reuse()
{
    StoredFreshness f;
    f.lifetime = 100;
    f.age = 50;
    CacheControl none;
    auto name = [](Reuse r) { return std::string(reuse_name(r)); };
    tap::is(name(reuse_decision(f, none)), name(Reuse::kFresh),
            "reuse §4.2: fresh");
    tap::is(name(reuse_decision(f, cc("no-cache"))), name(Reuse::kRevalidate),
            "reuse §5.2.1.4: request no-cache");
    tap::is(name(reuse_decision(f, cc("max-age=10"))), name(Reuse::kRevalidate),
            "reuse §5.2.1.1: request max-age");
    tap::is(name(reuse_decision(f, cc("max-age=60"))), name(Reuse::kFresh),
            "reuse §5.2.1.1: request max-age above the age");
    tap::is(name(reuse_decision(f, cc("min-fresh=60"))),
            name(Reuse::kRevalidate), "reuse §5.2.1.3: min-fresh");
    tap::is(name(reuse_decision(f, cc("min-fresh=40"))), name(Reuse::kFresh),
            "reuse §5.2.1.3: min-fresh satisfied");
    StoredFreshness nc = f;
    nc.no_cache = true;
    tap::is(name(reuse_decision(nc, none)), name(Reuse::kRevalidate),
            "reuse §5.2.2.4: response no-cache");
    StoredFreshness st = f;
    st.age = 130;  // 30 s stale
    tap::is(name(reuse_decision(st, none)), name(Reuse::kRevalidate),
            "reuse §4.2.4: stale is revalidated");
    tap::is(name(reuse_decision(st, cc("max-stale=60"))),
            name(Reuse::kStaleAllowed), "reuse §5.2.1.2: max-stale allows");
    tap::is(name(reuse_decision(st, cc("max-stale=10"))),
            name(Reuse::kRevalidate), "reuse §5.2.1.2: max-stale too small");
    tap::is(name(reuse_decision(st, cc("max-stale"))),
            name(Reuse::kStaleAllowed), "reuse §5.2.1.2: max-stale, any");
    StoredFreshness mr = st;
    mr.must_revalidate = true;
    tap::is(name(reuse_decision(mr, cc("max-stale"))), name(Reuse::kRevalidate),
            "reuse §5.2.2.2: must-revalidate beats max-stale");
    tap::is(stored_flags(cc("proxy-revalidate"), false) & kStoredMustRevalidate,
            kStoredMustRevalidate,
            "reuse §5.2.2.8: proxy-revalidate binds a shared cache");
    tap::is(stored_flags(cc("s-maxage=5"), false) & kStoredMustRevalidate,
            kStoredMustRevalidate, "reuse §5.2.2.10: s-maxage implies it");
    StoredFreshness swr = st;
    swr.stale_while_revalidate = 60;
    tap::is(name(reuse_decision(swr, none)), name(Reuse::kStaleWhileRevalidate),
            "reuse RFC 5861 §3: within stale-while-revalidate");
    swr.age = 200;  // 100 s stale
    tap::is(name(reuse_decision(swr, none)), name(Reuse::kRevalidate),
            "reuse RFC 5861 §3: past the window");
    tap::is(name(reuse_decision(swr, none, 120)),
            name(Reuse::kStaleWhileRevalidate),
            "reuse: the configured grace widens the window");
    tap::is(name(reuse_decision(mr, none, 120)), name(Reuse::kRevalidate),
            "reuse: grace never overrides must-revalidate");

    StoredFreshness e = st;
    tap::ok(!usable_on_error(e, none, 0), "error: stale, no window");
    e.stale_if_error = 60;
    tap::ok(usable_on_error(e, none, 0),
            "error RFC 5861 §4: within stale-if-error");
    e.stale_if_error = 10;
    tap::ok(!usable_on_error(e, none, 0), "error: past stale-if-error");
    tap::ok(usable_on_error(e, cc("stale-if-error=100"), 0),
            "error RFC 5861 §4: the request's stale-if-error");
    tap::ok(usable_on_error(e, none, 3600), "error: within the grace");
    tap::ok(!usable_on_error(mr, none, 3600),
            "error §4.2.4: must-revalidate forbids stale even on error");
    tap::ok(answer_504_only_if_cached(cc("only-if-cached"), false) &&
                !answer_504_only_if_cached(cc("only-if-cached"), true),
            "only-if-cached §5.2.1.7: 504 when not servable");
}

void
test_vary()
{
    std::string names;
    bool star;
    auto p = resp(
        "Vary: Accept-Encoding, accept-language\r\n"
        "Vary: ACCEPT-ENCODING, User-Agent\r\n");
    vary_names(**p, &names, &star);
    tap::is(names, std::string("accept-encoding,accept-language,user-agent"),
            "vary §4.1: names lowercased, combined, deduplicated");
    tap::ok(!star, "vary: no star");
    auto ps = resp("Vary: *\r\n");
    vary_names(**ps, &names, &star);
    tap::ok(star, "vary: star seen");
    auto q1 = req(
        "Accept-Encoding: gzip,  br\r\n"
        "Accept-Language: en\r\n");
    auto q2 = req(
        "accept-encoding: GZIP\r\nAccept-Encoding: br \r\n"
        "Accept-Language: en\r\n");
    std::string v1, v2;
    vary_values(**q1, "accept-encoding,accept-language", &v1);
    vary_values(**q2, "accept-encoding,accept-language", &v2);
    tap::is(v1, std::string("gzip,br\nen"), "vary §4.1: values normalised");
    tap::is(v2, v1, "vary §4.1: two lines equal one combined line");
    tap::ok(vary_matches(**q2, "accept-encoding,accept-language", v1),
            "vary: matches the stored variant");
    auto q3 = req("Accept-Encoding: gzip\r\n");
    tap::ok(!vary_matches(**q3, "accept-encoding,accept-language", v1),
            "vary: another variant does not match");
    auto q4 = req("Accept-Encoding:\r\n");
    auto q5 = req("");
    std::string v4, v5;
    vary_values(**q4, "accept-encoding", &v4);
    vary_values(**q5, "accept-encoding", &v5);
    tap::ok(v4 != v5, "vary: an empty field differs from an absent one");
    tap::ok(vary_matches(**q5, "", ""), "vary: no Vary matches everything");
    std::string key;
    variant_key("example.com/a", v1, &key);
    tap::is(key, std::string("example.com/a\0gzip,br\nen", 24),
            "vary: the variant key");
}

void
test_headers()
{
    auto p = resp(
        "Connection: X-Hop, close\r\nX-Hop: 1\r\n"
        "Keep-Alive: timeout=5\r\nAge: 10\r\n"
        "Set-Cookie: a=b\r\nETag: \"v1\"\r\nX-Keep: yes\r\n");
    std::string block;
    stored_header_block(**p, false, &block);
    tap::is(block,
            std::string("ETag: \"v1\"\r\nX-Keep: yes\r\n"
                        "Content-Length: 0\r\n"),
            "headers §3.1: hop-by-hop, Connection-listed, Age, Set-Cookie out");
    std::string_view v;
    tap::ok(HeaderBlock::find(block, "etag", &v) && v == "\"v1\"",
            "headers: find in a stored block");

    std::string cond;
    tap::ok(revalidation_headers("\"v1\"", "Sun, 06 Nov 1994 08:49:37 GMT",
                                 &cond),
            "revalidate §4.3.1: validators present");
    tap::is(cond,
            std::string("If-None-Match: \"v1\"\r\n"
                        "If-Modified-Since: Sun, 06 Nov 1994 "
                        "08:49:37 GMT\r\n"),
            "revalidate §4.3.1: If-None-Match and If-Modified-Since");
    std::string none;
    tap::ok(!revalidation_headers("", "", &none) && none.empty(),
            "revalidate: nothing to validate with");

    std::string stored =
        "Content-Type: text/html\r\nETag: \"v1\"\r\n"
        "Cache-Control: max-age=60\r\nContent-Length: 5\r\n"
        "X-Old: 1\r\n";
    auto n304 = std::make_unique<Msg>(
        HttpParserType::kResponse,
        "HTTP/1.1 304 Not Modified\r\nETag: \"v1\"\r\n"
        "Cache-Control: max-age=120\r\nContent-Length: 0\r\n"
        "Set-Cookie: s=1\r\nX-New: 2\r\n\r\n");
    std::string updated;
    apply_304(stored, **n304, false, &updated);
    tap::is(
        updated,
        std::string("Content-Type: text/html\r\nContent-Length: 5\r\n"
                    "X-Old: 1\r\nETag: \"v1\"\r\n"
                    "Cache-Control: max-age=120\r\nX-New: 2\r\n"),
        "304 §3.2: fields replaced, Content-Length and Set-Cookie kept out");
    tap::ok(not_modified_matches(**n304, "\"v1\"", ""),
            "304 §4.3.4: selected by its ETag");
    tap::ok(!not_modified_matches(**n304, "\"v2\"", ""),
            "304 §4.3.4: another ETag does not select it");
}

void
test_conditional()
{
    const char* lm = "Sun, 06 Nov 1994 08:49:37 GMT";
    const int64_t now = kDate + 1000;
    auto cond = [&](const std::string& h, std::string_view etag = "\"v1\"",
                    const std::string& line = "GET /a HTTP/1.1") {
        auto q = req(h, line);
        return evaluate_conditional(**q, etag, lm, now) ==
               Conditional::kNotModified;
    };
    tap::ok(cond("If-None-Match: \"v1\"\r\n"), "cond: If-None-Match matches");
    tap::ok(cond("If-None-Match: W/\"v1\"\r\n"),
            "cond RFC 9110 §13.1.2: weak comparison");
    tap::ok(cond("If-None-Match: \"x\", \"v1\"\r\n"), "cond: in a list");
    tap::ok(cond("If-None-Match: *\r\n"), "cond: star");
    tap::ok(!cond("If-None-Match: \"v2\"\r\n"), "cond: no match, full");
    tap::ok(!cond("If-None-Match: \"v2\"\r\n"
                  "If-Modified-Since: Sun, 06 Nov 1994 08:49:37 GMT\r\n"),
            "cond RFC 9110 §13.2.2: If-None-Match decides, not IMS");
    tap::ok(cond("If-Modified-Since: Sun, 06 Nov 1994 08:49:37 GMT\r\n"),
            "cond: If-Modified-Since equal, 304");
    tap::ok(!cond("If-Modified-Since: Sun, 06 Nov 1994 08:49:36 GMT\r\n"),
            "cond: modified since, full");
    tap::ok(!cond("If-Modified-Since: garbage\r\n"),
            "cond RFC 9110 §13.1.3: invalid date ignored");
    tap::ok(!cond("If-None-Match: \"v1\"\r\n", "\"v1\"", "POST /a HTTP/1.1"),
            "cond: only GET and HEAD");
    tap::ok(cond("If-None-Match: \"v1\"\r\n", "\"v1\"", "HEAD /a HTTP/1.1"),
            "cond: HEAD too");
    auto q = req("If-Match: \"v1\"\r\n");
    tap::ok(needs_origin_precondition(**q), "cond: If-Match goes to origin");
    tap::ok(etag_strong_equal("\"a\"", "\"a\"") &&
                !etag_strong_equal("W/\"a\"", "\"a\"") &&
                etag_weak_equal("W/\"a\"", "\"a\"") &&
                !etag_weak_equal("\"a\"", "\"b\""),
            "cond RFC 9110 §8.8.3.2: comparison table");
}

std::string
ranges_str(const std::string& v, uint64_t size, RangeResult* res)
{
    ByteRange r[kMaxRanges];
    size_t n = 0;
    *res = parse_range(v, size, r, &n);
    std::string s;
    for (size_t i = 0; i < n; ++i)
        s += std::to_string(r[i].first) + "-" + std::to_string(r[i].last) + ";";
    return s;
}

void
test_ranges()
{
    RangeResult res;
    tap::is(ranges_str("bytes=0-499", 10000, &res), std::string("0-499;"),
            "range §14.1.2: first 500 bytes");
    tap::ok(res == RangeResult::kSatisfiable, "range: satisfiable");
    tap::is(ranges_str("bytes=9500-", 10000, &res), std::string("9500-9999;"),
            "range: open-ended");
    tap::is(ranges_str("bytes=-500", 10000, &res), std::string("9500-9999;"),
            "range: suffix");
    tap::is(ranges_str("bytes=-50000", 10000, &res), std::string("0-9999;"),
            "range: suffix longer than the body");
    tap::is(ranges_str("bytes=0-0,-1", 10000, &res),
            std::string("0-0;9999-9999;"), "range: first and last byte");
    tap::is(ranges_str("bytes=500-99999", 10000, &res),
            std::string("500-9999;"), "range: last-pos clamped");
    ranges_str("bytes=10000-", 10000, &res);
    tap::ok(res == RangeResult::kUnsatisfiable,
            "range §14.1.1: first-pos past the end, 416");
    ranges_str("bytes=-0", 10000, &res);
    tap::ok(res == RangeResult::kUnsatisfiable, "range: -0 unsatisfiable");
    ranges_str("bytes=0-", 0, &res);
    tap::ok(res == RangeResult::kUnsatisfiable, "range: empty body, 416");
    tap::is(ranges_str("bytes=20000-,0-9", 10000, &res), std::string("0-9;"),
            "range: unsatisfiable members dropped");
    ranges_str("bytes=5-1", 10000, &res);
    tap::ok(res == RangeResult::kIgnore,
            "range §14.1.1: last < first, ignored");
    ranges_str("items=0-5", 10000, &res);
    tap::ok(res == RangeResult::kIgnore, "range: other unit ignored");
    ranges_str("bytes=a-b", 10000, &res);
    tap::ok(res == RangeResult::kIgnore, "range: garbage ignored");
    ranges_str("bytes=0-10,5-20", 10000, &res);
    tap::ok(res == RangeResult::kIgnore, "range: overlapping ignored");
    std::string many = "bytes=";
    for (int i = 0; i < 20; ++i)
        many += std::to_string(i * 10) + "-" + std::to_string(i * 10 + 1) + ",";
    ranges_str(many, 10000, &res);
    tap::ok(res == RangeResult::kIgnore, "range: too many ranges ignored");

    std::string h;
    ByteRange r{0, 499};
    content_range_header(&r, 10000, &h);
    tap::is(h, std::string("Content-Range: bytes 0-499/10000\r\n"),
            "range §14.4: Content-Range of a 206");
    h.clear();
    content_range_header(nullptr, 10000, &h);
    tap::is(h, std::string("Content-Range: bytes */10000\r\n"),
            "range §15.5.17: Content-Range of a 416");
    ByteRange two[2] = {{0, 1}, {8, 9}};
    std::vector<MultipartPiece> pieces;
    uint64_t len =
        multipart_byteranges(two, 2, 10, "text/plain", "XYZ", &pieces);
    std::string body = "0123456789", out;
    for (auto& p : pieces) {
        out += p.text;
        if (p.has_range)
            out += body.substr(p.range.first, p.range.last - p.range.first + 1);
    }
    tap::is(out,
            std::string("--XYZ\r\nContent-Type: text/plain\r\n"
                        "Content-Range: bytes 0-1/10\r\n\r\n01\r\n"
                        "--XYZ\r\nContent-Type: text/plain\r\n"
                        "Content-Range: bytes 8-9/10\r\n\r\n89\r\n--XYZ--\r\n"),
            "range §14.6: multipart/byteranges body");
    tap::is(len, uint64_t{out.size()}, "range: multipart length");

    auto q1 = req("If-Range: \"v1\"\r\n");
    auto q2 = req("If-Range: W/\"v1\"\r\n");
    auto q3 = req("If-Range: Sun, 06 Nov 1994 08:49:37 GMT\r\n");
    auto q4 = req("");
    const char* lm = "Sun, 06 Nov 1994 08:49:37 GMT";
    tap::ok(if_range_allows(**q1, "\"v1\"", lm), "if-range §13.1.5: etag");
    tap::ok(!if_range_allows(**q2, "\"v1\"", lm),
            "if-range §13.1.5: weak etags never match");
    tap::ok(if_range_allows(**q3, "\"v1\"", lm), "if-range: exact date");
    tap::ok(!if_range_allows(**q3, "\"v1\"", "Sun, 06 Nov 1994 08:49:38 GMT"),
            "if-range: other date, full response");
    tap::ok(if_range_allows(**q4, "", ""), "if-range: absent");
}

void
test_keys()
{
    KeyPolicy kp;
    std::string k;
    cache_key("Example.COM:80", "/a/b?x=1&a=2", kp, &k);
    tap::is(k, std::string("example.com/a/b?x=1&a=2"),
            "key: host lowercased, default port dropped, query kept");
    cache_key("example.com:8080", "/", kp, &k);
    tap::is(k, std::string("example.com:8080/"), "key: other port kept");
    cache_key("ignored", "http://Other.example/p?q", kp, &k);
    tap::is(k, std::string("other.example/p?q"),
            "key RFC 9112 §3.2.2: absolute-form target's host");
    kp.sort_query = true;
    kp.drop_params = {"utm_source", "fbclid"};
    cache_key("h", "/p?z=1&utm_source=x&a=2&fbclid=9&m", kp, &k);
    tap::is(k, std::string("h/p?a=2&m&z=1"),
            "key: parameters sorted, listed ones dropped");
    cache_key("h", "/p?utm_source=x", kp, &k);
    tap::is(k, std::string("h/p"), "key: nothing left, no '?'");

    KeyPolicy plain;
    std::vector<std::string> keys;
    auto q = req("", "POST /form HTTP/1.1");
    auto p = resp(
        "Location: http://example.com/done\r\n"
        "Content-Location: /form/1\r\n",
        303);
    invalidation_keys(**q, **p, plain, &keys);
    tap::is(keys.size(), size_t{3}, "invalidate §4.4: three URIs");
    tap::ok(keys.size() == 3 && keys[0] == "example.com/form" &&
                keys[1] == "example.com/done" &&
                keys[2] == "example.com/form/1",
            "invalidate §4.4: target, Location, Content-Location");
    keys.clear();
    auto p2 = resp("Location: http://evil.example/x\r\n", 201);
    invalidation_keys(**q, **p2, plain, &keys);
    tap::ok(keys.size() == 1,
            "invalidate §4.4: Location on another host is not invalidated");
    keys.clear();
    auto p3 = resp("", 500);
    invalidation_keys(**q, **p3, plain, &keys);
    tap::ok(keys.empty(), "invalidate §4.4: not after an error status");
    keys.clear();
    auto q2 = req("", "GET /form HTTP/1.1");
    invalidation_keys(**q2, **p, plain, &keys);
    tap::ok(keys.empty(), "invalidate §4.4: safe methods do not invalidate");
    keys.clear();
    auto q3 = req("", "DELETE /x HTTP/1.1");
    auto p4 = resp("", 204);
    invalidation_keys(**q3, **p4, plain, &keys);
    tap::ok(keys.size() == 1 && keys[0] == "example.com/x",
            "invalidate §4.4: DELETE");
}

void
test_cache_status()
{
    std::string s;
    CacheStatusInfo i;
    i.outcome = CacheOutcome::kHit;
    i.ttl = 42;
    cache_status("sunjammer", i, &s);
    tap::is(s, std::string("sunjammer; hit; ttl=42"), "status RFC 9211: hit");
    s.clear();
    CacheStatusInfo m;
    m.outcome = CacheOutcome::kMiss;
    m.fwd_status = 200;
    m.stored = true;
    cache_status("sunjammer", m, &s);
    tap::is(s, std::string("sunjammer; fwd=miss; fwd-status=200; stored"),
            "status RFC 9211: miss, stored");
    s.clear();
    CacheStatusInfo st;
    st.outcome = CacheOutcome::kStale;
    st.fwd_status = 304;
    cache_status("sunjammer", st, &s);
    tap::is(s, std::string("sunjammer; fwd=stale; fwd-status=304"),
            "status RFC 9211: revalidated");
    s.clear();
    CacheStatusInfo e;
    e.outcome = CacheOutcome::kStaleHit;
    e.ttl = -30;
    e.detail = "stale-if-error";
    cache_status("sunjammer", e, &s);
    tap::is(s, std::string("sunjammer; hit; ttl=-30; detail=stale-if-error"),
            "status RFC 9211: stale hit with detail");
    s.clear();
    CacheStatusInfo c;
    c.outcome = CacheOutcome::kMiss;
    c.collapsed = true;
    c.detail = "two words";
    cache_status("sunjammer", c, &s);
    tap::is(s,
            std::string("sunjammer; fwd=miss; collapsed; detail=\"two "
                        "words\""),
            "status RFC 9211: collapsed, quoted detail");
}

}  // namespace

int
main()
{
    test_cache_control();
    test_dates();
    test_storable();
    test_freshness();
    test_reuse();
    test_vary();
    test_headers();
    test_conditional();
    test_ranges();
    test_keys();
    test_cache_status();
    return tap::done_testing();
}
