#include "heartbeatd/messages.h"

#include <cstring>

namespace sj::hb {

namespace {

constexpr size_t kHeader = 14;

void
put16(std::string* s, size_t v)
{
    uint16_t x = static_cast<uint16_t>(v);
    s->append(reinterpret_cast<const char*>(&x), 2);
}

uint16_t
get16(const char* p)
{
    uint16_t x;
    std::memcpy(&x, p, 2);
    return x;
}

}  // namespace

std::string
encode(const Message& m)
{
    // Names are at most 64 bytes (config), so only the reason needs a cap.
    std::string_view reason = m.reason;
    if (reason.size() > kMaxReason)
        reason = reason.substr(0, kMaxReason);
    std::string s;
    size_t total = kHeader + m.pool.size() + m.node.size() + reason.size();
    put16(&s, total);
    s += static_cast<char>(m.type);
    s += static_cast<char>(m.outcome);
    s.append(reinterpret_cast<const char*>(&m.latency_us), 4);
    put16(&s, m.pool.size());
    put16(&s, m.node.size());
    put16(&s, reason.size());
    s += m.pool;
    s += m.node;
    s += reason;
    return s;
}

bool
decode(std::string_view d, Message* out)
{
    if (d.size() < kHeader || d.size() > kMaxMessage)
        return false;
    if (get16(d.data()) != d.size())
        return false;
    auto type = static_cast<uint8_t>(d[2]);
    auto outcome = static_cast<uint8_t>(d[3]);
    if (type < 1 || type > 5 || outcome > 2)
        return false;
    size_t pl = get16(d.data() + 8), nl = get16(d.data() + 10),
           rl = get16(d.data() + 12);
    if (kHeader + pl + nl + rl != d.size())
        return false;
    out->type = static_cast<MsgType>(type);
    out->outcome = static_cast<Outcome>(outcome);
    std::memcpy(&out->latency_us, d.data() + 4, 4);
    out->pool.assign(d.substr(kHeader, pl));
    out->node.assign(d.substr(kHeader + pl, nl));
    out->reason.assign(d.substr(kHeader + pl + nl, rl));
    return true;
}

const char*
outcome_name(Outcome o) noexcept
{
    switch (o) {
    case Outcome::kPass: return "pass";
    case Outcome::kFail: return "fail";
    case Outcome::kLagging: return "lagging";
    }
    return "?";
}

}  // namespace sj::hb
