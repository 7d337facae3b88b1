#include <catch2/catch.hpp>

#include <cmath>
#include <limits>

#include <xtensor/xview.hpp>

#include "helpers.hpp"
#include "xgrad/xgrad.hpp"

using xgrad::Shape;
using xgrad::Tensor64;
using xgrad_test::array;
using xgrad_test::array_diff;
using Catch::Matchers::Contains;

TEST_CASE("index_select: entries along an axis in the given order; the gradient adds repeats", "[index]") {
    Tensor64 x(xgrad::reshape(xgrad::arange<double>(0, 12), {3, 4}).value(), true);
    const auto rows = xgrad::index_select(x, 0, {2, 0, 2});
    CHECK(array_diff(rows.value(), array({3, 4}, {8, 9, 10, 11, 0, 1, 2, 3, 8, 9, 10, 11})) == "");
    const auto cols = xgrad::index_select(x, -1, {3, 1});
    CHECK(array_diff(cols.value(), array({3, 2}, {3, 1, 7, 5, 11, 9})) == "");
    CHECK(xgrad::index_select(x, 1, {}).shape() == Shape{3, 0});
    xgrad::sum(rows).backward();
    CHECK(array_diff(x.grad(), array({3, 4}, {1, 1, 1, 1, 0, 0, 0, 0, 2, 2, 2, 2})) == "");
    REQUIRE_THROWS_AS(xgrad::index_select(x, 2, {0}), xgrad::ShapeError);
    REQUIRE_THROWS_WITH(xgrad::index_select(x, 0, {1, 3}),
                        Contains("index_select: index 3 (position 1) is outside axis 0 of size 3; x [3, 4]"));
}

TEST_CASE("index_add: src's entries added at the indices, repeats adding up", "[index]") {
    const auto x = xgrad::ones<double>({4, 2});
    const Tensor64 src(array({3, 2}, {1, 2, 3, 4, 5, 6}));
    CHECK(array_diff(xgrad::index_add(x, 0, {3, 0, 3}, src).value(), array({4, 2}, {4, 5, 1, 1, 1, 1, 7, 9})) == "");
    REQUIRE_THROWS_WITH(xgrad::index_add(x, 0, {3, 0}, src),
                        Contains("index_add: src must have x's shape with 2") && Contains("x [4, 2], src [3, 2]"));
    REQUIRE_THROWS_AS(xgrad::index_add(x, 0, {3, 0, 4}, src), xgrad::ValueError);
}

TEST_CASE("embedding: rows at the indices; gradient only into the rows used, none into padding_idx", "[index]") {
    Tensor64 w(xgrad::reshape(xgrad::arange<double>(0, 8), {4, 2}).value(), true);
    const Tensor64 idx(xt::xarray<double>{{1, 3}, {1, 0}});
    const auto e = xgrad::embedding(idx, w, 3);
    CHECK(e.shape() == Shape{2, 2, 2});
    CHECK(array_diff(e.value(), array({2, 2, 2}, {2, 3, 6, 7, 2, 3, 0, 1})) == "");  // padding rows read as stored
    xgrad::sum(e * e).backward();
    // row 1 twice (2·[2, 3] each), row 0 once, row 2 unused, row 3 the padding row
    CHECK(array_diff(w.grad(), array({4, 2}, {0, 2, 8, 12, 0, 0, 0, 0})) == "");
    CHECK(xgrad::embedding(Tensor64(xt::xarray<double>{2}), w, -2).shape() == Shape{1, 2});
    // an empty index tensor gives an empty result
    CHECK(xgrad::embedding(xgrad::zeros<double>({0, 5}), w).shape() == Shape{0, 5, 2});
}

TEST_CASE("embedding: indices that are not rows, and bad tables, are typed errors", "[index][errors]") {
    const auto w = xgrad::zeros<double>({4, 2});
    for (double bad : {4.0, -1.0, 1.5, std::nan(""), std::numeric_limits<double>::infinity()})
        REQUIRE_THROWS_AS(xgrad::embedding(Tensor64(xt::xarray<double>{0, bad}), w), xgrad::ValueError);
    REQUIRE_THROWS_WITH(xgrad::embedding(Tensor64(xt::xarray<double>{0, 4}), w),
                        Contains("embedding: index 4 (flat position 1) is not a row of weight in [0, 4)") &&
                            Contains("indices [2], weight [4, 2]"));
    REQUIRE_THROWS_AS(xgrad::embedding(Tensor64(xt::xarray<double>{0}), xgrad::zeros<double>({4})), xgrad::ShapeError);
    REQUIRE_THROWS_WITH(xgrad::embedding(Tensor64(xt::xarray<double>{0}), w, 4), Contains("padding_idx 4"));
    REQUIRE_THROWS_AS(xgrad::embedding(Tensor64(xt::xarray<double>{0}), w, -5), xgrad::ValueError);
}

