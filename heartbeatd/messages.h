#pragma once
// The messages between heartbeatd's parent and its checker child, sent over
// a SOCK_SEQPACKET socketpair: each send() is one whole message, so a child
// that dies half-way through a write can never leave the parent reading a
// torn record, and a respawned child reuses the same pair.
//
// Layout (all integers little-endian as the host writes them; both ends are
// the same binary on the same machine):
//   u16 total length (header included)   u8 type   u8 outcome
//   u32 latency in microseconds
//   u16 pool length   u16 node length   u16 reason length
//   pool bytes, node bytes, reason bytes
// Anything that does not add up is dropped and logged by the receiver.

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace sj::hb {

enum class MsgType : uint8_t {
    kHello = 1,     // child -> parent: a checker (re)started
    kResult = 2,    // child -> parent: one check finished
    kCheckNow = 3,  // parent -> child: run this node's check at once
    kPause = 4,     // parent -> child: stop checking (maintenance)
    kResume = 5,    // parent -> child: check again
};

// What one check concluded.
enum class Outcome : uint8_t {
    kPass = 0,
    kFail = 1,
    kLagging = 2,  // mysql: reachable, but replication is behind or broken
};

inline constexpr size_t kMaxMessage = 2048;
inline constexpr size_t kMaxReason = 512;

struct Message {
    MsgType type = MsgType::kResult;
    Outcome outcome = Outcome::kPass;
    uint32_t latency_us = 0;
    std::string pool;
    std::string node;
    std::string reason;  // truncated to kMaxReason by encode()
};

// The wire form of `m`; at most kMaxMessage bytes.
std::string encode(const Message& m);

// Parses one received record; false if it is malformed.
bool decode(std::string_view data, Message* out);

const char* outcome_name(Outcome o) noexcept;

}  // namespace sj::hb
