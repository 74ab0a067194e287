#include "balancerd/balance.h"

#include <algorithm>

namespace sj {

int
SmoothRoundRobin::pick(const std::vector<BalanceNode>& nodes) noexcept
{
    if (score_.size() != nodes.size())
        score_.assign(nodes.size(), 0);
    int best = -1;
    int64_t total = 0;
    for (size_t i = 0; i < nodes.size(); ++i) {
        const BalanceNode& n = nodes[i];
        if (!n.usable || n.weight <= 0)
            continue;
        score_[i] += n.weight;
        total += n.weight;
        if (best < 0 || score_[i] > score_[static_cast<size_t>(best)])
            best = static_cast<int>(i);
    }
    if (best >= 0)
        score_[static_cast<size_t>(best)] -= total;
    return best;
}

namespace {

// a.active/a.weight < b.active/b.weight, without division.
bool
less_loaded(const BalanceNode& a, const BalanceNode& b) noexcept
{
    return uint64_t{a.active} * static_cast<uint64_t>(b.weight) <
           uint64_t{b.active} * static_cast<uint64_t>(a.weight);
}

bool
candidate(const BalanceNode& n) noexcept
{
    return n.usable && n.weight > 0;
}

uint64_t
next_random(uint64_t* s) noexcept
{
    uint64_t x = *s;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    *s = x;
    return x;
}

}  // namespace

int
pick_least_conn(const std::vector<BalanceNode>& nodes, uint32_t* rotor) noexcept
{
    size_t n = nodes.size();
    if (n == 0)
        return -1;
    // Start the scan at a rotating offset so ties spread over the nodes.
    size_t start = (*rotor)++ % n;
    int best = -1;
    for (size_t k = 0; k < n; ++k) {
        size_t i = (start + k) % n;
        if (!candidate(nodes[i]))
            continue;
        if (best < 0 || less_loaded(nodes[i], nodes[static_cast<size_t>(best)]))
            best = static_cast<int>(i);
    }
    return best;
}

int
pick_two_choices(const std::vector<BalanceNode>& nodes, uint64_t* rng) noexcept
{
    // Candidates are few (a pool's nodes); collect them on the stack.
    int idx[256];
    int count = 0;
    int64_t total = 0;
    for (size_t i = 0; i < nodes.size() && count < 256; ++i) {
        if (candidate(nodes[i])) {
            idx[count++] = static_cast<int>(i);
            total += nodes[i].weight;
        }
    }
    if (count == 0)
        return -1;
    if (count == 1)
        return idx[0];
    // Each choice is drawn in proportion to weight, so that with equal
    // load the weights decide the share.
    auto draw = [&](int skip) {
        int64_t sum = total;
        if (skip >= 0)
            sum -= nodes[static_cast<size_t>(skip)].weight;
        int64_t r = static_cast<int64_t>(
            next_random(rng) % static_cast<uint64_t>(sum));
        for (int k = 0; k < count; ++k) {
            if (idx[k] == skip)
                continue;
            r -= nodes[static_cast<size_t>(idx[k])].weight;
            if (r < 0)
                return idx[k];
        }
        return idx[count - 1] == skip ? idx[0] : idx[count - 1];
    };
    int a = draw(-1);
    int b = draw(a);
    return less_loaded(nodes[static_cast<size_t>(b)],
                       nodes[static_cast<size_t>(a)])
               ? b
               : a;
}

uint64_t
balance_hash(std::string_view s) noexcept
{
    uint64_t h = 0xcbf29ce484222325ull;
    for (unsigned char c : s) {
        h ^= c;
        h *= 0x100000001b3ull;
    }
    h ^= h >> 30;
    h *= 0xbf58476d1ce4e5b9ull;
    h ^= h >> 27;
    h *= 0x94d049bb133111ebull;
    h ^= h >> 31;
    return h;
}

void
HashRing::build(const std::vector<std::string>& names,
                const std::vector<int>& weights)
{
    points_.clear();
    weights_ = weights;
    for (size_t i = 0; i < names.size(); ++i) {
        int points = std::max(1, weights[i]) * kPointsPerWeight;
        for (int p = 0; p < points; ++p) {
            std::string key = names[i] + "#" + std::to_string(p);
            points_.push_back({static_cast<uint32_t>(balance_hash(key) >> 32),
                               static_cast<uint32_t>(i)});
        }
    }
    std::sort(points_.begin(), points_.end(),
              [](const Point& a, const Point& b) {
                  return a.hash != b.hash ? a.hash < b.hash : a.node < b.node;
              });
}

int
HashRing::pick(std::string_view key,
               const std::vector<BalanceNode>& nodes) const noexcept
{
    if (points_.empty())
        return -1;
    uint32_t h = static_cast<uint32_t>(balance_hash(key) >> 32);
    auto it =
        std::lower_bound(points_.begin(), points_.end(), h,
                         [](const Point& p, uint32_t v) { return p.hash < v; });
    size_t start = static_cast<size_t>(it - points_.begin());
    for (size_t k = 0; k < points_.size(); ++k) {
        const Point& p = points_[(start + k) % points_.size()];
        if (p.node < nodes.size() && candidate(nodes[p.node]))
            return static_cast<int>(p.node);
    }
    return -1;
}

int
slowstart_weight(int weight, double since, double slowstart) noexcept
{
    if (weight <= 0 || slowstart <= 0 || since >= slowstart)
        return weight;
    if (since < 0)
        since = 0;
    int w = static_cast<int>(weight * since / slowstart);
    return std::max(1, w);
}

BalanceKind
balance_kind(const std::string& name) noexcept
{
    if (name == "leastconn")
        return BalanceKind::kLeastConn;
    if (name == "hash")
        return BalanceKind::kHash;
    if (name == "random")
        return BalanceKind::kRandom;
    return BalanceKind::kRoundRobin;
}

}  // namespace sj
