#include <catch2/catch.hpp>

#include <cmath>

#include <xtensor/xview.hpp>

#include "helpers.hpp"
#include "xgrad/xgrad.hpp"

using xgrad::Shape;
using xgrad::Tensor64;
using xgrad_test::array_diff;
using Catch::Matchers::Contains;

namespace {

double sig(double v) { return 1 / (1 + std::exp(-v)); }

// One layer, one direction, by the definition in plain loops: the output [N, T, H] and the
// final h and c. gates 4 (LSTM: i, f, g, o) or 3 (GRU: r, z, n), PyTorch's formulas.
struct Naive {
    xt::xarray<double> out, h, c;
};

Naive naive_rnn(std::size_t gates, const xt::xarray<double>& x, const xt::xarray<double>& wih,
                const xt::xarray<double>& whh, const xt::xarray<double>& bih, const xt::xarray<double>& bhh,
                xt::xarray<double> h, xt::xarray<double> c) {
    const std::size_t n = x.shape(0), steps = x.shape(1), f = x.shape(2), hs = whh.shape(1);
    Naive r{xt::zeros<double>({n, steps, hs}), {}, {}};
    for (std::size_t t = 0; t < steps; ++t) {
        xt::xarray<double> nh = h, nc = c;
        for (std::size_t b = 0; b < n; ++b) {
            std::vector<double> xp(gates * hs), hp(gates * hs);
            for (std::size_t g = 0; g < gates * hs; ++g) {
                xp[g] = bih(g);
                hp[g] = bhh(g);
                for (std::size_t i = 0; i < f; ++i) xp[g] += wih(g, i) * x(b, t, i);
                for (std::size_t i = 0; i < hs; ++i) hp[g] += whh(g, i) * h(b, i);
            }
            for (std::size_t j = 0; j < hs; ++j) {
                if (gates == 4) {
                    const double ig = sig(xp[j] + hp[j]), fg = sig(xp[hs + j] + hp[hs + j]);
                    const double gg = std::tanh(xp[2 * hs + j] + hp[2 * hs + j]), og = sig(xp[3 * hs + j] + hp[3 * hs + j]);
                    nc(b, j) = fg * c(b, j) + ig * gg;
                    nh(b, j) = og * std::tanh(nc(b, j));
                } else {
                    const double rg = sig(xp[j] + hp[j]), zg = sig(xp[hs + j] + hp[hs + j]);
                    const double ng = std::tanh(xp[2 * hs + j] + rg * hp[2 * hs + j]);
                    nh(b, j) = (1 - zg) * ng + zg * h(b, j);
                }
                r.out(b, t, j) = nh(b, j);
            }
        }
        h = nh;
        c = nc;
    }
    r.h = h;
    r.c = c;
    return r;
}

template <class M>
xt::xarray<double> param(M& m, const std::string& name) {
    for (const auto& [n, t] : m.named_parameters())
        if (n == name) return t.value();
    FAIL("no parameter " << name);
    return {};
}

// Compares each parameter's gradient of sum(out · probe) with central differences at a few entries.
template <class M>
void check_parameter_gradients(M& m, const Tensor64& x, const xt::xarray<double>& probe) {
    auto loss = [&] { return xgrad::sum(m(x) * Tensor64(probe)); };
    m.zero_grad();
    loss().backward();
    for (auto& [name, p] : m.named_parameters()) {
        INFO(name);
        for (std::size_t at : {std::size_t{0}, p.size() / 2, p.size() - 1}) {
            const double keep = p.value().data()[at], e = 1e-6;
            p.mutable_value().data()[at] = keep + e;
            const double up = loss().value()();
            p.mutable_value().data()[at] = keep - e;
            const double down = loss().value()();
            p.mutable_value().data()[at] = keep;
            CHECK(std::abs(p.grad().data()[at] - (up - down) / (2 * e)) < 1e-7);
        }
    }
}

}  // namespace

