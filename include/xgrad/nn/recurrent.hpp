#pragma once

// Recurrent layers, batch first, with PyTorch's gate order and parameter layout: weights
// trained in PyTorch load through .npz unchanged (names weight_ih_l0, weight_hh_l0,
// bias_ih_l0, bias_hh_l0, and _reverse for the backward direction).

#include <cstddef>
#include <optional>
#include <utility>

#include "xgrad/nn/module.hpp"

namespace xgrad::nn {

/// Options of LSTM and GRU, PyTorch's defaults.
struct RecurrentOptions {
    std::size_t num_layers = 1;
    bool bias = true;
    /// A second direction reads the sequence backwards; outputs are joined feature-wise.
    bool bidirectional = false;
    /// Dropout on each layer's output but the last's, in training mode.
    double dropout = 0.0;
};

/// The states of a recurrent layer, each [num_layers · directions, N, hidden_size] (layer-major,
/// forward direction first, as PyTorch). A GRU has no cell state (c undefined).
template <class T>
struct basic_recurrent_state {
    basic_tensor<T> h, c;
};

/// The work shared by LSTM and GRU: parameters per layer and direction, the loop over time
/// steps written in tensor ops (so backpropagation through time is the tape's, to any order).
template <class T>
class basic_recurrent : public basic_module<T> {
public:
    using Tensor = basic_tensor<T>;
    using State = basic_recurrent_state<T>;

    /// x [N, T, input_size] -> output [N, T, directions · hidden_size], the top layer's h at
    /// every step, and the final states. `initial` defaults to zeros. Throws ShapeError naming
    /// every shape when x or a state does not fit.
    std::pair<Tensor, State> run(const Tensor& x, const std::optional<State>& initial = std::nullopt);
    /// The output of run(x) alone.
    Tensor forward(const Tensor& x) override { return run(x).first; }

    std::size_t hidden_size() const { return hidden_; }

protected:
    /// gates: 4 for an LSTM (i, f, g, o), 3 for a GRU (r, z, n).
    basic_recurrent(const char* type, std::size_t gates, std::size_t input_size, std::size_t hidden_size,
                    RecurrentOptions options);

private:
    struct Cell {
        Tensor w_ih, w_hh, b_ih, b_hh;
    };
    // One step of one direction: from the input's projection at this step (x·W_ihᵀ + b_ih) and
    // the states to the new states.
    void step(const Cell& cell, const Tensor& w_hh_t, const Tensor& xp, Tensor& h, Tensor& c) const;

    const char* type_;
    std::size_t gates_, input_, hidden_;
    RecurrentOptions options_;
    std::vector<Cell> cells_;  // layer-major, forward direction first
};

/// Long short-term memory (PyTorch's nn.LSTM, batch_first = true):
/// i, f, g, o = σ, σ, tanh, σ of x·W_ihᵀ + b_ih + h·W_hhᵀ + b_hh (in that order along 4H);
/// c' = f·c + i·g, h' = o·tanh(c'). weight_ih_l{k} [4H, in], weight_hh_l{k} [4H, H], biases [4H];
/// all start U(-1/√H, 1/√H), as PyTorch's. `auto [out, state] = lstm.run(x)`; state.h and
/// state.c are [layers · directions, N, H].
template <class T>
class basic_lstm : public basic_recurrent<T> {
public:
    basic_lstm(std::size_t input_size, std::size_t hidden_size, RecurrentOptions options = {})
        : basic_recurrent<T>("LSTM", 4, input_size, hidden_size, options) {}
    std::string type_name() const override { return "LSTM"; }
};
using LSTM = basic_lstm<float>;
using LSTM64 = basic_lstm<double>;

/// Gated recurrent unit (PyTorch's nn.GRU, batch_first = true): r, z = σ(x·W_irᵀ + b_ir +
/// h·W_hrᵀ + b_hr), σ(...z...); n = tanh(x·W_inᵀ + b_in + r·(h·W_hnᵀ + b_hn));
/// h' = (1 - z)·n + z·h. Gates r, z, n in that order along 3H; parameters as LSTM's with 3H.
template <class T>
class basic_gru : public basic_recurrent<T> {
public:
    basic_gru(std::size_t input_size, std::size_t hidden_size, RecurrentOptions options = {})
        : basic_recurrent<T>("GRU", 3, input_size, hidden_size, options) {}
    std::string type_name() const override { return "GRU"; }
};
using GRU = basic_gru<float>;
using GRU64 = basic_gru<double>;

}  // namespace xgrad::nn
