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

// softmax(q·kᵀ·scale) · v by the definition, one [L, E] x [S, E] x [S, Ev] problem, keys
// where keep(i, j) is false left out.
template <class Keep>
xt::xarray<double> naive_attention(const xt::xarray<double>& q, const xt::xarray<double>& k,
                                   const xt::xarray<double>& v, double scale, Keep keep) {
    const std::size_t l = q.shape(0), s = k.shape(0), e = q.shape(1), ev = v.shape(1);
    xt::xarray<double> out = xt::zeros<double>({l, ev});
    for (std::size_t i = 0; i < l; ++i) {
        std::vector<double> w(s, 0);
        double top = -1e300, total = 0;
        for (std::size_t j = 0; j < s; ++j) {
            for (std::size_t c = 0; c < e; ++c) w[j] += q(i, c) * k(j, c) * scale;
            if (keep(i, j)) top = std::max(top, w[j]);
        }
        for (std::size_t j = 0; j < s; ++j) total += w[j] = keep(i, j) ? std::exp(w[j] - top) : 0.0;
        for (std::size_t j = 0; j < s; ++j)
            for (std::size_t c = 0; c < ev; ++c) out(i, c) += w[j] / total * v(j, c);
    }
    return out;
}

}  // namespace

TEST_CASE("scaled_dot_product_attention: the definition, per batch entry, with masks and causal", "[attention]") {
    xgrad::manual_seed(2);
    const auto q = xgrad::randn<double>({2, 3, 4}), k = xgrad::randn<double>({2, 5, 4}), v = xgrad::randn<double>({2, 5, 3});
    const auto all = [](std::size_t, std::size_t) { return true; };
    const auto y = xgrad::scaled_dot_product_attention(q, k, v);
    CHECK(y.shape() == Shape{2, 3, 3});
    for (std::size_t b = 0; b < 2; ++b)
        CHECK(array_diff(xt::xarray<double>(xt::view(y.value(), b)),
                         naive_attention(xt::view(q.value(), b), xt::view(k.value(), b), xt::view(v.value(), b), 0.5, all),
                         1e-12) == "");
    // a mask per batch entry [2, 1, 5] and causal (top-left: query i sees keys 0..i)
    const xt::xarray<bool> mask{{{true, false, true, true, true}}, {{true, true, true, false, false}}};
    const auto ym = xgrad::scaled_dot_product_attention(q, k, v, {.causal = true, .scale = 0.3, .mask = mask});
    for (std::size_t b = 0; b < 2; ++b)
        CHECK(array_diff(xt::xarray<double>(xt::view(ym.value(), b)),
                         naive_attention(xt::view(q.value(), b), xt::view(k.value(), b), xt::view(v.value(), b), 0.3,
                                         [&](std::size_t i, std::size_t j) { return mask(b, 0, j) && j <= i; }),
                         1e-12) == "");
    // query 0 under causal attention sees key 0 only
    CHECK(array_diff(xt::xarray<double>(xt::view(xgrad::scaled_dot_product_attention(q, k, v, {.causal = true}).value(), 0, 0)),
                     xt::xarray<double>(xt::view(v.value(), 0, 0)), 1e-15) == "");
}

TEST_CASE("scaled_dot_product_attention: large scores stay finite; bad input is a typed error", "[attention][errors]") {
    const xgrad::Tensor q(xt::xarray<float>{{1e4f, -1e4f}, {3e4f, 1e4f}});
    const auto y = xgrad::scaled_dot_product_attention(q, q, q);
    for (float value : y.value()) CHECK(std::isfinite(value));
    const auto q3 = xgrad::zeros<double>({2, 3, 4});
    REQUIRE_THROWS_WITH(xgrad::scaled_dot_product_attention(q3, xgrad::zeros<double>({2, 5, 3}), xgrad::zeros<double>({2, 5, 3})),
                        Contains("scaled_dot_product_attention") && Contains("q [2, 3, 4], k [2, 5, 3], v [2, 5, 3]"));
    REQUIRE_THROWS_AS(xgrad::scaled_dot_product_attention(q3, q3, xgrad::zeros<double>({2, 4, 4})), xgrad::ShapeError);
    REQUIRE_THROWS_AS(xgrad::scaled_dot_product_attention(q3, q3, xgrad::zeros<double>({3, 4})), xgrad::ShapeError);
    const xt::xarray<bool> wrong = xt::ones<bool>({2, 2});
    REQUIRE_THROWS_WITH(xgrad::scaled_dot_product_attention(q3, q3, q3, {.mask = wrong}), Contains("mask must broadcast"));
    xt::xarray<bool> none = xt::ones<bool>({3, 3});
    xt::view(none, 1) = false;
    REQUIRE_THROWS_WITH(xgrad::scaled_dot_product_attention(q3, q3, q3, {.mask = none}),
                        Contains("query 1 of batch entry 0 has every key masked"));
    REQUIRE_THROWS_AS(xgrad::scaled_dot_product_attention(q3, q3, q3, {.dropout = 1.0}), xgrad::ValueError);
}

