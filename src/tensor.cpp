#include "xgrad/tensor.hpp"

#include <cmath>
#include <random>
#include <ostream>
#include <sstream>

#include <fmt/format.h>
#include <xtensor/xbuilder.hpp>

#include "detail/check.hpp"
#include "detail/node.hpp"
#include "detail/parallel.hpp"
#include "detail/random.hpp"

namespace xgrad {

std::string to_string(const Shape& shape) {
    return fmt::format("[{}]", fmt::join(shape.begin(), shape.end(), ", "));
}

template <class T>
basic_tensor<T>::basic_tensor(array_type value, bool requires_grad)
    : node_(std::make_shared<detail::Node<T>>()) {
    detail::checked_elements("tensor", value.shape(), sizeof(T));
    node_->value = std::move(value);
    node_->requires_grad = requires_grad;
}

template <class T>
detail::Node<T>& basic_tensor<T>::checked_node() const {
    detail::check_value(node_ != nullptr, "tensor: this handle is undefined (default-constructed)");
    return *node_;
}

template <class T>
const xt::xarray<T>& basic_tensor<T>::value() const {
    return checked_node().value;
}

template <class T>
xt::xarray<T>& basic_tensor<T>::mutable_value() {
    auto& n = checked_node();
    ++n.version;
    return n.value;
}

template <class T>
const Shape& basic_tensor<T>::shape() const {
    return checked_node().value.shape();
}

template <class T>
std::size_t basic_tensor<T>::dim() const {
    return checked_node().value.dimension();
}

template <class T>
std::size_t basic_tensor<T>::size() const {
    return checked_node().value.size();
}

template <class T>
bool basic_tensor<T>::requires_grad() const {
    return checked_node().requires_grad;
}

template <class T>
basic_tensor<T>& basic_tensor<T>::set_requires_grad(bool requires_grad) {
    detail::check_value(is_leaf(),
                        "set_requires_grad: only a leaf tensor can change it; this one was "
                        "produced by {} with shape {}",
                        node_->producer ? node_->producer->op : "", shape());
    node_->requires_grad = requires_grad;
    return *this;
}

template <class T>
bool basic_tensor<T>::is_leaf() const {
    return checked_node().producer == nullptr;
}

template <class T>
bool basic_tensor<T>::has_grad() const {
    return checked_node().grad.has_value();
}

template <class T>
const xt::xarray<T>& basic_tensor<T>::grad() const {
    auto& n = checked_node();
    detail::check_value(n.grad.has_value(),
                        "grad: tensor of shape {} has no gradient: {}", n.value.shape(),
                        !n.requires_grad ? "it does not require grad"
                        : n.producer     ? "only leaf tensors keep their gradient"
                                         : "backward() has not reached it yet");
    return *n.grad;
}

template <class T>
xt::xarray<T>& basic_tensor<T>::mutable_grad() {
    grad();  // throws when there is none
    node_->grad_zeroed = false;
    return *node_->grad;
}

template <class T>
void basic_tensor<T>::zero_grad() {
    auto& n = checked_node();
    if (!n.grad) return;
    // On all threads when large (conv E's input gradient is 4 MB).
    T* g = n.grad->data();
    const auto size = static_cast<std::ptrdiff_t>(n.grad->size());
#pragma omp parallel for schedule(static) if (size > detail::kParallelElements)
    for (std::ptrdiff_t i = 0; i < size; ++i) g[i] = T(0);
    n.grad_zeroed = true;
}

template <class T>
T basic_tensor<T>::item() const {
    auto& n = checked_node();
    detail::check_value(n.value.size() == 1, "item: tensor of shape {} has {} elements, not 1",
                        n.value.shape(), n.value.size());
    return n.value.data()[0];
}

template <class T>
basic_tensor<T> basic_tensor<T>::detach() const {
    return basic_tensor(checked_node().value);
}

template class basic_tensor<float>;
template class basic_tensor<double>;

namespace detail {

std::mutex& generator_mutex() {
    static std::mutex m;
    return m;
}

std::mt19937_64& generator() {
    static std::mt19937_64 g(0);
    return g;
}

}  // namespace detail

void manual_seed(std::uint64_t seed) {
    detail::with_generator([seed](std::mt19937_64& g) { g.seed(seed); });
}

std::string generator_state() {
    return detail::with_generator([](std::mt19937_64& g) {
        std::ostringstream out;
        out << g;
        return out.str();
    });
}

void set_generator_state(const std::string& state) {
    std::istringstream in(state);
    std::mt19937_64 restored;
    in >> restored;
    detail::check_value(!in.fail(), "set_generator_state: the text is not a generator state");
    // The all-zero state is a fixed point of the Mersenne Twister: it returns 0 forever, and
    // randn's rejection loop never ends. Any other state gives a non-zero word within a period
    // of 312 outputs.
    std::mt19937_64 probe = restored;
    bool degenerate = true;
    for (std::size_t i = 0; i < std::mt19937_64::state_size && degenerate; ++i) degenerate = probe() == 0;
    detail::check_value(!degenerate, "set_generator_state: the state is all zeros, from which the generator "
                                     "returns only zeros");
    detail::with_generator([&](std::mt19937_64& g) { g = restored; });
}

namespace {

// An array of `shape` holding `value` everywhere; throws for a shape too large to hold.
template <class T>
xt::xarray<T> filled(const char* op, const Shape& shape, T value) {
    return detail::allocating(op, shape, sizeof(T), [&] {
        xt::xarray<T> a = xt::empty<T>(shape);
        a.fill(value);
        return a;
    });
}

template <class T, class Dist>
basic_tensor<T> sample(const char* op, const Shape& shape, Dist dist, bool requires_grad) {
    xt::xarray<T> a = detail::allocating(op, shape, sizeof(T), [&] { return xt::xarray<T>(xt::empty<T>(shape)); });
    detail::with_generator([&](std::mt19937_64& g) {
        for (auto& v : a) v = static_cast<T>(dist(g));
    });
    return basic_tensor<T>(std::move(a), requires_grad);
}

}  // namespace

template <class T>
basic_tensor<T> zeros(const Shape& shape, bool requires_grad) {
    return basic_tensor<T>(filled<T>("zeros", shape, T(0)), requires_grad);
}

template <class T>
basic_tensor<T> ones(const Shape& shape, bool requires_grad) {
    return basic_tensor<T>(filled<T>("ones", shape, T(1)), requires_grad);
}

template <class T>
basic_tensor<T> full(const Shape& shape, T value, bool requires_grad) {
    return basic_tensor<T>(filled<T>("full", shape, value), requires_grad);
}


template <class T>
basic_tensor<T> rand(const Shape& shape, bool requires_grad) {
    return sample<T>("rand", shape, std::uniform_real_distribution<T>(0, 1), requires_grad);
}

template <class T>
basic_tensor<T> randn(const Shape& shape, bool requires_grad) {
    return sample<T>("randn", shape, std::normal_distribution<T>(0, 1), requires_grad);
}

template <class T>
basic_tensor<T> arange(T start, T stop, T step) {
    detail::check_value(step != 0 && std::isfinite(step), "arange: step must be finite and non-zero, got {}", step);
    detail::check_value(std::isfinite(start) && std::isfinite(stop), "arange: start and stop must be finite, got {} and {}",
                        start, stop);
    const double n = std::ceil((static_cast<double>(stop) - start) / step);
    detail::check_value(n < 0x1p62, "arange: from {} to {} by {} makes {} elements, more than memory holds", start,
                        stop, step, n);
    const Shape shape{n > 0 ? static_cast<std::size_t>(n) : 0};
    xt::xarray<T> a = detail::allocating("arange", shape, sizeof(T), [&] { return xt::xarray<T>(xt::empty<T>(shape)); });
    for (std::size_t i = 0; i < a.size(); ++i) a(i) = static_cast<T>(start + static_cast<double>(i) * step);
    return basic_tensor<T>(std::move(a));
}

template <class T>
basic_tensor<T> from_vector(const std::vector<T>& values, const Shape& shape, bool requires_grad) {
    std::size_t n = 1;
    for (const auto d : shape) n *= d;
    detail::check_shape(values.size() == n, "from_vector: {} values for shape {} ({} elements)", values.size(), shape, n);
    xt::xarray<T> a = xt::empty<T>(shape);
    std::copy(values.begin(), values.end(), a.data());
    return basic_tensor<T>(std::move(a), requires_grad);
}

template <class T>
std::vector<T> to_vector(const basic_tensor<T>& t) {
    return std::vector<T>(t.value().data(), t.value().data() + t.size());
}

namespace {

// Appends the values of dimension `d` at flat offset `at`, nested in brackets; `skip` shows only
// the first and last 3 of a longer dimension.
template <class T>
void print_dim(std::string& out, const T* data, const Shape& shape, std::size_t d, std::size_t at, bool skip) {
    if (d == shape.size()) {
        fmt::format_to(std::back_inserter(out), "{:.6g}", data[at]);
        return;
    }
    std::size_t stride = 1;
    for (std::size_t k = d + 1; k < shape.size(); ++k) stride *= shape[k];
    out += '[';
    const std::size_t n = shape[d];
    for (std::size_t i = 0; i < n; ++i) {
        if (skip && n > 6 && i == 3) {
            out += d + 1 == shape.size() ? "..., " : "...,\n" + std::string(d + 1, ' ');
            i = n - 3;
        }
        print_dim(out, data, shape, d + 1, at + i * stride, skip);
        if (i + 1 < n) out += d + 1 == shape.size() ? ", " : ",\n" + std::string(d + 1, ' ');
    }
    out += ']';
}

}  // namespace

template <class T>
std::string to_string(const basic_tensor<T>& t) {
    if (!t.defined()) return "tensor(undefined)";
    std::string out = fmt::format("tensor({}, {}{})\n", to_string(t.shape()), std::is_same_v<T, float> ? "float32" : "float64",
                                  t.requires_grad() ? ", requires_grad" : "");
    print_dim(out, t.value().data(), t.shape(), 0, 0, t.size() > 1000);
    return out;
}

template <class T>
std::ostream& operator<<(std::ostream& out, const basic_tensor<T>& t) {
    return out << to_string(t);
}

#define XGRAD_INSTANTIATE(T)                                         \
    template basic_tensor<T> from_vector(const std::vector<T>&, const Shape&, bool); \
    template std::vector<T> to_vector(const basic_tensor<T>&);       \
    template std::string to_string(const basic_tensor<T>&);          \
    template std::ostream& operator<<(std::ostream&, const basic_tensor<T>&); \
    template basic_tensor<T> zeros<T>(const Shape&, bool);           \
    template basic_tensor<T> ones<T>(const Shape&, bool);            \
    template basic_tensor<T> full<T>(const Shape&, T, bool);         \
    template basic_tensor<T> rand<T>(const Shape&, bool);            \
    template basic_tensor<T> randn<T>(const Shape&, bool);           \
    template basic_tensor<T> arange<T>(T, T, T);
XGRAD_INSTANTIATE(float)
XGRAD_INSTANTIATE(double)
#undef XGRAD_INSTANTIATE

}  // namespace xgrad
