#pragma once

// The training loop and test accuracy shared by the classifier examples (fashion_mnist_lstm,
// resnet): cross-entropy on the loader's batches, a progress line per epoch.

#include <functional>
#include <string>

#include "xgrad/xgrad.hpp"

/// The fraction of `data` the model classifies right, in eval mode without a graph (the model
/// is put back in training mode).
inline double test_accuracy(xgrad::nn::Module& model, const xgrad::data::Dataset& data) {
    xgrad::NoGradGuard off;
    model.eval();
    xgrad::data::DataLoader loader(data, {.batch_size = 500, .shuffle = false});
    double correct = 0;
    for (std::size_t i = 0; i < loader.size(); ++i) {
        const auto b = loader.batch(0, i);
        correct += static_cast<double>(xgrad::nn::count_correct(model(b.x), b.y));
    }
    model.train();
    return correct / static_cast<double>(data.size());
}

/// Trains `epochs` epochs of `batches` batches (all when 0) and returns the mean seconds per
/// epoch. Before each epoch `before_epoch(epoch)` runs (a schedule); after it `after_epoch()`
/// gives text for the epoch's line (a test accuracy).
inline double train_classifier(xgrad::nn::Module& model, xgrad::optim::Optimizer& opt,
                               const xgrad::data::DataLoader& loader, int epochs, std::size_t batches,
                               const std::function<void(int)>& before_epoch = {},
                               const std::function<std::string()>& after_epoch = {}) {
    if (!batches || batches > loader.size()) batches = loader.size();
    xgrad::Progress progress(xgrad::Progress::Mode::automatic);
    double seconds = 0;
    for (int epoch = 0; epoch < epochs; ++epoch) {
        if (before_epoch) before_epoch(epoch);
        progress.begin_epoch(static_cast<std::size_t>(epoch), static_cast<std::size_t>(epochs), batches);
        double loss_sum = 0, correct = 0;
        std::size_t seen = 0;
        for (std::size_t i = 0; i < batches; ++i) {
            const auto b = loader.batch(static_cast<std::size_t>(epoch), i);
            const auto logits = model(b.x);
            auto loss = xgrad::cross_entropy(logits, b.y);
            opt.zero_grad();
            loss.backward();
            opt.step();
            correct += static_cast<double>(xgrad::nn::count_correct(logits, b.y));
            seen += b.y.size();
            loss_sum += loss.item() * static_cast<double>(b.y.size());
            progress.update(i, loss_sum / static_cast<double>(seen), correct / static_cast<double>(seen), seen);
        }
        seconds += progress.train_seconds();
        progress.end_epoch(loss_sum / static_cast<double>(seen), correct / static_cast<double>(seen),
                           after_epoch ? after_epoch() : "");
    }
    return seconds / epochs;
}
