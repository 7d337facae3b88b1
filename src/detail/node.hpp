#pragma once

// The tape's data structures. Private: users see them only through basic_tensor and record().

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "xgrad/tape.hpp"
#include "xgrad/tensor.hpp"

namespace xgrad::detail {

template <class T>
struct TapeEntry;

template <class T>
struct Node {
    xt::xarray<T> value;
    std::optional<xt::xarray<T>> grad;
    bool requires_grad = false;
    // The entry that produced this value; null for leaves. The output owns its entry, so a
    // graph that nobody holds any more is freed with its last tensor.
    std::shared_ptr<TapeEntry<T>> producer;
};

// One recorded op. `seq` is the thread's record order, which is a topological order.
template <class T>
struct TapeEntry {
    std::string op;
    std::uint64_t seq = 0;
    std::vector<std::shared_ptr<Node<T>>> inputs;
    BackwardFn<T> backward;
    bool freed = false;  // set once backward() has run it and released its inputs
};

}  // namespace xgrad::detail
