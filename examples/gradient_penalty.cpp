// Input-gradient regularisation ("double backpropagation") on the W1 CNN and Fashion-MNIST:
// the loss gains λ · mean_i |dL_i/dx_i|², the squared norm of each image's loss gradient with
// respect to its own pixels. That gradient comes from xgrad::grad with create_graph, so the
// penalty is itself a graph and loss.backward() differentiates it through the network
// (second derivatives of conv2d, relu, max-pooling and dense layers).
//
// Trains the same network from the same seed twice, without and with the penalty, and
// reports test accuracy and the mean input-gradient norm |dL/dx| on the test set for both:
// the penalty makes the network flatter around the data at a small cost in accuracy.
//
//   tools/run gradient_penalty [--epochs 1] [--lambda 0.1] [--max-batches N]
//
// Measured (1 epoch, seed 1, 2 threads of an AMD EPYC with AVX-512): without the penalty 87.86%
// test accuracy, mean |dL/dx| 0.96, 8 s per epoch; with λ = 0.1, 85.52%, 0.53, 18 s per epoch.

#include <cmath>

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include "w1_net.hpp"
#include "xgrad/xgrad.hpp"

using xgrad::Tensor;

namespace {

// dL_i/dx_i for every image of the batch at once: the sum of per-image losses has, for
// image i, the gradient of its own loss only. With create_graph, a tensor with a graph.
Tensor input_gradient(Net& model, const Tensor& images, const Tensor& labels, bool create_graph) {
    const Tensor x(images.value(), true);
    const auto total = xgrad::cross_entropy(model(x), labels, xgrad::Reduction::sum);
    return xgrad::grad(total, {x}, {.create_graph = create_graph})[0];
}

// The squared norm of each image's gradient, averaged over the batch.
Tensor mean_squared_norm(const Tensor& g) { return xgrad::mean(xgrad::sum(xgrad::square(g), {1, 2, 3})); }

struct Outcome {
    double accuracy, grad_norm, seconds;
};

Outcome train(const xgrad::data::Dataset& train_set, const xgrad::data::Dataset& test_set, double lambda,
              int epochs, std::size_t max_batches, std::uint64_t seed) {
    xgrad::manual_seed(seed);
    Net model;
    xgrad::optim::SGD opt(model.parameters(), {.lr = 0.01, .momentum = 0.9});
    xgrad::data::DataLoader loader(train_set, {.batch_size = 64, .seed = seed});
    const std::size_t batches = max_batches ? std::min(max_batches, loader.size()) : loader.size();
    xgrad::Progress progress(xgrad::Progress::Mode::automatic);
    double seconds = 0;
    for (int epoch = 0; epoch < epochs; ++epoch) {
        progress.begin_epoch(static_cast<std::size_t>(epoch), static_cast<std::size_t>(epochs), batches);
        double loss_sum = 0, correct = 0;
        std::size_t seen = 0;
        for (std::size_t i = 0; i < batches; ++i) {
            const auto b = loader.batch(static_cast<std::size_t>(epoch), i);
            const Tensor x(b.x.value(), lambda > 0);  // differentiated against only with the penalty
            const auto logits = model(x);
            auto loss = xgrad::cross_entropy(logits, b.y);
            if (lambda > 0) {
                const auto total = xgrad::cross_entropy(logits, b.y, xgrad::Reduction::sum);
                const auto g = xgrad::grad(total, {x}, {.create_graph = true})[0];
                loss = loss + mean_squared_norm(g) * static_cast<float>(lambda);
            }
            opt.zero_grad();
            loss.backward();
            opt.step();
            correct += static_cast<double>(xgrad::nn::count_correct(logits, b.y));
            seen += b.y.size();
            loss_sum += loss.item() * static_cast<double>(b.y.size());
            progress.update(i, loss_sum / static_cast<double>(seen), correct / static_cast<double>(seen), seen);
        }
        seconds += progress.train_seconds();
        progress.end_epoch(loss_sum / static_cast<double>(seen), correct / static_cast<double>(seen), "");
    }
    // Test accuracy, and the mean |dL_i/dx_i| over the test images (first order, no graph).
    xgrad::data::DataLoader test_loader(test_set, {.batch_size = 256, .shuffle = false});
    double correct = 0, norm_sum = 0;
    for (std::size_t i = 0; i < test_loader.size(); ++i) {
        const auto b = test_loader.batch(0, i);
        {
            xgrad::NoGradGuard off;
            correct += static_cast<double>(xgrad::nn::count_correct(model(b.x), b.y));
        }
        const auto g = input_gradient(model, b.x, b.y, false);
        const auto sq = xgrad::sum(xgrad::square(g), {1, 2, 3});
        for (const float v : sq.value()) norm_sum += std::sqrt(static_cast<double>(v));
    }
    const auto n = static_cast<double>(test_set.size());
    return {correct / n, norm_sum / n, seconds / epochs};
}

}  // namespace

int main(int argc, char** argv) {
    CLI::App app{"Trains the W1 CNN on Fashion-MNIST without and with an input-gradient penalty."};
    int epochs = 1;
    double lambda = 0.1;
    std::size_t max_batches = 0, test_limit = 0;
    std::uint64_t seed = 1;
    std::string data_dir = xgrad::data::kFashionMnistDir;
    app.add_option("--epochs", epochs, "Training epochs of each run")->check(CLI::PositiveNumber);
    app.add_option("--lambda", lambda, "Weight of the penalty mean |dL/dx|^2")->check(CLI::PositiveNumber);
    app.add_option("--max-batches", max_batches, "Stop each epoch after this many batches (0: all)");
    app.add_option("--test-limit", test_limit, "Evaluate on the first N test images only (0: all)");
    app.add_option("--seed", seed, "Seed of the weights and the shuffling");
    app.add_option("--data", data_dir, "Directory with the Fashion-MNIST IDX files");
    CLI11_PARSE(app, argc, argv);
    try {
        const auto train_set = xgrad::data::load_fashion_mnist(xgrad::data::Split::train, data_dir);
        auto test_set = xgrad::data::load_fashion_mnist(xgrad::data::Split::test, data_dir);
        if (test_limit) test_set = test_set.slice(0, std::min(test_limit, test_set.size()));
        const auto plain = train(train_set, test_set, 0, epochs, max_batches, seed);
        const auto penalised = train(train_set, test_set, lambda, epochs, max_batches, seed);
        fmt::print("without penalty: test accuracy {:.2f}%, mean |dL/dx| {:.4f}, {:.1f} s per epoch\n",
                   100 * plain.accuracy, plain.grad_norm, plain.seconds);
        fmt::print("with penalty {}: test accuracy {:.2f}%, mean |dL/dx| {:.4f}, {:.1f} s per epoch\n", lambda,
                   100 * penalised.accuracy, penalised.grad_norm, penalised.seconds);
        // The penalty's one promise: a flatter network around the data.
        return penalised.grad_norm < plain.grad_norm ? 0 : 1;
    } catch (const xgrad::Error& e) {
        fmt::print(stderr, "gradient_penalty: {}\n", e.what());
        return 1;
    }
}
