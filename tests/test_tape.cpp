#include <optional>
#include <thread>
#include <vector>

#include <catch2/catch.hpp>

#include "helpers.hpp"
#include "xgrad/xgrad.hpp"

using xgrad::Tensor64;
using xgrad_test::array_diff;
using Catch::Matchers::Contains;

TEST_CASE("tape: gradients accumulate on leaves until zero_grad", "[tape]") {
    Tensor64 x(xt::xarray<double>{1, 2}, true);
    xgrad::sum(x * 3.0).backward();
    xgrad::sum(x * 3.0).backward();
    CHECK(array_diff(x.grad(), xt::xarray<double>{6, 6}) == "");
    x.zero_grad();
    CHECK(array_diff(x.grad(), xt::xarray<double>{0, 0}) == "");
    xgrad::sum(x).backward();
    CHECK(array_diff(x.grad(), xt::xarray<double>{1, 1}) == "");
}

TEST_CASE("tape: a value used twice gets both contributions", "[tape]") {
    Tensor64 x(xt::xarray<double>{3.0}, true);
    auto h = x * 2.0;          // h = 2x
    auto y = h * h + h;        // y = 4x² + 2x, dy/dx = 8x + 2 = 26
    xgrad::sum(y).backward();
    CHECK(array_diff(x.grad(), xt::xarray<double>{26.0}) == "");
}

TEST_CASE("tape: a second backward over a freed graph is a clear error", "[tape][errors]") {
    Tensor64 x(xt::xarray<double>{1, 2}, true);
    auto loss = xgrad::sum(x * x);
    loss.backward();
    REQUIRE_THROWS_AS(loss.backward(), xgrad::ValueError);
    REQUIRE_THROWS_WITH(loss.backward(), Contains("freed by an earlier backward()") && Contains("sum"));
    CHECK(array_diff(x.grad(), xt::xarray<double>{2, 4}) == "");  // untouched by the failed call
}

TEST_CASE("tape: entries are freed after backward", "[tape]") {
    Tensor64 x(xt::xarray<double>{1, 2}, true);
    Tensor64 h = x * x;
    std::weak_ptr<xgrad::detail::Node<double>> intermediate = h.node();
    auto loss = xgrad::sum(h);
    h = Tensor64();
    CHECK_FALSE(intermediate.expired());  // held by the tape entry of sum
    loss.backward();
    CHECK(intermediate.expired());
}

TEST_CASE("tape: a graph nobody holds is freed with its last tensor", "[tape]") {
    Tensor64 x(xt::xarray<double>{1, 2}, true);
    std::weak_ptr<xgrad::detail::Node<double>> intermediate;
    {
        Tensor64 h = x * x;
        intermediate = h.node();
        auto loss = xgrad::sum(h);
    }
    CHECK(intermediate.expired());
}

TEST_CASE("tape: a chain of 200k ops is freed and backpropagated without deep recursion", "[tape]") {
    // Each entry owns its inputs: freeing such a chain used to recurse once per op, and an
    // 8 MiB stack overflowed near 100k ops (a segfault, when the chain was never backpropagated).
    constexpr int kOps = 200000;
    Tensor64 x(xt::xarray<double>{1.0}, true);
    std::weak_ptr<xgrad::detail::Node<double>> first;
    {
        auto y = x * 2.0;
        first = y.node();
        for (int i = 0; i < kOps; ++i) y = y + 1.0;
    }
    CHECK(first.expired());
    auto z = x * 2.0;
    for (int i = 0; i < kOps; ++i) z = z + 1.0;
    xgrad::sum(z).backward();
    CHECK(array_diff(x.grad(), xt::xarray<double>{2.0}) == "");
}

TEST_CASE("tape: NoGradGuard stops recording on this thread only", "[tape]") {
    Tensor64 x(xt::xarray<double>{1, 2}, true);
    {
        xgrad::NoGradGuard guard;
        CHECK_FALSE((x * 2.0).requires_grad());
        bool other_thread_records = false;
        std::thread t([&] { other_thread_records = (x * 2.0).requires_grad(); });
        t.join();
        CHECK(other_thread_records);
    }
    CHECK((x * 2.0).requires_grad());
}