TEST_CASE("nn::MultiheadAttention: PyTorch's parameters, heads that match the op, causal without leaks",
          "[attention][nn]") {
    xgrad::manual_seed(4);
    xgrad::nn::MultiheadAttention64 mha(4, 2);
    std::vector<std::string> names;
    for (const auto& [name, t] : mha.named_parameters()) names.push_back(name + " " + xgrad::to_string(t.shape()));
    CHECK(names == std::vector<std::string>{"in_proj_weight [4, 12]", "in_proj_bias [12]", "out_proj.weight [4, 4]",
                                            "out_proj.bias [4]"});
    xgrad::manual_seed(5);
    auto bias = xgrad::randn<double>({12});
    mha.in_proj_bias.mutable_value() = bias.value();
    const auto x = xgrad::randn<double>({2, 3, 4});
    const auto y = mha(x);
    CHECK(y.shape() == Shape{2, 3, 4});
    // head h: attention of the projections' columns h·2 .. h·2 + 1, joined and projected
    const auto flat = xgrad::reshape(x, {6, 4});
    std::vector<Tensor64> heads;
    for (std::size_t h = 0; h < 2; ++h) {
        auto part = [&](std::size_t which) {
            const auto w = xgrad::slice(mha.in_proj_weight, 1, which * 4 + h * 2, 2);
            const auto b = xgrad::slice(mha.in_proj_bias, 0, which * 4 + h * 2, 2);
            return xgrad::reshape(xgrad::linear(flat, w, b), {2, 3, 2});
        };
        heads.push_back(xgrad::scaled_dot_product_attention(part(0), part(1), part(2)));
    }
    const auto joined = xgrad::reshape(xgrad::concat(heads, 2), {6, 4});
    const auto expect = xgrad::linear(joined, mha.out_proj->weight, mha.out_proj->bias);
    CHECK(array_diff(xgrad::reshape(y, {6, 4}).value(), expect.value(), 1e-12) == "");
    // cross-attention with other lengths, and gradients for every parameter
    const auto z = mha.attend(x, xgrad::randn<double>({2, 5, 4}), xgrad::randn<double>({2, 5, 4}));
    CHECK(z.shape() == Shape{2, 3, 4});
    xgrad::sum(z).backward();
    for (const auto& p : mha.parameters()) CHECK(p.has_grad());
    REQUIRE_THROWS_AS(xgrad::nn::MultiheadAttention(6, 4), xgrad::ValueError);
    REQUIRE_THROWS_WITH(mha(xgrad::zeros<double>({2, 3, 5})), Contains("MultiheadAttention") && Contains("[2, 3, 5]"));

    // causal: changing later positions leaves earlier outputs alone
    xgrad::nn::MultiheadAttention64 causal(4, 2, true);
    auto later = x.value();
    xt::view(later, xt::all(), 2) += 1.0;
    const auto a = causal(x), b = causal(Tensor64(later));
    CHECK(array_diff(xt::xarray<double>(xt::view(a.value(), xt::all(), xt::range(0, 2))),
                     xt::xarray<double>(xt::view(b.value(), xt::all(), xt::range(0, 2))), 1e-14) == "");
    CHECK(array_diff(a.value(), b.value(), 1e-3) != "");
}

TEST_CASE("nn::MultiheadAttention: its gradients through the heads pass gradcheck in float64", "[attention][nn]") {
    xgrad::manual_seed(6);
    auto mha = std::make_shared<xgrad::nn::MultiheadAttention64>(4, 2, true);
    const auto report = xgrad::gradcheck(
        [mha](const std::vector<Tensor64>& v) {
            mha->in_proj_weight.mutable_value() = v[1].value();
            return mha->attend(v[0], v[0], v[0]);
        },
        {xgrad::randn<double>({2, 3, 4}, true), xgrad::randn<double>({4, 12})});
    CHECK(report.passed);
    INFO(report.message);
}

TEST_CASE("nn::TransformerEncoderLayer: PyTorch's structure, dropout only in training, learns a copy task",
          "[attention][nn]") {
    xgrad::manual_seed(7);
    xgrad::nn::TransformerEncoderLayer layer(8, 2, {.dim_feedforward = 16, .dropout = 0.1});
    std::vector<std::string> children;
    for (const auto& [name, t] : layer.named_parameters()) children.push_back(name);
    CHECK(children.size() == 12);
    CHECK(children.front() == "self_attn.in_proj_weight");
    CHECK(children.back() == "norm2.bias");
    const auto x = xgrad::randn({3, 5, 8});
    layer.eval();
    CHECK(array_diff(layer(x).value(), layer(x).value()) == "");  // no dropout in eval
    layer.train();
    CHECK(array_diff(layer(x).value(), layer(x).value(), 1e-6) != "");
    REQUIRE_THROWS_AS(layer(xgrad::zeros({5, 8})), xgrad::ShapeError);

    // pre-norm, causal, no dropout: fits a fixed target in a few Adam steps
    xgrad::nn::TransformerEncoderLayer pre(8, 2, {.dim_feedforward = 16, .dropout = 0.0, .norm_first = true, .causal = true});
    xgrad::optim::Adam opt(pre.parameters(), {.lr = 1e-2});
    const auto target = xgrad::randn({3, 5, 8});
    float first = 0, last = 0;
    for (int step = 0; step < 60; ++step) {
        opt.zero_grad();
        auto loss = xgrad::mse_loss(pre(x), target);
        loss.backward();
        opt.step();
        (step == 0 ? first : last) = loss.value()();
    }
    CHECK(last < 0.5f * first);
}
