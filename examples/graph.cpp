// Draws the graph the tape recorded for one W1-like forward pass (conv, relu, max-pool,
// dense, cross-entropy), with xgrad::to_dot, and checks its gradient with xgrad::grad and a
// hook. Renders graph.png with Graphviz's `dot` when it is installed (Debian: graphviz).
//
//   tools/run graph [--out DIR]

#include <cmath>
#include <cstdlib>
#include <fstream>
#include <optional>
#include <string>

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include "xgrad/xgrad.hpp"

int main(int argc, char** argv) {
    CLI::App app{"Writes the recorded graph of a small CNN as graph.dot (and graph.png with Graphviz)."};
    std::string out = ".";
    app.add_option("--out", out, "directory for graph.dot and graph.png");
    CLI11_PARSE(app, argc, argv);

    xgrad::manual_seed(1);
    xgrad::nn::Conv2D conv(1, 4, 3, {.padding = xgrad::Padding::same}, xgrad::nn::Activation::relu);
    xgrad::nn::Dense dense(4 * 4 * 4, 10);
    const auto x = xgrad::rand({2, 8, 8, 1});
    const auto labels = xgrad::Tensor(xt::xarray<float>{3, 7});
    auto features = xgrad::max_pool2d(conv(x), {.kernel = 2});
    // A hook on an intermediate: the size of the gradient that reaches the conv features.
    double feature_grad_norm = 0;
    features.register_hook([&](const xgrad::Tensor& g) -> std::optional<xgrad::Tensor> {
        for (const float v : g.value()) feature_grad_norm += static_cast<double>(v) * v;
        return std::nullopt;
    });
    const auto loss = xgrad::cross_entropy(dense(xgrad::flatten(features)), labels);

    const std::string dot_path = out + "/graph.dot", png_path = out + "/graph.png";
    std::ofstream(dot_path) << xgrad::to_dot(loss);
    const auto g = xgrad::grad(loss, {conv.weight, dense.weight});
    fmt::print("loss {:.4f}; |dL/dconv.weight| {:.4f}, |dL/ddense.weight| {:.4f}, |dL/dfeatures| {:.4f}\n",
               loss.item(), std::sqrt(xt::sum(g[0].value() * g[0].value())()),
               std::sqrt(xt::sum(g[1].value() * g[1].value())()), std::sqrt(feature_grad_norm));
    fmt::print("wrote {}\n", dot_path);
    if (std::system("command -v dot > /dev/null 2>&1") == 0) {
        if (std::system(fmt::format("dot -Tpng '{}' -o '{}'", dot_path, png_path).c_str()) != 0) return 1;
        fmt::print("wrote {}\n", png_path);
    } else {
        fmt::print("Graphviz is not installed (Debian: apt-get install graphviz); render with: dot -Tpng {} -o {}\n",
                   dot_path, png_path);
    }
    return feature_grad_norm > 0 ? 0 : 1;
}