TEST_CASE("tape: backward of a non-scalar needs an output gradient of its shape", "[tape][errors]") {
    Tensor64 x(xt::xarray<double>{1, 2, 3}, true);
    auto y = x * 2.0;
    REQUIRE_THROWS_WITH(y.backward(), Contains("[3]") && Contains("backward(grad_output)"));
    REQUIRE_THROWS_AS(y.backward(xt::xarray<double>{1, 1}), xgrad::ShapeError);
    y.backward(xt::xarray<double>{1, 0, -1});
    CHECK(array_diff(x.grad(), xt::xarray<double>{2, 0, -2}) == "");
}

TEST_CASE("tape: backward of a tensor that needs no gradient is an error", "[tape][errors]") {
    Tensor64 x(xt::xarray<double>{1, 2});
    REQUIRE_THROWS_WITH(xgrad::sum(x).backward(), Contains("does not require grad"));
}

TEST_CASE("tape: a rule that returns a gradient of the wrong shape is named", "[tape][errors]") {
    Tensor64 x(xt::xarray<double>{1, 2}, true);
    Tensor64 out(xt::xarray<double>{0.0});
    xgrad::record("bad_op", {x}, out, [](const Tensor64&, auto& grads) {
        grads.add(0, Tensor64(xt::xarray<double>{1, 2, 3}));
    });
    REQUIRE_THROWS_AS(out.backward(), xgrad::ShapeError);
    REQUIRE_THROWS_WITH(out.backward(), Contains("bad_op") && Contains("[3]") && Contains("[2]"));
}

TEST_CASE("tape: an output cannot be recorded twice", "[tape][errors]") {
    Tensor64 x(xt::xarray<double>{1, 2}, true);
    auto y = x * 2.0;
    REQUIRE_THROWS_AS(xgrad::record("again", {x}, y, [](const auto&, auto&) {}), xgrad::ValueError);
}

TEST_CASE("tape: an op records nothing when no input requires grad", "[tape]") {
    Tensor64 x(xt::xarray<double>{1, 2});
    auto y = xgrad::exp(x);
    CHECK(y.is_leaf());
    CHECK_FALSE(y.requires_grad());
}

TEST_CASE("tape: two threads backpropagate their own graphs at once", "[tape]") {
    auto run = [](double scale, xt::xarray<double>& grad) {
        Tensor64 x(xt::xarray<double>{1, 2, 3}, true);
        for (int i = 0; i < 200; ++i) xgrad::sum(xgrad::square(x) * scale).backward();
        grad = x.grad();
    };
    xt::xarray<double> g1, g2;
    std::thread t1(run, 1.0, std::ref(g1));
    std::thread t2(run, 2.0, std::ref(g2));
    t1.join();
    t2.join();
    CHECK(array_diff(g1, xt::xarray<double>{400, 800, 1200}) == "");
    CHECK(array_diff(g2, xt::xarray<double>{800, 1600, 2400}) == "");
}

TEST_CASE("tape: anomaly mode names the first op that makes NaN or Inf", "[tape][errors]") {
    Tensor64 x(xt::xarray<double>{-1, 4}, true);
    CHECK_NOTHROW(xgrad::sqrt(x));  // NaN passes silently by default
    {
        xgrad::AnomalyGuard on;  // off again even when a REQUIRE below fails
        REQUIRE_THROWS_WITH(xgrad::sqrt(x), Contains("anomaly: sqrt forward") && Contains("inputs [2]"));
        // A finite forward whose backward is not: d sqrt(y)/dy at y = 0 is infinite.
        Tensor64 z(xt::xarray<double>{0, 4}, true);
        auto loss = xgrad::sum(xgrad::sqrt(z * 1.0));
        REQUIRE_THROWS_WITH(loss.backward(), Contains("anomaly: sqrt backward"));
    }
    CHECK_NOTHROW(xgrad::sqrt(x));
}

TEST_CASE("tape: a graph recorded partly on another thread backpropagates in the right order", "[tape][threads]") {
    Tensor64 x(xt::xarray<double>{1, 2}, true);
    Tensor64 h;
    std::thread other([&] {
        // Many ops first, so that a per-thread record counter there runs far ahead of this one's.
        Tensor64 z(xt::xarray<double>{1.0}, true);
        for (int i = 0; i < 1000; ++i) z = z * 1.0;
        h = x * 3.0;
    });
    other.join();
    // A fresh thread, whose own counter would start at 0, below h's.
    std::thread fresh([&] {
        auto loss = xgrad::sum(h * h);  // 9x², d/dx = 18x
        loss.backward();
    });
    fresh.join();
    REQUIRE(x.has_grad());
    CHECK(array_diff(x.grad(), xt::xarray<double>{18, 36}) == "");
}

