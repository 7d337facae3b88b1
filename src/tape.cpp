#include "xgrad/tape.hpp"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <array>
#include <mutex>
#include <optional>
#include <unordered_map>
#include <unordered_set>

#include <fmt/format.h>

#include <xtensor/xbuilder.hpp>

#include "detail/check.hpp"
#include "detail/node.hpp"
#include "detail/parallel.hpp"
#include "xgrad/ops/elementwise.hpp"
#include "xgrad/ops/shape.hpp"

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
    "broadcast_to", "slice", "relu_backward",
    "conv2d_input_grad", "conv2d_weight_grad",
    "max_pool2d_backward", "max_pool2d_gather", "avg_pool2d_backward",
    "conv2d_relu", "linear_relu", "relu_max_pool2d", "conv2d_relu_max_pool2d",
    "erf", "gelu", "gelu_tanh", "silu", "elu", "softplus", "hardswish",
    "maximum", "minimum", "clamp", "where",
    "layer_norm", "group_norm",
    "index_select", "index_add", "embedding", "gather", "scatter_add",
};

thread_local bool t_grad_enabled = true;
// The op whose backward rule this thread is running: an op the rule computes with reports a
// NaN or Inf as that op's backward.
thread_local const std::string* t_backward_of = nullptr;
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

// acc[k] += g[k] for k < n, on all threads when large (xtensor's += ran scalar).
template <class T>
void add_to(T* __restrict acc, const T* __restrict g, std::size_t n) {
    const auto count = static_cast<std::ptrdiff_t>(n);
#pragma omp parallel for schedule(static) if (count > detail::kParallelElements)
    for (std::ptrdiff_t k = 0; k < count; ++k) acc[k] += g[k];
}

// acc += g. With `graph`, as a recorded add (differentiable); otherwise in place when acc is
// the only handle to its buffer, else into a new one (g may be another tensor's gradient, or
// the very tensor a rule passed on twice).
template <class T>
void sum_into(basic_tensor<T>& acc, basic_tensor<T> g, bool graph) {
    if (!acc.defined()) {
        acc = std::move(g);
    } else if (graph) {
        acc = add(acc, g);
    } else if (acc.node().use_count() == 1) {
        add_to(acc.node()->value.data(), g.value().data(), g.size());
    } else {
        acc = basic_tensor<T>(xt::xarray<T>(acc.value() + g.value()));
    }
}

template <class T>
using SliceAt = typename Grads<T>::SliceAt;

// full += g, g being the gradient of the slice `at` of full (shape `shape`): `outer` runs of
// length · inner elements, each at (o · shape[axis] + start) · inner in full.
template <class T>
void add_slice_to(T* full, const Shape& shape, const xt::xarray<T>& g, SliceAt<T> at) {
    std::size_t outer = 1, inner = 1;
    for (std::size_t d = 0; d < at.axis; ++d) outer *= shape[d];
    for (std::size_t d = at.axis + 1; d < shape.size(); ++d) inner *= shape[d];
    const std::size_t run = g.shape()[at.axis] * inner;
    for (std::size_t o = 0; o < outer; ++o)
        add_to(full + (o * shape[at.axis] + at.start) * inner, g.data() + o * run, run);
}

// A slice's gradient g in its place in a tensor of `shape`, zeros elsewhere.
template <class T>
xt::xarray<T> padded(const xt::xarray<T>& g, const Shape& shape, SliceAt<T> at) {
    xt::xarray<T> full = xt::zeros<T>(shape);
    add_slice_to(full.data(), shape, g, at);
    return full;
}

