#pragma once
// The balancing algorithms, pure and independent of sockets and shared
// memory so that t/unit/balance_test.cc can check them alone. A caller
// describes the nodes of one pool as a vector of BalanceNode (one entry per
// node, in the pool's order) and gets back an index into it, or -1.
//
// A node is a candidate when `usable` and its weight is above 0: the caller
// clears `usable` for nodes that are down, disabled, draining, excluded by a
// failed attempt, or at their maxconn.

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace sj {

struct BalanceNode {
    int weight = 0;       // effective weight (after slow start); 0 = none
    uint32_t active = 0;  // requests in flight on the node
    bool usable = false;
};

// Smooth weighted round robin (nginx's): each pick adds every candidate's
// weight to its running score, takes the highest, and subtracts the sum of
// weights from it. Over sum(weights) picks each node is chosen exactly
// `weight` times, interleaved rather than in bursts. State is per worker.
class SmoothRoundRobin {
public:
    // Returns an index of `nodes` or -1 when there is no candidate.
    int pick(const std::vector<BalanceNode>& nodes) noexcept;

private:
    std::vector<int64_t> score_;
};

// Weighted least connections: the candidate with the lowest active/weight,
// ties broken by rotating through the tied nodes (`*rotor` advances).
int pick_least_conn(const std::vector<BalanceNode>& nodes,
                    uint32_t* rotor) noexcept;

// Power of two random choices: two distinct random candidates, the one
// with the lower active/weight wins. `*rng` is the caller's xorshift
// state (never 0).
int pick_two_choices(const std::vector<BalanceNode>& nodes,
                     uint64_t* rng) noexcept;

// A consistent-hash ring (ketama style): each node owns
// kPointsPerWeight * weight points (at least one) placed by hashing
// "name#i", so adding or removing a node moves only the keys that fall on
// its points. A key maps to the first point at or after its hash whose
// node is a candidate, so a key whose node is down moves to the next node
// on the ring and comes back when it recovers.
class HashRing {
public:
    static constexpr int kPointsPerWeight = 16;

    // Rebuilds the ring for nodes named `names` with `weights` (same size).
    void build(const std::vector<std::string>& names,
               const std::vector<int>& weights);
    // True if build() was called with exactly these weights (the names of
    // a pool do not change within a generation).
    bool matches(const std::vector<int>& weights) const noexcept
    {
        return weights == weights_;
    }
    // The index for `key`, skipping non-candidates; -1 if none.
    int pick(std::string_view key,
             const std::vector<BalanceNode>& nodes) const noexcept;

private:
    struct Point {
        uint32_t hash;
        uint32_t node;
    };
    std::vector<Point> points_;
    std::vector<int> weights_;
};

// 64-bit FNV-1a followed by a finaliser (splitmix64's), for ring points
// and keys.
uint64_t balance_hash(std::string_view s) noexcept;

// The weight a node has `since` seconds after it came back, when slow
// start lasts `slowstart` seconds: a linear ramp from 1 (never 0, so the
// node gets traffic at once) to `weight`. Weight 0 stays 0.
int slowstart_weight(int weight, double since, double slowstart) noexcept;

// The balance algorithm names of PoolConfig::balance.
enum class BalanceKind : uint8_t { kRoundRobin, kLeastConn, kHash, kRandom };
BalanceKind balance_kind(const std::string& name) noexcept;

}  // namespace sj