TEST_CASE("tape: threads backpropagating into one shared leaf lose no update", "[tape][threads]") {
    xgrad::Tensor w(xt::xarray<float>(xt::zeros<float>({64})), true);
    constexpr int kSteps = 3000;
    auto work = [&] {
        for (int i = 0; i < kSteps; ++i) xgrad::sum(w * 1.0f).backward();
    };
    std::thread a(work), b(work);
    a.join();
    b.join();
    for (const float g : w.grad()) CHECK(g == 2 * kSteps);
}

TEST_CASE("tape: record refuses an output that is one of its inputs", "[tape][errors]") {
    Tensor64 x(xt::xarray<double>{1.0}, true);
    REQUIRE_THROWS_AS(xgrad::record("loop", {x}, x, [](const auto&, auto&) {}), xgrad::ValueError);
    REQUIRE_THROWS_WITH(xgrad::record("loop", {x}, x, [](const auto&, auto&) {}), Contains("loop") && Contains("cycle"));
    CHECK(x.is_leaf());
}

TEST_CASE("tape: a value modified after an op recorded it makes backward throw, naming the op", "[tape][errors]") {
    SECTION("an input written in place") {
        Tensor64 x(xt::xarray<double>{1, 2}, true);
        auto y = xgrad::sum(x * x);
        x.mutable_value()(0) = 5;
        REQUIRE_THROWS_AS(y.backward(), xgrad::ValueError);
        REQUIRE_THROWS_WITH(y.backward(), Contains("mul") && Contains("modified after it was recorded"));
        CHECK_FALSE(x.has_grad());  // nothing was accumulated before the refusal
    }
    SECTION("an optimizer step between forward and backward") {
        xgrad::Tensor w(xt::xarray<float>{1, 2}, true);
        xgrad::optim::SGD opt({w}, {.lr = 0.1});
        xgrad::sum(w * w).backward();
        auto loss = xgrad::sum(w * w);
        opt.step();
        REQUIRE_THROWS_WITH(loss.backward(), Contains("modified after it was recorded"));
    }
    SECTION("an op's output written in place") {
        Tensor64 x(xt::xarray<double>{-1, 2}, true);
        auto y = xgrad::relu(x);
        y.mutable_value()(0) = 3;
        REQUIRE_THROWS_WITH(xgrad::sum(y).backward(), Contains("relu") && Contains("the output"));
    }
    SECTION("reading values does not count as a change") {
        Tensor64 x(xt::xarray<double>{1, 2}, true);
        auto y = xgrad::sum(x * x);
        CHECK(x.value()(0) == 1);
        y.backward();
        CHECK(array_diff(x.grad(), xt::xarray<double>{2, 4}) == "");
    }
}

TEST_CASE("tape: grad returns gradients as tensors without touching grad()", "[tape][grad]") {
    Tensor64 x(xt::xarray<double>{1, 2}, true), w(xt::xarray<double>{3, -1}, true);
    auto h = x * w;                     // intermediate
    auto loss = xgrad::sum(h * h);      // Σ (x w)², d/dx = 2 x w², d/dw = 2 w x², d/dh = 2h
    auto g = xgrad::grad(loss, {x, w, h}, {.retain_graph = true});
    REQUIRE(g.size() == 3);
    CHECK(array_diff(g[0].value(), xt::xarray<double>{18, 4}) == "");
    CHECK(array_diff(g[1].value(), xt::xarray<double>{6, -8}) == "");
    CHECK(array_diff(g[2].value(), xt::xarray<double>{6, -4}) == "");
    CHECK_FALSE(x.has_grad());
    CHECK_FALSE(w.has_grad());
    // The graph was retained: backward still works, and accumulates as usual.
    loss.backward();
    CHECK(array_diff(x.grad(), xt::xarray<double>{18, 4}) == "");
}

TEST_CASE("tape: grad with grad_outputs, several outputs and unused inputs", "[tape][grad]") {
    Tensor64 x(xt::xarray<double>{1, 2}, true), unused(xt::xarray<double>{5}, true);
    auto a = x * 2.0, b = x * x;
    auto g = xgrad::grad<double>(
        {a, b}, {x}, {.grad_outputs = {Tensor64(xt::xarray<double>{1, 1}), Tensor64(xt::xarray<double>{1, 0})}});
    CHECK(array_diff(g[0].value(), xt::xarray<double>{4, 2}) == "");  // 2 + [2x, 0]
    auto y = xgrad::sum(x);
    REQUIRE_THROWS_WITH(xgrad::grad(y, {unused}, {.retain_graph = true}), Contains("not used"));
    auto g2 = xgrad::grad(y, {x, unused}, {.allow_unused = true});
    CHECK(g2[0].defined());
    CHECK_FALSE(g2[1].defined());
    REQUIRE_THROWS_WITH(xgrad::grad(x * 1.0, {x}), Contains("grad_outputs"));
}