TEST_CASE("LSTM and GRU: one layer matches PyTorch's formulas, from given initial states", "[recurrent]") {
    for (std::size_t gates : {4, 3}) {
        INFO("gates " << gates);
        xgrad::manual_seed(3);
        std::shared_ptr<xgrad::nn::basic_recurrent<double>> m;
        if (gates == 4)
            m = std::make_shared<xgrad::nn::LSTM64>(3, 2);
        else
            m = std::make_shared<xgrad::nn::GRU64>(3, 2);
        CHECK(param(*m, "weight_ih_l0").shape(0) == gates * 2);
        const auto x = xgrad::randn<double>({2, 4, 3});
        const auto h0 = xgrad::randn<double>({1, 2, 2}), c0 = xgrad::randn<double>({1, 2, 2});
        const auto [out, state] = m->run(x, xgrad::nn::basic_recurrent_state<double>{h0, gates == 4 ? c0 : Tensor64()});
        const auto ref = naive_rnn(gates, x.value(), param(*m, "weight_ih_l0"), param(*m, "weight_hh_l0"),
                                   param(*m, "bias_ih_l0"), param(*m, "bias_hh_l0"), xt::view(h0.value(), 0),
                                   xt::view(c0.value(), 0));
        CHECK(array_diff(out.value(), ref.out, 1e-12) == "");
        CHECK(array_diff(xt::xarray<double>(xt::view(state.h.value(), 0)), ref.h, 1e-12) == "");
        if (gates == 4) CHECK(array_diff(xt::xarray<double>(xt::view(state.c.value(), 0)), ref.c, 1e-12) == "");
        if (gates == 3) CHECK(!state.c.defined());
    }
}

TEST_CASE("LSTM: two bidirectional layers are the cells run forwards and backwards, joined", "[recurrent]") {
    xgrad::manual_seed(4);
    xgrad::nn::LSTM64 lstm(3, 2, {.num_layers = 2, .bidirectional = true});
    std::vector<std::string> names;
    for (const auto& [name, t] : lstm.named_parameters()) names.push_back(name + " " + xgrad::to_string(t.shape()));
    CHECK(names.size() == 16);
    CHECK(names[0] == "weight_ih_l0 [8, 3]");
    CHECK(names[4] == "weight_ih_l0_reverse [8, 3]");
    CHECK(names[8] == "weight_ih_l1 [8, 4]");
    CHECK(names[15] == "bias_hh_l1_reverse [8]");
    const auto x = xgrad::randn<double>({2, 5, 3});
    const auto [out, state] = lstm.run(x);
    CHECK(out.shape() == Shape{2, 5, 4});
    CHECK(state.h.shape() == Shape{4, 2, 2});
    // layer 0 by the definition: forwards, and backwards over the reversed sequence
    const xt::xarray<double> zero = xt::zeros<double>({2, 2});
    auto cell = [&](const std::string& s, const xt::xarray<double>& in) {
        return naive_rnn(4, in, param(lstm, "weight_ih_l0" + s), param(lstm, "weight_hh_l0" + s),
                         param(lstm, "bias_ih_l0" + s), param(lstm, "bias_hh_l0" + s), zero, zero);
    };
    const auto fwd = cell("", x.value());
    const xt::xarray<double> reversed = xt::flip(x.value(), 1);
    const auto bwd = cell("_reverse", reversed);
    xt::xarray<double> layer0 = xt::concatenate(xt::xtuple(fwd.out, xt::flip(bwd.out, 1)), 2);
    // layer 1 from layer 0's joined output; the output is layer 1's
    auto cell1 = [&](const std::string& s, const xt::xarray<double>& in) {
        return naive_rnn(4, in, param(lstm, "weight_ih_l1" + s), param(lstm, "weight_hh_l1" + s),
                         param(lstm, "bias_ih_l1" + s), param(lstm, "bias_hh_l1" + s), zero, zero);
    };
    const auto fwd1 = cell1("", layer0);
    const xt::xarray<double> layer0_reversed = xt::flip(layer0, 1);
    const auto bwd1 = cell1("_reverse", layer0_reversed);
    CHECK(array_diff(out.value(), xt::concatenate(xt::xtuple(fwd1.out, xt::flip(bwd1.out, 1)), 2), 1e-12) == "");
    CHECK(array_diff(xt::xarray<double>(xt::view(state.h.value(), 1)), bwd.h, 1e-12) == "");
    CHECK(array_diff(xt::xarray<double>(xt::view(state.c.value(), 3)), bwd1.c, 1e-12) == "");
}

