#include "xgrad/tape.hpp"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <array>
#include <mutex>
#include <unordered_set>

#include <fmt/format.h>

#include <xtensor/xbuilder.hpp>

#include "detail/check.hpp"
#include "detail/node.hpp"

namespace xgrad {

namespace {

constexpr std::array<std::string_view, static_cast<std::size_t>(OpKind::count_)> kOpNames = {
    "add", "sub", "mul", "div", "neg", "exp", "log", "sqrt", "pow", "square", "abs",
    "sum", "mean", "max",
    "reshape", "permute", "concat",
    "matmul", "linear",
    "relu", "leaky_relu", "sigmoid", "tanh", "softmax", "log_softmax",
    "conv2d", "max_pool2d", "avg_pool2d",
    "batch_norm", "dropout",
    "cross_entropy", "mse_loss", "binary_cross_entropy",
};

thread_local bool t_grad_enabled = true;
std::atomic<bool> g_detect_anomaly{false};

template <class T>
bool all_finite(const xt::xarray<T>& a) {
    return std::all_of(a.data(), a.data() + a.size(), [](T v) { return std::isfinite(v); });
}

template <class T>
std::string shapes_of(const std::vector<basic_tensor<T>>& inputs) {
    std::string s;
    for (const auto& x : inputs) s += (s.empty() ? "" : ", ") + to_string(x.shape());
    return s;
}
// Record order, process-wide: backward replays entries in decreasing order. Per thread, a
// graph whose ops were recorded on two threads would be replayed in the wrong order.
std::atomic<std::uint64_t> g_next_seq{0};

}  // namespace

std::string_view op_name(OpKind kind) {
    return kOpNames.at(static_cast<std::size_t>(kind));
}

bool grad_enabled() { return t_grad_enabled; }
void detect_anomaly(bool on) { g_detect_anomaly = on; }
bool anomaly_detection() { return g_detect_anomaly; }

NoGradGuard::NoGradGuard() : previous_(t_grad_enabled) { t_grad_enabled = false; }
NoGradGuard::~NoGradGuard() { t_grad_enabled = previous_; }
EnableGradGuard::EnableGradGuard() : previous_(t_grad_enabled) { t_grad_enabled = true; }
EnableGradGuard::~EnableGradGuard() { t_grad_enabled = previous_; }

template <class T>
void record(std::string op, const std::vector<basic_tensor<T>>& inputs, basic_tensor<T>& out,
            std::type_identity_t<BackwardFn<T>> backward) {
    // Every op passes through here, recording or not: the place to catch a first NaN.
    if (g_detect_anomaly)
        detail::check_value(all_finite(out.value()), "anomaly: {} forward produced NaN or Inf; inputs {}, output {}",
                            op, shapes_of(inputs), out.shape());
    if (!t_grad_enabled) return;
    const bool any = std::any_of(inputs.begin(), inputs.end(),
                                 [](const auto& x) { return x.requires_grad(); });
    if (!any) return;
    detail::check_value(out.is_leaf(), "record({}): the output was already recorded by {}", op,
                        out.is_leaf() ? "" : out.node()->producer->op);
    for (std::size_t i = 0; i < inputs.size(); ++i)
        detail::check_value(inputs[i].node() != out.node(),
                            "record({}): the output is also input {} (a cycle); the output must be a new "
                            "tensor; inputs {}",
                            op, i, shapes_of(inputs));
    auto entry = std::make_shared<detail::TapeEntry<T>>();
    entry->op = std::move(op);
    entry->seq = g_next_seq.fetch_add(1, std::memory_order_relaxed);
    entry->inputs.reserve(inputs.size());
    entry->versions.reserve(inputs.size() + 1);
    for (const auto& x : inputs) {
        entry->inputs.push_back(x.node());
        entry->versions.push_back(x.node()->version);
    }
    entry->versions.push_back(out.node()->version);
    entry->backward = std::move(backward);
    out.node()->producer = std::move(entry);
    out.node()->requires_grad = true;
}

template <class T>
void record(std::string op, std::initializer_list<basic_tensor<T>> inputs, basic_tensor<T>& out,
            std::type_identity_t<BackwardFn<T>> backward) {
    record(std::move(op), std::vector<basic_tensor<T>>(inputs), out, std::move(backward));
}

namespace {

using detail::Node;
using detail::TapeEntry;

// Throws when an input or the output of `entry` was modified in place after the op recorded
// it: its backward rule would compute the gradient from values the forward pass never saw.
template <class T>
void check_versions(const TapeEntry<T>& entry, const Node<T>& output) {
    for (std::size_t i = 0; i <= entry.inputs.size(); ++i) {
        const Node<T>& n = i < entry.inputs.size() ? *entry.inputs[i] : output;
        detail::check_value(n.version == entry.versions[i],
                            "backward: {} of {} (shape {}) was modified after it was recorded (in-place "
                            "writes since: {}); recompute the forward pass after changing a value",
                            i < entry.inputs.size() ? fmt::format("input {}", i) : std::string("the output"),
                            entry.op, n.value.shape(), n.version - entry.versions[i]);
    }
}

// The entries reachable from `root`, each with its output node, in reverse record order.
template <class T>
std::vector<std::pair<TapeEntry<T>*, std::shared_ptr<Node<T>>>> reachable(
    const std::shared_ptr<Node<T>>& root) {
    std::vector<std::pair<TapeEntry<T>*, std::shared_ptr<Node<T>>>> order;
    std::unordered_set<const TapeEntry<T>*> seen;
    std::vector<std::shared_ptr<Node<T>>> stack{root};
    while (!stack.empty()) {
        auto node = std::move(stack.back());
        stack.pop_back();
        TapeEntry<T>* e = node->producer.get();
        if (!e || !seen.insert(e).second) continue;
        detail::check_value(!e->freed,
                            "backward: the graph through {} (output {}) was freed by an earlier "
                            "backward(); recompute the forward pass to backpropagate again",
                            e->op, node->value.shape());
        check_versions(*e, *node);
        for (const auto& in : e->inputs) stack.push_back(in);
        order.emplace_back(e, std::move(node));
    }
    std::sort(order.begin(), order.end(),
              [](const auto& a, const auto& b) { return a.first->seq > b.first->seq; });
    return order;
}

template <class T>
void accumulate_into(Node<T>& node, const xt::xarray<T>& g) {
    std::lock_guard lock(node.grad_mutex);
    if (node.grad)
        *node.grad += g;
    else
        node.grad = g;
}

template <class T>
void run_backward(const std::shared_ptr<Node<T>>& root, const xt::xarray<T>& grad_output) {
    detail::check_value(root->requires_grad,
                        "backward: the tensor of shape {} does not require grad (no input of "
                        "its graph does, or it was computed under NoGradGuard)",
                        root->value.shape());
    detail::check_shape(grad_output.shape() == root->value.shape(),
                        "backward: output gradient has shape {} but the output has shape {}",
                        grad_output.shape(), root->value.shape());
    auto order = reachable(root);  // checks that nothing was freed or modified before touching any gradient
    accumulate_into(*root, grad_output);
    for (auto& [entry, node] : order) {
        if (node->grad) {
            // The accumulators this rule adds into, each locked once (an input may come twice),
            // in address order so that two threads never wait for each other in a cycle.
            std::vector<Node<T>*> targets;
            for (const auto& in : entry->inputs)
                if (in->requires_grad) targets.push_back(in.get());
            std::sort(targets.begin(), targets.end());
            targets.erase(std::unique(targets.begin(), targets.end()), targets.end());
            std::vector<std::unique_lock<std::mutex>> locks;
            locks.reserve(targets.size());
            for (Node<T>* t : targets) locks.emplace_back(t->grad_mutex);
            std::vector<xt::xarray<T>*> slots;
            slots.reserve(entry->inputs.size());
            for (const auto& in : entry->inputs) {
                if (in->requires_grad && !in->grad) in->grad = xt::zeros<T>(in->value.shape());
                slots.push_back(in->requires_grad ? &*in->grad : nullptr);
            }
            Grads<T> grads(std::move(slots), node->value);
            entry->backward(*node->grad, grads);
            for (std::size_t i = 0; i < entry->inputs.size(); ++i) {
                const auto& in = entry->inputs[i];
                detail::check_shape(!grads[i] || grads[i]->shape() == in->value.shape(),
                                    "{} backward: the gradient of input {} has shape {} but the "
                                    "input has shape {}",
                                    entry->op, i, grads[i] ? grads[i]->shape() : Shape{},
                                    in->value.shape());
                detail::check_value(!g_detect_anomaly || !grads[i] || all_finite(*grads[i]),
                                    "anomaly: {} backward produced NaN or Inf in the gradient of input {}; "
                                    "input {}, output {}",
                                    entry->op, i, in->value.shape(), node->value.shape());
            }
        }
        node->grad.reset();  // an intermediate's gradient is used once, then released
        entry->backward = nullptr;
        entry->inputs.clear();
        entry->freed = true;
    }
}

}  // namespace

template <class T>
void basic_tensor<T>::backward() const {
    const auto& n = checked_node();
    detail::check_value(n.value.size() == 1,
                        "backward: output has shape {}; call backward(grad_output) for a "
                        "non-scalar output",
                        n.value.shape());
    backward(xt::ones<T>(n.value.shape()));
}

template <class T>
void basic_tensor<T>::backward(const array_type& grad_output) const {
    checked_node();
    run_backward(node_, grad_output);
}

#define XGRAD_INSTANTIATE(T)                                                                    \
    template void record<T>(std::string, const std::vector<basic_tensor<T>>&, basic_tensor<T>&, \
                            std::type_identity_t<BackwardFn<T>>);                              \
    template void record<T>(std::string, std::initializer_list<basic_tensor<T>>,               \
                            basic_tensor<T>&, std::type_identity_t<BackwardFn<T>>);            \
    template void basic_tensor<T>::backward() const;                                            \
    template void basic_tensor<T>::backward(const xt::xarray<T>&) const;
XGRAD_INSTANTIATE(float)
XGRAD_INSTANTIATE(double)
#undef XGRAD_INSTANTIATE

}  // namespace xgrad