TEST_CASE("tape: retain_graph lets backward run twice; without it the second throws", "[tape]") {
    Tensor64 x(xt::xarray<double>{3.0}, true);
    auto y = xgrad::sum(x * x);
    y.backward(xgrad::BackwardOptions{.retain_graph = true});
    y.backward();
    CHECK(x.grad()(0) == 12);
    REQUIRE_THROWS_WITH(y.backward(), Contains("freed"));
}

TEST_CASE("tape: hooks see and may replace gradients of intermediates and leaves", "[tape][hooks]") {
    Tensor64 x(xt::xarray<double>{1, 2}, true);
    auto h = x * 3.0;
    std::vector<double> seen;
    h.register_hook([&](const Tensor64& g) -> std::optional<Tensor64> {
        seen.assign(g.value().begin(), g.value().end());
        return g * 10.0;  // scale what flows on to x
    });
    int leaf_calls = 0;
    x.register_hook([&](const Tensor64&) -> std::optional<Tensor64> {
        ++leaf_calls;
        return std::nullopt;
    });
    auto y = xgrad::sum(h * h);  // dy/dh = 2h = [6, 12]
    y.backward();
    CHECK(seen == std::vector<double>{6, 12});
    CHECK(array_diff(x.grad(), xt::xarray<double>{180, 360}) == "");  // 3 · 10 · 2h
    CHECK(leaf_calls == 1);  // once per pass, with the summed gradient
    Tensor64 c(xt::xarray<double>{1.0});
    REQUIRE_THROWS_AS(c.register_hook([](const Tensor64&) { return std::optional<Tensor64>{}; }), xgrad::ValueError);
    x.register_hook([](const Tensor64&) { return std::optional(Tensor64(xt::xarray<double>{1, 2, 3})); });
    REQUIRE_THROWS_WITH(xgrad::sum(x * 1.0).backward(), Contains("register_hook") && Contains("[3]"));
    x.remove_hooks();
}

TEST_CASE("tape: to_dot writes the recorded graph as Graphviz text", "[tape][dot]") {
    Tensor64 x(xt::xarray<double>{{1, 2}}, true), w(xgrad_test::column({1, 2}), true);
    auto loss = xgrad::sum(xgrad::relu(xgrad::matmul(x, w)));
    const std::string dot = xgrad::to_dot(loss);
    CHECK_THAT(dot, Contains("digraph xgrad") && Contains("matmul") && Contains("relu") && Contains("sum") &&
                        Contains("[1, 2]") && Contains("[2, 1]") && Contains("requires grad"));
    CHECK(dot.back() == '\n');
}

TEST_CASE("tape: a gradient after zero_grad() replaces the zeros, one written since is added to", "[tape]") {
    Tensor64 x(xt::xarray<double>{1, 2}, true);
    xgrad::sum(x * x).backward();
    x.zero_grad();
    xgrad::sum(x * x).backward();
    CHECK(array_diff(x.grad(), xt::xarray<double>{2, 4}) == "");
    xgrad::sum(x * 3.0).backward();  // accumulates as usual
    CHECK(array_diff(x.grad(), xt::xarray<double>{5, 7}) == "");
    x.zero_grad();
    x.mutable_grad() += 1.0;  // written after zero_grad: no longer zeros
    xgrad::sum(x * x).backward();
    CHECK(array_diff(x.grad(), xt::xarray<double>{3, 5}) == "");
}

TEST_CASE("tape: grad() runs only the rules on a path to the inputs it was asked for", "[tape][grad]") {
    int runs = 0;
    auto counted = [&runs](const Tensor64& w) {
        Tensor64 out(xt::xarray<double>(w.value() * 2.0));
        xgrad::record("counted", {w}, out, [&runs](const Tensor64& gy, auto& grads) {
            ++runs;
            grads.add(0, gy * 2.0);
        });
        return out;
    };
    Tensor64 w(xt::xarray<double>{1, 2}, true), x(xt::xarray<double>{3, 4}, true);
    auto loss = xgrad::sum(counted(w) * x);
    auto g = xgrad::grad(loss, {x}, {.retain_graph = true});
    CHECK(array_diff(g[0].value(), xt::xarray<double>{2, 4}) == "");
    CHECK(runs == 0);  // w's side of the graph leads nowhere grad() looks
    loss.backward();
    CHECK(runs == 1);
    CHECK(array_diff(w.grad(), xt::xarray<double>{6, 8}) == "");
}

