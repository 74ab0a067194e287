#include "cached/tier_codec.h"

#include <cstdint>
#include <cstring>

#include "cached/http_cache.h"

namespace sj {

namespace {

// Version 2 added the Vary fields; version 1 records read as misses.
constexpr char kMagic[4] = {'S', 'J', 'T', '2'};

void
put(std::string* out, const void* p, size_t n)
{
    out->append(static_cast<const char*>(p), n);
}

template <typename T>
bool
get(std::string_view* in, T* v) noexcept
{
    if (in->size() < sizeof(T))
        return false;
    std::memcpy(v, in->data(), sizeof(T));
    in->remove_prefix(sizeof(T));
    return true;
}

bool
get_str(std::string_view* in, std::string_view* s) noexcept
{
    uint32_t n = 0;
    if (!get(in, &n) || in->size() < n)
        return false;
    *s = in->substr(0, n);
    in->remove_prefix(n);
    return true;
}

void
put_str(std::string* out, std::string_view s)
{
    uint32_t n = static_cast<uint32_t>(s.size());
    put(out, &n, sizeof n);
    out->append(s);
}

}  // namespace

void
tier_encode_meta(const ObjectMeta& m, std::string* out)
{
    put(out, kMagic, sizeof kMagic);
    put(out, &m.status, sizeof m.status);
    put(out, &m.flags, sizeof m.flags);
    const int64_t t[] = {m.request_time,       m.response_time,
                         m.date_value,         m.age_value,
                         m.freshness_lifetime, m.stale_while_revalidate,
                         m.stale_if_error};
    put(out, t, sizeof t);
    put_str(out, m.headers);
    put_str(out, m.etag);
    put_str(out, m.last_modified);
    put_str(out, m.vary_names);
    put_str(out, m.vary_values);
}

bool
tier_decode(std::string_view in, ObjectMeta* m, std::string_view* body) noexcept
{
    if (in.size() < sizeof kMagic ||
        std::memcmp(in.data(), kMagic, sizeof kMagic) != 0)
        return false;
    in.remove_prefix(sizeof kMagic);
    int64_t t[7];
    if (!get(&in, &m->status) || !get(&in, &m->flags) || !get(&in, &t))
        return false;
    m->request_time = t[0];
    m->response_time = t[1];
    m->date_value = t[2];
    m->age_value = t[3];
    m->freshness_lifetime = t[4];
    m->stale_while_revalidate = t[5];
    m->stale_if_error = t[6];
    if (!get_str(&in, &m->headers) || !get_str(&in, &m->etag) ||
        !get_str(&in, &m->last_modified) || !get_str(&in, &m->vary_names) ||
        !get_str(&in, &m->vary_values))
        return false;
    *body = in;
    return true;
}

void
tier_variant_key(std::string_view primary, std::string_view vary_values,
                 std::string_view nonce, std::string* out)
{
    out->clear();
    variant_key(primary, vary_values, out);
    out->push_back('\x01');
    out->append(nonce);
}

std::string_view
tier_nonce(std::string_view index_headers) noexcept
{
    std::string_view v;
    if (!HeaderBlock::find(index_headers, "tier-nonce", &v))
        return {};
    return v;
}

}  // namespace sj