TEST_CASE("nn::Embedding: N(0, 1) rows, a zero padding row that stays put under training", "[index][nn]") {
    xgrad::manual_seed(1);
    xgrad::nn::Embedding emb(10, 3, 0);
    CHECK(emb.weight.shape() == Shape{10, 3});
    CHECK(array_diff(xt::xarray<double>(xt::view(emb.weight.value(), 0)), xt::zeros<double>({3})) == "");
    CHECK(emb.named_parameters().size() == 1);
    xgrad::optim::SGD opt(emb.parameters(), {.lr = 0.5});
    const xgrad::Tensor tokens(xt::xarray<float>{{0, 4, 4}, {9, 0, 1}});
    auto loss = xgrad::sum(xgrad::square(emb(tokens)));
    loss.backward();
    opt.step();
    CHECK(array_diff(xt::xarray<double>(xt::view(emb.weight.value(), 0)), xt::zeros<double>({3})) == "");
    REQUIRE_THROWS_AS(xgrad::nn::Embedding(0, 3), xgrad::ValueError);
    REQUIRE_THROWS_AS(xgrad::nn::Embedding(4, 3, 4), xgrad::ValueError);
}

TEST_CASE("stack and split: a new axis, and consecutive parts that are slices", "[index][shape]") {
    const Tensor64 a(array({2}, {1, 2})), b(array({2}, {3, 4}));
    CHECK(array_diff(xgrad::stack(std::vector<Tensor64>{a, b}).value(), array({2, 2}, {1, 2, 3, 4})) == "");
    CHECK(array_diff(xgrad::stack(std::vector<Tensor64>{a, b}, -1).value(), array({2, 2}, {1, 3, 2, 4})) == "");
    REQUIRE_THROWS_WITH(xgrad::stack(std::vector<Tensor64>{a, xgrad::zeros<double>({3})}),
                        Contains("stack: every tensor must have the same shape; [2], [3]"));
    REQUIRE_THROWS_AS(xgrad::stack(std::vector<Tensor64>{a}, 2), xgrad::ShapeError);
    REQUIRE_THROWS_AS(xgrad::stack(std::vector<Tensor64>{}), xgrad::ValueError);

    const auto x = xgrad::reshape(xgrad::arange<double>(0, 10), {2, 5});
    const auto parts = xgrad::split(x, std::size_t{2}, 1);
    REQUIRE(parts.size() == 3);
    CHECK(parts[2].shape() == Shape{2, 1});
    CHECK(array_diff(parts[1].value(), array({2, 2}, {2, 3, 7, 8})) == "");
    const auto uneven = xgrad::split(x, std::vector<std::size_t>{4, 0, 1}, -1);
    CHECK(uneven[1].shape() == Shape{2, 0});
    CHECK(array_diff(uneven[2].value(), array({2, 1}, {4, 9})) == "");
    REQUIRE_THROWS_WITH(xgrad::split(x, std::vector<std::size_t>{2, 2}, 1),
                        Contains("split: sizes [2, 2] add up to 4, not axis 1's 5; x [2, 5]"));
    REQUIRE_THROWS_AS(xgrad::split(x, std::size_t{0}, 1), xgrad::ValueError);
}

TEST_CASE("gather and scatter_add: PyTorch's semantics along any axis, typed errors", "[index]") {
    const Tensor64 x(array({2, 3}, {1, 2, 3, 4, 5, 6}));
    const Tensor64 idx(xt::xarray<double>{{2, 0}, {1, 1}});
    CHECK(array_diff(xgrad::gather(x, 1, idx).value(), array({2, 2}, {3, 1, 5, 5})) == "");
    const Tensor64 rows(xt::xarray<double>{{1, 0, 1}});
    CHECK(array_diff(xgrad::gather(x, 0, rows).value(), array({1, 3}, {4, 2, 6})) == "");
    // along axis 0: out[i][j] = x3[idx[i][j]][j], the inner axis wrapping under the outer one
    const Tensor64 x3(array({3, 2}, {1, 2, 3, 4, 5, 6}));
    CHECK(array_diff(xgrad::gather(x3, 0, Tensor64(array({2, 2}, {2, 0, 1, 2}))).value(), array({2, 2}, {5, 2, 3, 6})) ==
          "");
    const Tensor64 src(array({2, 2}, {10, 20, 30, 40}));
    CHECK(array_diff(xgrad::scatter_add(x, 1, idx, src).value(), array({2, 3}, {21, 2, 13, 4, 75, 6})) == "");
    Tensor64 xg(x.value(), true);
    xgrad::sum(xgrad::gather(xg, 1, idx) * src).backward();
    CHECK(array_diff(xg.grad(), array({2, 3}, {20, 0, 10, 0, 70, 0})) == "");
    REQUIRE_THROWS_WITH(xgrad::gather(x, 1, Tensor64(array({2, 1}, {3, 0}))),
                        Contains("gather: index 3 (flat position 0) is outside axis 1 of size 3; x [2, 3], index [2, 1]"));
    REQUIRE_THROWS_AS(xgrad::gather(x, 1, Tensor64(xt::xarray<double>{0.5, 1})), xgrad::ShapeError);
    REQUIRE_THROWS_AS(xgrad::gather(x, 1, Tensor64(array({2, 1}, {0.5, 1}))), xgrad::ValueError);
    REQUIRE_THROWS_WITH(xgrad::gather(x, 1, xgrad::zeros<double>({3, 1})), Contains("larger than x along axis 0"));
    REQUIRE_THROWS_AS(xgrad::scatter_add(x, 1, idx, xgrad::zeros<double>({2, 3})), xgrad::ShapeError);
    CHECK(xgrad::gather(x, 0, xgrad::zeros<double>({0, 3})).shape() == Shape{0, 3});
}
