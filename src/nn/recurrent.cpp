#include "xgrad/nn/recurrent.hpp"

#include <cmath>

#include <fmt/format.h>
#include <xtensor/xbuilder.hpp>

#include "detail/check.hpp"
#include "xgrad/ops/activation.hpp"
#include "xgrad/ops/elementwise.hpp"
#include "xgrad/ops/linalg.hpp"
#include "xgrad/ops/norm.hpp"
#include "xgrad/ops/shape.hpp"

namespace xgrad::nn {

template <class T>
basic_recurrent<T>::basic_recurrent(const char* type, std::size_t gates, std::size_t input_size,
                                    std::size_t hidden_size, RecurrentOptions options)
    : type_(type), gates_(gates), input_(input_size), hidden_(hidden_size), options_(options) {
    detail::check_value(input_size > 0 && hidden_size > 0 && options.num_layers > 0,
                        "{}: input_size, hidden_size and num_layers must be positive, got {}, {} and {}", type,
                        input_size, hidden_size, options.num_layers);
    detail::check_value(options.dropout >= 0 && options.dropout < 1, "{}: dropout must be in [0, 1), got {}", type,
                        options.dropout);
    const T bound = static_cast<T>(1 / std::sqrt(static_cast<double>(hidden_size)));
    auto uniform = [&](const Shape& s) { return (rand<T>(s) * T(2) - T(1)) * bound; };  // U(-1/√H, 1/√H)
    const std::size_t dirs = options.bidirectional ? 2 : 1, g = gates * hidden_size;
    for (std::size_t layer = 0; layer < options.num_layers; ++layer)
        for (std::size_t d = 0; d < dirs; ++d) {
            const std::string suffix = fmt::format("_l{}{}", layer, d ? "_reverse" : "");
            const std::size_t in = layer == 0 ? input_size : hidden_size * dirs;
            Cell c;
            c.w_ih = this->add_parameter("weight_ih" + suffix, uniform({g, in}));
            c.w_hh = this->add_parameter("weight_hh" + suffix, uniform({g, hidden_size}));
            if (options.bias) {
                c.b_ih = this->add_parameter("bias_ih" + suffix, uniform({g}));
                c.b_hh = this->add_parameter("bias_hh" + suffix, uniform({g}));
            }
            cells_.push_back(std::move(c));
        }
}

template <class T>
void basic_recurrent<T>::step(const Cell& cell, const Tensor& w_hh_t, const Tensor& xp, Tensor& h, Tensor& c) const {
    const std::size_t hs = hidden_;
    Tensor hp = matmul(h, w_hh_t);  // [N, gates · H]
    if (cell.b_hh.defined()) hp = hp + cell.b_hh;
    auto gate = [&](const Tensor& t, std::size_t k) { return slice(t, 1, k * hs, hs); };
    if (gates_ == 4) {  // LSTM: i, f, g, o
        const Tensor a = xp + hp;
        const Tensor i = sigmoid(gate(a, 0)), f = sigmoid(gate(a, 1)), g = tanh(gate(a, 2)), o = sigmoid(gate(a, 3));
        c = f * c + i * g;
        h = o * tanh(c);
    } else {  // GRU: r, z, n; the reset gate scales the hidden part of n only
        const Tensor r = sigmoid(gate(xp, 0) + gate(hp, 0)), z = sigmoid(gate(xp, 1) + gate(hp, 1));
        const Tensor n = tanh(gate(xp, 2) + r * gate(hp, 2));
        h = (T(1) - z) * n + z * h;
    }
}

template <class T>
std::pair<basic_tensor<T>, basic_recurrent_state<T>> basic_recurrent<T>::run(const Tensor& x,
                                                                             const std::optional<State>& initial) {
    const bool lstm = gates_ == 4;
    const std::size_t dirs = options_.bidirectional ? 2 : 1, layers = options_.num_layers, hs = hidden_;
    detail::check_shape(x.dim() == 3 && x.shape()[2] == input_, "{}: x must be [N, T, {}] (batch first); x {}", type_,
                        input_, x.shape());
    const std::size_t n = x.shape()[0], steps = x.shape()[1];
    const Shape state_shape{layers * dirs, n, hs};
    if (initial) {
        detail::check_shape(initial->h.shape() == state_shape && (!lstm || initial->c.shape() == state_shape),
                            "{}: the initial states must be [layers · directions, N, H] = {}; x {}, h {}{}", type_,
                            state_shape, x.shape(), initial->h.shape(),
                            lstm ? ", c " + to_string(initial->c.shape()) : "");
    }
    const auto d = [](std::size_t v) { return static_cast<std::ptrdiff_t>(v); };
    auto initial_state = [&](const Tensor& all, std::size_t k) {
        return initial ? reshape(slice(all, 0, k, 1), {d(n), d(hs)}) : zeros<T>({n, hs});
    };
    if (steps == 0) {  // nothing to read: the initial states pass through
        State s{initial ? initial->h : zeros<T>(state_shape), lstm ? (initial ? initial->c : zeros<T>(state_shape)) : Tensor()};
        return {zeros<T>({n, 0, dirs * hs}), s};
    }
    std::vector<Tensor> last_h, last_c;
    Tensor in = x;
    for (std::size_t layer = 0; layer < layers; ++layer) {
        std::vector<Tensor> outs;
        for (std::size_t dir = 0; dir < dirs; ++dir) {
            const std::size_t k = layer * dirs + dir;
            const Cell& cell = cells_[k];
            Tensor h = initial_state(initial ? initial->h : Tensor(), k);
            Tensor c = lstm ? initial_state(initial ? initial->c : Tensor(), k) : Tensor();
            // The input's projections for every step at once: [N·T, in] · W_ihᵀ + b_ih.
            const Tensor flat = reshape(in, {d(n * steps), d(in.shape()[2])});
            const Tensor w_ih_t = transpose(cell.w_ih);
            const Tensor xp = reshape(cell.b_ih.defined() ? linear(flat, w_ih_t, cell.b_ih) : linear(flat, w_ih_t),
                                      {d(n), d(steps), d(gates_ * hs)});
            const Tensor w_hh_t = transpose(cell.w_hh);
            std::vector<Tensor> hs_at(steps);
            for (std::size_t s = 0; s < steps; ++s) {
                const std::size_t t = dir ? steps - 1 - s : s;
                step(cell, w_hh_t, reshape(slice(xp, 1, t, 1), {d(n), d(gates_ * hs)}), h, c);
                hs_at[t] = h;
            }
            outs.push_back(stack(hs_at, 1));  // [N, T, H]
            last_h.push_back(h);
            if (lstm) last_c.push_back(c);
        }
        in = dirs == 2 ? concat(outs, 2) : outs[0];
        if (layer + 1 < layers && options_.dropout > 0) in = dropout(in, options_.dropout, this->is_training());
    }
    return {in, State{stack(last_h, 0), lstm ? stack(last_c, 0) : Tensor()}};
}

template class basic_recurrent<float>;
template class basic_recurrent<double>;

}  // namespace xgrad::nn