TEST_CASE("LSTM and GRU: backpropagation through time passes gradcheck, second order too, and weight gradients "
          "match differences",
          "[recurrent]") {
    xgrad::manual_seed(5);
    auto lstm = std::make_shared<xgrad::nn::LSTM64>(2, 2, xgrad::nn::RecurrentOptions{.num_layers = 2, .bidirectional = true});
    auto gru = std::make_shared<xgrad::nn::GRU64>(2, 3);
    const auto x = xgrad::randn<double>({2, 3, 2}, true);
    const auto h0 = xgrad::randn<double>({4, 2, 2}, true), c0 = xgrad::randn<double>({4, 2, 2}, true);
    auto lstm_fn = [lstm](const std::vector<Tensor64>& v) {
        const auto [out, s] = lstm->run(v[0], xgrad::nn::basic_recurrent_state<double>{v[1], v[2]});
        return xgrad::concat(std::vector<Tensor64>{xgrad::reshape(out, {-1}), xgrad::reshape(s.c, {-1})}, 0);
    };
    const auto r1 = xgrad::gradcheck(lstm_fn, {x, h0, c0});
    INFO(r1.message);
    CHECK(r1.passed);
    const auto r2 = xgrad::gradgradcheck(lstm_fn, {x, h0, c0});
    INFO(r2.message);
    CHECK(r2.passed);
    auto gru_fn = [gru](const std::vector<Tensor64>& v) { return gru->run(v[0]).second.h; };
    CHECK(xgrad::gradcheck(gru_fn, {x}).passed);
    CHECK(xgrad::gradgradcheck(gru_fn, {x}).passed);
    check_parameter_gradients(*lstm, x, xgrad::randn<double>({2, 3, 4}).value());
    check_parameter_gradients(*gru, x, xgrad::randn<double>({2, 3, 3}).value());
}

TEST_CASE("LSTM and GRU: bad shapes and options are typed errors; an empty sequence passes the states", "[recurrent][errors]") {
    xgrad::nn::LSTM lstm(3, 4, {.num_layers = 2});
    REQUIRE_THROWS_WITH(lstm(xgrad::zeros({2, 5, 2})), Contains("LSTM: x must be [N, T, 3]") && Contains("[2, 5, 2]"));
    REQUIRE_THROWS_AS(lstm(xgrad::zeros({5, 3})), xgrad::ShapeError);
    REQUIRE_THROWS_WITH(lstm.run(xgrad::zeros({2, 5, 3}), xgrad::nn::basic_recurrent_state<float>{xgrad::zeros({1, 2, 4}),
                                                                                                  xgrad::zeros({1, 2, 4})}),
                        Contains("[2, 2, 4]") && Contains("h [1, 2, 4]"));
    REQUIRE_THROWS_AS(xgrad::nn::GRU(0, 4), xgrad::ValueError);
    REQUIRE_THROWS_AS(xgrad::nn::GRU(3, 4, {.dropout = 1.0}), xgrad::ValueError);
    const auto [out, state] = lstm.run(xgrad::zeros({2, 0, 3}));
    CHECK(out.shape() == Shape{2, 0, 4});
    CHECK(state.h.shape() == Shape{2, 2, 4});
}

TEST_CASE("LSTM: learns to tell rising from falling sequences", "[recurrent][nn]") {
    xgrad::manual_seed(6);
    xgrad::nn::LSTM lstm(1, 8);
    xgrad::nn::Dense head(8, 2);
    auto params = lstm.parameters();
    for (const auto& p : head.parameters()) params.push_back(p);
    xgrad::optim::Adam opt(params, {.lr = 0.02});
    // 32 sequences of 6 steps: a random start, then steps up (class 1) or down (class 0)
    xt::xarray<float> xs = xt::zeros<float>({32, 6, 1}), ys = xt::zeros<float>({32});
    const auto start = xgrad::randn({32}).value();
    for (std::size_t i = 0; i < 32; ++i) {
        ys(i) = static_cast<float>(i % 2);
        for (std::size_t t = 0; t < 6; ++t) xs(i, t, 0) = start(i) + (i % 2 ? 0.3f : -0.3f) * static_cast<float>(t);
    }
    const xgrad::Tensor x(xs), y(ys);
    float loss_value = 0;
    for (int step = 0; step < 80; ++step) {
        opt.zero_grad();
        const auto h = lstm.run(x).second.h;  // [1, 32, 8]
        auto loss = xgrad::cross_entropy(head(xgrad::reshape(h, {32, 8})), y);
        loss.backward();
        opt.step();
        loss_value = loss.value()();
    }
    CHECK(loss_value < 0.1f);
}
