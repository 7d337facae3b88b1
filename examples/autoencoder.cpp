// A convolutional autoencoder on Fashion-MNIST: two strided convolutions squeeze each image to
// 7x7x8 (392 numbers for 784 pixels) and two transposed convolutions (nn::ConvTranspose2D) grow it back to 28x28. Trained
// on the pixels' binary cross-entropy, it reports the test reconstruction error and writes a
// PNG: test images in the odd rows, their reconstructions below them.
//
//   tools/run autoencoder [--epochs 2] [--out autoencoder.png] [--max-batches N]
//
// Measured: see the README's examples table.

#include <cmath>

#include <CLI/CLI.hpp>
#include <fmt/format.h>
#include <xtensor/xview.hpp>

#include "xgrad/xgrad.hpp"

using xgrad::Padding;
using xgrad::Tensor;
using xgrad::nn::Activation;

int main(int argc, char** argv) {
    CLI::App app{"Trains a convolutional autoencoder on Fashion-MNIST and draws its reconstructions."};
    int epochs = 2;
    std::size_t max_batches = 0, test_limit = 0;
    double lr = 2e-3;
    std::uint64_t seed = 1;
    std::string out = "autoencoder.png", data_dir = xgrad::data::kFashionMnistDir;
    app.add_option("--epochs", epochs, "Training epochs")->check(CLI::PositiveNumber);
    app.add_option("--lr", lr, "Adam learning rate")->check(CLI::PositiveNumber);
    app.add_option("--max-batches", max_batches, "Stop each epoch after this many batches (0: all)");
    app.add_option("--test-limit", test_limit, "Evaluate on the first N test images only (0: all)");
    app.add_option("--seed", seed, "Seed of the weights and the shuffling");
    app.add_option("--out", out, "The PNG of inputs and reconstructions");
    app.add_option("--data", data_dir, "Directory with the Fashion-MNIST IDX files");
    CLI11_PARSE(app, argc, argv);
    try {
        const auto train_set = xgrad::data::load_fashion_mnist(xgrad::data::Split::train, data_dir);
        auto test_set = xgrad::data::load_fashion_mnist(xgrad::data::Split::test, data_dir);
        if (test_limit) test_set = test_set.slice(0, std::min(test_limit, test_set.size()));
        xgrad::manual_seed(seed);
        // 28x28x1 -> 14x14x16 -> 7x7x8 -> 14x14x16 -> 28x28x1; (7 - 1)·2 - 2 + 3 + 1 = 14
        const xgrad::ConvTranspose2dOptions up{.stride = 2, .padding = 1, .output_padding = 1};
        xgrad::nn::Sequential model({28, 28, 1});
        model.add(xgrad::nn::Conv2D(1, 16, 3, {.stride = 2, .padding = Padding::same}, Activation::relu))
            .add(xgrad::nn::Conv2D(16, 8, 3, {.stride = 2, .padding = Padding::same}, Activation::relu))
            .add(xgrad::nn::ConvTranspose2D(8, 16, 3, up, Activation::relu))
            .add(xgrad::nn::ConvTranspose2D(16, 1, 3, up));  // logits of the pixels
        model.summary();
        xgrad::optim::Adam opt(model.parameters(), {.lr = lr});
        xgrad::data::DataLoader loader(train_set, {.batch_size = 64, .seed = seed});
        const std::size_t batches = max_batches ? std::min(max_batches, loader.size()) : loader.size();
        xgrad::Progress progress(xgrad::Progress::Mode::automatic);
        double seconds = 0;
        for (int epoch = 0; epoch < epochs; ++epoch) {
            progress.begin_epoch(static_cast<std::size_t>(epoch), static_cast<std::size_t>(epochs), batches);
            double loss_sum = 0;
            std::size_t seen = 0;
            for (std::size_t i = 0; i < batches; ++i) {
                const auto b = loader.batch(static_cast<std::size_t>(epoch), i);
                auto loss = xgrad::binary_cross_entropy_with_logits(model.forward(b.x), b.x);
                opt.zero_grad();
                loss.backward();
                opt.step();
                seen += b.y.size();
                loss_sum += loss.item() * static_cast<double>(b.y.size());
                progress.update(i, loss_sum / static_cast<double>(seen), std::nan(""), seen);
            }
            seconds += progress.train_seconds();
            progress.end_epoch(loss_sum / static_cast<double>(seen), std::nan(""), "");
        }
        // The test set's mean squared error per pixel, and the picture of the first 16 images.
        xgrad::NoGradGuard off;
        model.eval();
        xgrad::data::DataLoader test_loader(test_set, {.batch_size = 500, .shuffle = false});
        double squared = 0;
        for (std::size_t i = 0; i < test_loader.size(); ++i) {
            const auto b = test_loader.batch(0, i);
            squared += xgrad::sum(xgrad::square(xgrad::sigmoid(model.forward(b.x)) - b.x)).item();
        }
        const double mse = squared / static_cast<double>(test_set.size() * 28 * 28);
        const auto first = test_loader.batch(0, 0).x;
        const std::size_t shown = std::min<std::size_t>(16, first.shape()[0]), per_row = 8;
        const xt::xarray<float> inputs = xt::view(first.value(), xt::range(0, shown));
        const xt::xarray<float> outputs = xgrad::sigmoid(model.forward(Tensor(inputs))).value();
        xt::xarray<float> pairs = xt::zeros<float>({2 * shown, std::size_t{28}, std::size_t{28}, std::size_t{1}});
        for (std::size_t i = 0; i < shown; ++i) {  // row r of inputs, then row r of their reconstructions
            const std::size_t row = i / per_row, col = i % per_row;
            xt::view(pairs, 2 * row * per_row + col) = xt::view(inputs, i);
            xt::view(pairs, (2 * row + 1) * per_row + col) = xt::view(outputs, i);
        }
        xgrad::io::save_png(out, xgrad::io::image_grid(pairs, per_row, 2));
        fmt::print("test reconstruction MSE per pixel {:.5f} ({} images), {:.1f} s per epoch; wrote {}\n", mse,
                   test_set.size(), seconds / epochs, out);
        return mse < 0.1 ? 0 : 1;  // far below the ~0.1 of predicting every pixel's mean
    } catch (const xgrad::Error& e) {
        fmt::print(stderr, "autoencoder: {}\n", e.what());
        return 1;
    }
}