TEST_CASE("tape: AnomalyGuard turns anomaly mode on for its scope and restores it when an exception leaves",
          "[tape][anomaly]") {
    REQUIRE(!xgrad::anomaly_detection());
    Tensor64 x(xt::xarray<double>{-1.0, 4.0}, true);
    try {
        xgrad::AnomalyGuard on;
        CHECK(xgrad::anomaly_detection());
        auto y = xgrad::sqrt(x);  // NaN at -1: throws here
        FAIL("sqrt of -1 did not throw under anomaly mode");
    } catch (const xgrad::ValueError& e) {
        CHECK(std::string(e.what()).find("sqrt") != std::string::npos);
    }
    CHECK(!xgrad::anomaly_detection());  // restored by the unwinding
    {
        xgrad::AnomalyGuard on;
        {
            xgrad::AnomalyGuard off(false);
            CHECK(!xgrad::anomaly_detection());
            CHECK(std::isnan(xgrad::sqrt(x).value()(0)));  // no check while off
        }
        CHECK(xgrad::anomaly_detection());
    }
    CHECK(!xgrad::anomaly_detection());
}

TEST_CASE("tape: slices' gradients add in place, as padding each would: overlapping and empty slices, other uses, "
          "leaves, intermediates, hooks, grad(), create_graph and custom rules", "[tape][traps]") {
    // loss = Σ_k sum(c_k · slice_k(x)²) + sum(d · x): dL/dx = Σ_k pad_k(2 c_k slice_k(x)) + d.
    xgrad::manual_seed(3);
    const xt::xarray<double> x0 = xgrad::randn<double>({3, 5, 4}).value(), d = xgrad::randn<double>({3, 5, 4}).value();
    struct Cut {
        std::size_t axis, start, length;
    };
    const std::vector<Cut> cuts{{1, 0, 2}, {1, 1, 3}, {1, 4, 1}, {0, 2, 1}, {2, 1, 2}, {1, 3, 0}, {1, 0, 5}};
    std::vector<xt::xarray<double>> c;
    for (const Cut& k : cuts) {
        xgrad::Shape s = x0.shape();
        s[k.axis] = k.length;
        c.push_back(xgrad::randn<double>(s).value());
    }
    // full += f(k, slice index) over the slice k of a [3, 5, 4] tensor
    auto add_over_slice = [&](xt::xarray<double>& full, std::size_t k, auto f) {
        for (std::size_t i = 0; i < 3; ++i)
            for (std::size_t j = 0; j < 5; ++j)
                for (std::size_t l = 0; l < 4; ++l) {
                    std::size_t at[3] = {i, j, l};
                    const std::size_t pos = at[cuts[k].axis];
                    if (pos < cuts[k].start || pos >= cuts[k].start + cuts[k].length) continue;
                    at[cuts[k].axis] = pos - cuts[k].start;
                    full(i, j, l) += f(c[k](at[0], at[1], at[2]), x0(i, j, l));
                }
    };
    auto expected = [&](bool with_d) {
        xt::xarray<double> g = xt::zeros<double>(x0.shape());
        if (with_d) g = d;
        for (std::size_t k = 0; k < cuts.size(); ++k) add_over_slice(g, k, [](double ck, double x) { return 2 * ck * x; });
        return g;
    };
    auto loss_of = [&](const Tensor64& x, bool with_d) {
        Tensor64 loss = xgrad::zeros<double>({});
        for (std::size_t i = 0; i < cuts.size(); ++i) {
            const auto s = xgrad::slice(x, static_cast<std::ptrdiff_t>(cuts[i].axis), cuts[i].start, cuts[i].length);
            loss = loss + xgrad::sum(Tensor64(c[i]) * s * s);
        }
        return with_d ? loss + xgrad::sum(Tensor64(d) * x) : loss;
    };
    for (const bool with_d : {false, true}) {
        INFO("with another use of x: " << with_d);
        {  // a leaf: its grad made from the first slice, then added to
            Tensor64 x(x0, true);
            loss_of(x, with_d).backward();
            CHECK(array_diff(x.grad(), expected(with_d)) == "");
            loss_of(x, with_d).backward();  // accumulates onto the existing gradient
            CHECK(array_diff(x.grad(), 2.0 * expected(with_d)) == "");
            x.zero_grad();
            loss_of(x, with_d).backward();  // replaces the zeros
            CHECK(array_diff(x.grad(), expected(with_d)) == "");
        }
        {  // an intermediate, and a leaf with a hook (both summed apart)
            Tensor64 a(x0, true);
            int calls = 0;
            a.register_hook([&](const Tensor64& g) -> std::optional<Tensor64> {
                ++calls;
                CHECK(array_diff(g.value(), 3.0 * expected(with_d)) == "");
                return std::nullopt;
            });
            // x = a · 1 (an intermediate holding the same values), loss scaled by 3
            loss_of(a * 1.0, with_d).backward(xt::xarray<double>(3.0));
            CHECK(calls == 1);
            CHECK(array_diff(a.grad(), 3.0 * expected(with_d)) == "");
        }
        {  // slices of an intermediate whose gradient, passed on by an add, another one shares
            Tensor64 x(x0, true);
            const auto a = x * 1.0, b = x * 2.0;
            // recorded after the slices, so replayed first: a's gradient starts as add's, which b's shares
            const auto sliced = loss_of(a, with_d);
            const auto both = xgrad::sum(Tensor64(d) * (a + b));
            (sliced + both).backward();
            CHECK(array_diff(x.grad(), expected(with_d) + 3.0 * d) == "");
        }
        {  // grad(): captured, no leaf touched
            Tensor64 x(x0, true);
            const auto g = xgrad::grad(loss_of(x, with_d), {x});
            CHECK(array_diff(g[0].value(), expected(with_d)) == "");
            CHECK_FALSE(x.has_grad());
        }
        {  // create_graph: the gradient is differentiable again; d/dx sum(v · dL/dx) = Σ_k pad_k(2 c_k v_k)
            Tensor64 x(x0, true);
            const auto g = xgrad::grad(loss_of(x, with_d), {x}, {.create_graph = true});
            CHECK(array_diff(g[0].value(), expected(with_d)) == "");
            const xt::xarray<double> v = xt::ones<double>(x0.shape());
            const auto gg = xgrad::grad(xgrad::sum(g[0] * Tensor64(v)), {x});
            xt::xarray<double> want = xt::zeros<double>(x0.shape());
            for (std::size_t k = 0; k < cuts.size(); ++k) add_over_slice(want, k, [](double ck, double) { return 2 * ck; });
            CHECK(array_diff(gg[0].value(), want) == "");
        }
    }
    // A custom rule mixing add_slice and add for one input, in both orders.
    for (const bool slice_first : {false, true}) {
        Tensor64 x(xt::xarray<double>{1, 2, 3, 4}, true);
        Tensor64 out(xt::xarray<double>{0.0});
        xgrad::record("mixed", {x}, out, [slice_first](const Tensor64&, auto& grads) {
            const Tensor64 part(xt::xarray<double>{10, 20}), whole(xt::xarray<double>{1, 1, 1, 1});
            if (slice_first) grads.add_slice(0, 0, 1, part);
            grads.add(0, whole);
            grads.add_slice(0, 0, 2, part);  // overlaps the first slice
            if (!slice_first) grads.add_slice(0, 0, 0, part);
        });
        out.backward();
        CHECK(array_diff(x.grad(), slice_first ? xt::xarray<double>{1, 11, 31, 21} : xt::xarray<double>{11, 21, 11, 21}) ==
              "");
    }
    Tensor64 x(xt::xarray<double>{1, 2, 3}, true);
    Tensor64 out(xt::xarray<double>{0.0});
    xgrad::record("bad_slice", {x}, out, [](const Tensor64&, auto& grads) {
        grads.add_slice(0, 0, 2, Tensor64(xt::xarray<double>{1, 2}));
    });
    REQUIRE_THROWS_AS(out.backward(), xgrad::ShapeError);
    Tensor64 out2(xt::xarray<double>{0.0});
    xgrad::record("bad_slice", {x}, out2, [](const Tensor64&, auto& grads) {
        grads.add_slice(0, 0, 2, Tensor64(xt::xarray<double>{1, 2}));
    });
    REQUIRE_THROWS_WITH(out2.backward(), Contains("bad_slice") && Contains("[2]") && Contains("[3]"));
}
