#pragma once

// The tape's data structures. Private: users see them only through basic_tensor and record().

#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
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
    // Set by zero_grad() (the gradient holds zeros), cleared by any other write: the next
    // backward pass then moves its gradient in instead of adding it to zeros.
    bool grad_zeroed = false;
    bool requires_grad = false;
    // Bumped by every in-place access to `value` (mutable_value): an entry that recorded this
    // node at another version refuses to run its backward rule, whose saved values are stale.
    std::uint64_t version = 0;
    // Held while a backward rule adds into `grad`: threads that backpropagate into a shared
    // leaf (a parameter of two models run in parallel) must not lose each other's updates.
    std::mutex grad_mutex;
    // register_hook(): run in order on this tensor's gradient once a backward pass has
    // completed it (for a leaf: before it is added to `grad`); each may replace it.
    std::vector<typename basic_tensor<T>::GradHook> hooks;
    // The entry that produced this value; null for leaves. The output owns its entry, so a
    // graph that nobody holds any more is freed with its last tensor.
    std::shared_ptr<TapeEntry<T>> producer;

    Node() = default;
    Node(const Node&) = delete;
    Node& operator=(const Node&) = delete;
    ~Node();
};

// One recorded op. `seq` is the process-wide record order, a topological order even for a
// graph recorded partly on several threads.
template <class T>
struct TapeEntry {
    std::string op;
    std::uint64_t seq = 0;
    std::vector<std::shared_ptr<Node<T>>> inputs;
    std::vector<std::uint64_t> versions;  // of inputs[i] when recorded, then of the output
    BackwardFn<T> backward;
    bool freed = false;  // set once backward() has run it and released its inputs
};

// Frees a graph nobody holds any more without recursing through it: destroying an entry drops
// its inputs (and what its backward rule captured), whose nodes would destroy their own
// producers in turn, one stack frame pair per op, so an unreleased chain of ~100k ops
// overflowed the stack. Instead, a node destroyed while this thread is already freeing a
// graph hands its producer to the outermost destructor's list: depth two, whatever the graph.
// The thread_local is a plain pointer to that list, so nodes destroyed at thread or program
// exit never meet an already destroyed thread_local.
template <class T>
Node<T>::~Node() {
    if (!producer) return;
    using Entries = std::vector<std::shared_ptr<TapeEntry<T>>>;
    thread_local Entries* draining = nullptr;
    if (draining) {
        draining->push_back(std::move(producer));
        return;
    }
    Entries pending;
    pending.push_back(std::move(producer));
    draining = &pending;
    while (!pending.empty()) {
        auto entry = std::move(pending.back());
        pending.pop_back();
        entry.reset();  // may destroy nodes, which push their producers onto `pending`
    }
    draining = nullptr;
}

}  // namespace xgrad::detail