// sum_into for a slice's gradient (never with create_graph: add_slice pads with ops then).
template <class T>
void sum_slice_into(basic_tensor<T>& acc, const basic_tensor<T>& g, const Shape& shape, SliceAt<T> at) {
    if (!acc.defined()) {
        acc = basic_tensor<T>(padded(g.value(), shape, at));
        return;
    }
    if (acc.node().use_count() != 1) acc = basic_tensor<T>(xt::xarray<T>(acc.value()));
    add_slice_to(acc.node()->value.data(), shape, g.value(), at);
}

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
    if (g_detect_anomaly && !all_finite(out.value())) {
        if (t_backward_of)
            throw ValueError(fmt::format("anomaly: {} backward produced NaN or Inf (in its {}); inputs {}, output {}",
                                         *t_backward_of, op, shapes_of(inputs), out.shape()));
        throw ValueError(fmt::format("anomaly: {} forward produced NaN or Inf; inputs {}, output {}", op,
                                     shapes_of(inputs), out.shape()));
    }
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
void Grads<T>::add(std::size_t i, basic_tensor<T> g) {
    detail::check_value(i < needs_.size(), "{} backward: gradient for input {} of an op with {} inputs", op_, i,
                        needs_.size());
    if (!needs_[i]) return;
    detail::check_value(g.defined(), "{} backward: the gradient of input {} is undefined", op_, i);
    detail::check_shape(g.shape() == shapes_[i],
                        "{} backward: the gradient of input {} has shape {} but the input has shape {}", op_, i,
                        g.shape(), shapes_[i]);
    if (at_[i]) {  // a slice's gradient was added first: in its place, then the sum
        sums_[i] = basic_tensor<T>(padded(sums_[i].value(), shapes_[i], *at_[i]));
        at_[i].reset();
    }
    sum_into(sums_[i], std::move(g), create_graph_);
}

template <class T>
void Grads<T>::add_slice(std::size_t i, std::size_t axis, std::size_t start, basic_tensor<T> g) {
    detail::check_value(i < needs_.size(), "{} backward: gradient for input {} of an op with {} inputs", op_, i,
                        needs_.size());
    if (!needs_[i]) return;
    detail::check_value(g.defined(), "{} backward: the gradient of input {} is undefined", op_, i);
    const Shape& full = shapes_[i];
    bool fits = axis < full.size() && g.dim() == full.size() && start <= full[axis] &&
                g.shape()[axis] <= full[axis] - start;
    for (std::size_t d = 0; fits && d < full.size(); ++d) fits = d == axis || g.shape()[d] == full[d];
    detail::check_shape(fits,
                        "{} backward: the gradient of input {} has shape {}, which does not fit at {} along "
                        "axis {} of the input's shape {}",
                        op_, i, g.shape(), start, axis, full);
    if (create_graph_) {  // padded with recorded ops, so that the sum can be differentiated again
        Shape before = full, after = full;
        before[axis] = start;
        after[axis] = full[axis] - start - g.shape()[axis];
        return add(i, concat(std::vector<basic_tensor<T>>{zeros<T>(before), g, zeros<T>(after)},
                             static_cast<std::ptrdiff_t>(axis)));
    }
    if (!sums_[i].defined()) {
        sums_[i] = std::move(g);
        at_[i] = SliceAt{axis, start};
        return;
    }
    if (at_[i]) {
        sums_[i] = basic_tensor<T>(padded(sums_[i].value(), full, *at_[i]));
        at_[i].reset();
    }
    sum_slice_into(sums_[i], g, full, SliceAt{axis, start});
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

// The entries reachable from `roots`, each with its output node, in reverse record order.
template <class T>
std::vector<std::pair<TapeEntry<T>*, std::shared_ptr<Node<T>>>> reachable(
    const std::vector<std::shared_ptr<Node<T>>>& roots) {
    std::vector<std::pair<TapeEntry<T>*, std::shared_ptr<Node<T>>>> order;
    std::unordered_set<const TapeEntry<T>*> seen;
    std::vector<std::shared_ptr<Node<T>>> stack = roots;
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

// A leaf's gradient += g (first order), locked: threads may backpropagate into one leaf. With
// `at`, g is the gradient of that slice of the leaf.
template <class T>
void accumulate_into(Node<T>& node, basic_tensor<T> g, const std::optional<SliceAt<T>>& at = std::nullopt) {
    const bool owned = g.node().use_count() == 1;
    std::lock_guard lock(node.grad_mutex);
    // Zeros from zero_grad() are replaced rather than added to: the same values, one pass fewer.
    const bool add = node.grad && !node.grad_zeroed;
    if (at && add)
        add_slice_to(node.grad->data(), node.value.shape(), g.value(), *at);
    else if (at)
        node.grad = padded(g.value(), node.value.shape(), *at);
    else if (add)
        add_to(node.grad->data(), g.value().data(), g.size());
    else if (owned)
        node.grad = std::move(g.node()->value);
    else
        node.grad = g.value();
    node.grad_zeroed = false;
}

// Runs `gradient` (a node's completed gradient) through the node's hooks, in order.
template <class T>
void run_hooks(const Node<T>& node, basic_tensor<T>& gradient) {
    for (const auto& hook : node.hooks) {
        auto replaced = hook(gradient);
        if (!replaced) continue;
        detail::check_shape(replaced->defined() && replaced->shape() == node.value.shape(),
                            "register_hook: a hook returned a gradient of shape {} for a tensor of shape {}",
                            replaced->defined() ? replaced->shape() : Shape{}, node.value.shape());
        gradient = std::move(*replaced);
    }
}

// One backward pass from `roots` (seeded with `seeds`). The gradients of intermediate tensors
// live in `pending` for the pass; a leaf's gradient goes straight into its `grad` (locked),
// except when it has hooks or when the pass captures gradients for grad(): then it is summed
// apart first. With `capture`, the gradients of those nodes are returned and no leaf's
// `grad` changes. With `create_graph`, rules run with recording on, so every gradient is
// a tensor with a graph of its own.
template <class T>
std::vector<basic_tensor<T>> run_backward(const std::vector<std::shared_ptr<Node<T>>>& roots,
                                          const std::vector<basic_tensor<T>>& seeds, bool retain_graph,
                                          bool create_graph, const std::vector<std::shared_ptr<Node<T>>>* capture) {
    for (std::size_t i = 0; i < roots.size(); ++i) {
        detail::check_value(roots[i]->requires_grad,
                            "backward: the tensor of shape {} does not require grad (no input of "
                            "its graph does, or it was computed under NoGradGuard)",
                            roots[i]->value.shape());
        detail::check_shape(seeds[i].shape() == roots[i]->value.shape(),
                            "backward: output gradient has shape {} but the output has shape {}",
                            seeds[i].shape(), roots[i]->value.shape());
    }
    auto order = reachable(roots);  // checks that nothing was freed or modified before touching any gradient
    // grad() wants some gradients only: the nodes on a path to one of them, found in record
    // order (inputs before outputs). The other inputs' gradients are never computed.
    std::unordered_set<const Node<T>*> useful;
    if (capture) {
        for (const auto& n : *capture) useful.insert(n.get());
        for (auto it = order.rbegin(); it != order.rend(); ++it)
            for (const auto& in : it->first->inputs)
                if (useful.count(in.get())) {
                    useful.insert(it->second.get());
                    break;
                }
    }
    auto wanted = [&](const Node<T>* n) { return n->requires_grad && (!capture || useful.count(n)); };
    // The gradient of every node reached so far: intermediates, and leaves summed apart.
    std::unordered_map<Node<T>*, basic_tensor<T>> pending;
    auto summed_apart = [&](Node<T>* n) { return n->producer || capture || !n->hooks.empty(); };
    std::vector<basic_tensor<T>> captured(capture ? capture->size() : 0);
    auto capture_now = [&](Node<T>* n, const basic_tensor<T>& g) {
        for (std::size_t i = 0; i < captured.size(); ++i)
            if ((*capture)[i].get() == n) captured[i] = g;
    };
    auto deliver = [&](Node<T>* n, basic_tensor<T> g, const std::optional<SliceAt<T>>& at = std::nullopt) {
        if (at && summed_apart(n))
            sum_slice_into(pending[n], g, n->value.shape(), *at);
        else if (summed_apart(n))
            sum_into(pending[n], std::move(g), create_graph);
        else
            accumulate_into(*n, std::move(g), at);
    };
    for (std::size_t i = 0; i < roots.size(); ++i) deliver(roots[i].get(), seeds[i]);
    for (auto& [entry, node] : order) {
        auto found = pending.find(node.get());
        if (found != pending.end() && !wanted(node.get())) {
            pending.erase(found);  // on no path to a gradient that grad() wants
            found = pending.end();
        }
        if (found != pending.end()) {
            basic_tensor<T> gy = std::move(found->second);
            pending.erase(found);  // an intermediate's gradient is used once, then released
            run_hooks(*node, gy);
            if (capture) capture_now(node.get(), gy);
            std::vector<Shape> shapes;
            std::vector<bool> needs;
            shapes.reserve(entry->inputs.size());
            needs.reserve(entry->inputs.size());
            for (const auto& in : entry->inputs) {
                shapes.push_back(in->value.shape());
                needs.push_back(wanted(in.get()));
            }
            Grads<T> grads(entry->op, std::move(shapes), std::move(needs), basic_tensor<T>(node), create_graph);
            {
                std::optional<NoGradGuard> off;
                std::optional<EnableGradGuard> on;
                if (create_graph) on.emplace();
                else off.emplace();
                struct Context {  // restored on the way out, exception or not
                    const std::string* previous = t_backward_of;
                    explicit Context(const std::string* op) { t_backward_of = t_backward_of ? t_backward_of : op; }
                    ~Context() { t_backward_of = previous; }
                } context(&entry->op);
                entry->backward(gy, grads);
            }
            gy = basic_tensor<T>();
            for (std::size_t i = 0; i < entry->inputs.size(); ++i) {
                basic_tensor<T>& g = grads.sum(i);
                if (!g.defined()) continue;
                detail::check_value(!g_detect_anomaly || all_finite(g.value()),
                                    "anomaly: {} backward produced NaN or Inf in the gradient of input {}; "
                                    "input {}, output {}",
                                    entry->op, i, entry->inputs[i]->value.shape(), node->value.shape());
                deliver(entry->inputs[i].get(), std::move(g), grads.slice_at(i));
            }
        }
        if (!retain_graph) {
            entry->backward = nullptr;
            entry->inputs.clear();
            entry->freed = true;
        }
    }
    // Leaves summed apart: through their hooks, then captured or added to their gradient.
    for (auto& [leaf, g] : pending) {
        if (!g.defined()) continue;
        run_hooks(*leaf, g);
        if (capture)
            capture_now(leaf, g);
        else
            accumulate_into(*leaf, std::move(g));
    }
    return captured;
}

}  // namespace

template <class T>
void basic_tensor<T>::backward(BackwardOptions options) const {
    const auto& n = checked_node();
    detail::check_value(n.value.size() == 1,
                        "backward: output has shape {}; call backward(grad_output) for a "
                        "non-scalar output",
                        n.value.shape());
    backward(xt::ones<T>(n.value.shape()), options);
}

template <class T>
void basic_tensor<T>::backward(const array_type& grad_output, BackwardOptions options) const {
    checked_node();
    run_backward<T>({node_}, {basic_tensor<T>(grad_output)}, options.retain_graph, false, nullptr);
}

template <class T>
void basic_tensor<T>::register_hook(GradHook hook) {
    checked_node();
    detail::check_value(requires_grad(), "register_hook: the tensor of shape {} does not require grad, so no "
                                         "gradient will reach it", shape());
    detail::check_value(static_cast<bool>(hook), "register_hook: the hook is empty");
    node_->hooks.push_back(std::move(hook));
}

template <class T>
void basic_tensor<T>::remove_hooks() {
    checked_node().hooks.clear();
}

template <class T>
std::vector<basic_tensor<T>> grad(const std::vector<basic_tensor<T>>& outputs,
                                  const std::vector<basic_tensor<T>>& inputs, const GradOptions<T>& options) {
    detail::check_value(!outputs.empty(), "grad: no outputs given");
    detail::check_value(options.grad_outputs.empty() || options.grad_outputs.size() == outputs.size(),
                        "grad: {} grad_outputs for {} outputs", options.grad_outputs.size(), outputs.size());
    std::vector<std::shared_ptr<Node<T>>> roots, wanted;
    std::vector<basic_tensor<T>> seeds;
    for (std::size_t i = 0; i < outputs.size(); ++i) {
        const auto& y = outputs[i];
        detail::check_value(y.defined(), "grad: output {} is undefined", i);
        if (options.grad_outputs.empty())
            detail::check_value(y.size() == 1,
                                "grad: output {} has shape {}; give grad_outputs for a non-scalar output", i,
                                y.shape());
        if (!options.grad_outputs.empty())
            detail::check_value(options.grad_outputs[i].defined(), "grad: grad_outputs[{}] is undefined", i);
        seeds.push_back(options.grad_outputs.empty() ? basic_tensor<T>(xt::xarray<T>(xt::ones<T>(y.shape())))
                                                     : options.grad_outputs[i]);
        roots.push_back(y.node());
    }
    for (std::size_t i = 0; i < inputs.size(); ++i) {
        detail::check_value(inputs[i].defined() && inputs[i].requires_grad(),
                            "grad: input {} does not require grad", i);
        wanted.push_back(inputs[i].node());
    }
    // The new graph reads the old one's tensors (a rule's saved inputs and outputs): keep it.
    auto captured = run_backward<T>(roots, seeds, options.retain_graph || options.create_graph,
                                    options.create_graph, &wanted);
    for (std::size_t i = 0; i < inputs.size(); ++i) {
        detail::check_value(captured[i].defined() || options.allow_unused,
                            "grad: input {} (shape {}) is not used by the outputs' graph; pass "
                            ".allow_unused = true to get an undefined tensor for it",
                            i, inputs[i].shape());
        // A gradient that is the very tensor passed as a grad_output, or a value the caller
        // already holds, is returned as its own tensor.
        if (captured[i].defined() && !options.create_graph && captured[i].node().use_count() > 1)
            captured[i] = basic_tensor<T>(captured[i].value());
    }
    return captured;
}

template <class T>
std::vector<basic_tensor<T>> grad(const basic_tensor<T>& output,
                                  const std::vector<std::type_identity_t<basic_tensor<T>>>& inputs,
                                  const GradOptions<std::type_identity_t<T>>& options) {
    return grad(std::vector<basic_tensor<T>>{output}, inputs, options);
}

template <class T>
std::string to_dot(const basic_tensor<T>& root) {
    std::string out = "digraph xgrad {\n  rankdir=TB;\n  node [fontname=\"Helvetica\", fontsize=10];\n";
    std::unordered_map<const Node<T>*, std::size_t> ids;
    auto tensor_id = [&](const std::shared_ptr<Node<T>>& n) {
        const auto [it, fresh] = ids.emplace(n.get(), ids.size());
        if (fresh) {
            const bool parameter = !n->producer && n->requires_grad;
            out += fmt::format("  t{} [shape=ellipse, label=\"{}{}\"{}];\n", it->second, to_string(n->value.shape()),
                               parameter ? "\\nrequires grad" : "",
                               parameter ? ", style=filled, fillcolor=\"#cde4ff\"" : "");
        }
        return it->second;
    };
    std::unordered_set<const TapeEntry<T>*> seen;
    std::vector<std::shared_ptr<Node<T>>> stack{root.node()};
    tensor_id(root.node());
    std::size_t ops = 0;
    while (!stack.empty()) {
        auto node = std::move(stack.back());
        stack.pop_back();
        const TapeEntry<T>* e = node->producer.get();
        if (!e || !seen.insert(e).second) continue;
        const std::size_t op = ops++;
        out += fmt::format("  op{} [shape=box, style=rounded, label=\"{}{}\"];\n", op, e->op,
                           e->freed ? "\\n(freed)" : "");
        out += fmt::format("  op{} -> t{};\n", op, tensor_id(node));
        for (const auto& in : e->inputs) {
            out += fmt::format("  t{} -> op{};\n", tensor_id(in), op);
            stack.push_back(in);
        }
    }
    return out + "}\n";
}

#define XGRAD_INSTANTIATE(T)                                                                    \
    template class Grads<T>;                                                                    \
    template void record<T>(std::string, const std::vector<basic_tensor<T>>&, basic_tensor<T>&, \
                            std::type_identity_t<BackwardFn<T>>);                              \
    template void record<T>(std::string, std::initializer_list<basic_tensor<T>>,               \
                            basic_tensor<T>&, std::type_identity_t<BackwardFn<T>>);            \
    template void basic_tensor<T>::backward(BackwardOptions) const;                             \
    template void basic_tensor<T>::backward(const xt::xarray<T>&, BackwardOptions) const;       \
    template void basic_tensor<T>::register_hook(GradHook);                                     \
    template void basic_tensor<T>::remove_hooks();                                              \
    template std::vector<basic_tensor<T>> grad(const std::vector<basic_tensor<T>>&,             \
                                               const std::vector<basic_tensor<T>>&, const GradOptions<T>&); \
    template std::vector<basic_tensor<T>> grad(const basic_tensor<T>&,                          \
                                               const std::vector<std::type_identity_t<basic_tensor<T>>>&, \
                                               const GradOptions<std::type_identity_t<T>>&);    \
    template std::string to_dot(const basic_tensor<T>&);
XGRAD_INSTANTIATE(float)
XGRAD_INSTANTIATE(double)
#undef XGRAD_INSTANTIATE

}  // namespace xgrad
