// A small residual CNN on Fashion-MNIST: a stem, residual blocks (conv-GroupNorm-relu-conv-
// GroupNorm plus the block's input), strided convolutions between stages, global average
// pooling and a dense classifier; trained with random crops and flips (DataLoader's augment),
// Adam with the learning rate cut tenfold for the last third of the epochs, on normalised images.
//
//   tools/run resnet [--epochs 8] [--width 16] [--max-batches N] [--norm group|batch]
//
// Measured: see the README's examples table.

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include "classifier.hpp"
#include "xgrad/xgrad.hpp"

using xgrad::Padding;
using xgrad::Tensor;
namespace nn = xgrad::nn;

namespace {

// A normalisation layer over the channels: GroupNorm (8 groups, or fewer when the channels
// do not divide) or BatchNorm.
std::shared_ptr<nn::Module> norm_layer(bool group, std::size_t channels) {
    if (!group) return std::make_shared<nn::BatchNorm>(channels);
    std::size_t groups = 8;
    while (channels % groups) --groups;
    return std::make_shared<nn::GroupNorm>(groups, channels);
}

// relu(x + norm(conv(relu(norm(conv(x)))))): the residual block of He et al. at one width.
class Block : public nn::Module {
public:
    Block(std::size_t channels, bool group)
        : conv1(add_module("conv1", nn::Conv2D(channels, channels, 3, {.padding = Padding::same}, nn::Activation::none,
                                               false))),
          norm1(add_module("norm1", norm_layer(group, channels))),
          conv2(add_module("conv2", nn::Conv2D(channels, channels, 3, {.padding = Padding::same}, nn::Activation::none,
                                               false))),
          norm2(add_module("norm2", norm_layer(group, channels))) {}
    Tensor forward(const Tensor& x) override {
        const auto h = xgrad::relu((*norm1)((*conv1)(x)));
        return xgrad::relu(x + (*norm2)((*conv2)(h)));
    }
    std::shared_ptr<nn::Conv2D> conv1;
    std::shared_ptr<nn::Module> norm1;
    std::shared_ptr<nn::Conv2D> conv2;
    std::shared_ptr<nn::Module> norm2;
};

// conv (stride 1 or 2) - norm - relu: the stem, and the step down between stages.
class ConvNorm : public nn::Module {
public:
    ConvNorm(std::size_t in, std::size_t out, int stride, bool group)
        : conv(add_module("conv", nn::Conv2D(in, out, 3, {.stride = stride, .padding = Padding::same},
                                             nn::Activation::none, false))),
          norm(add_module("norm", norm_layer(group, out))) {}
    Tensor forward(const Tensor& x) override { return xgrad::relu((*norm)((*conv)(x))); }
    std::shared_ptr<nn::Conv2D> conv;
    std::shared_ptr<nn::Module> norm;
};

// 28x28 (width w) -> block -> 14x14 (2w) -> block -> 7x7 (2w) -> mean -> 10 logits
class ResNet : public nn::Module {
public:
    ResNet(std::size_t w, bool group) {
        add_module("stem", ConvNorm(1, w, 1, group));
        add_module("block1", Block(w, group));
        add_module("down1", ConvNorm(w, 2 * w, 2, group));
        add_module("block2", Block(2 * w, group));
        add_module("down2", ConvNorm(2 * w, 2 * w, 2, group));
        add_module("block3", Block(2 * w, group));
        head = add_module("head", nn::Dense(2 * w, 10));
    }
    Tensor forward(const Tensor& x) override {
        Tensor h = x;
        for (const auto& [name, child] : children())
            if (name != "head") h = (*child)(h);
        return (*head)(xgrad::global_avg_pool2d(h));
    }
    std::shared_ptr<nn::Dense> head;
};

}  // namespace

int main(int argc, char** argv) {
    CLI::App app{"Trains a small residual CNN with GroupNorm and augmentation on Fashion-MNIST."};
    int epochs = 8;
    std::size_t width = 16, max_batches = 0, test_limit = 0;
    double lr = 3e-3;
    std::string norm = "group";
    std::uint64_t seed = 1;
    std::string data_dir = xgrad::data::kFashionMnistDir;
    app.add_option("--epochs", epochs, "Training epochs")->check(CLI::PositiveNumber);
    app.add_option("--width", width, "Channels of the first stage (the others have twice as many)")
        ->check(CLI::PositiveNumber);
    app.add_option("--lr", lr, "Adam's initial learning rate (divided by 10 for the last third of the epochs)")
        ->check(CLI::PositiveNumber);
    app.add_option("--norm", norm, "group or batch")->check(CLI::IsMember({"group", "batch"}));
    app.add_option("--max-batches", max_batches, "Stop each epoch after this many batches (0: all)");
    app.add_option("--test-limit", test_limit, "Evaluate on the first N test images only (0: all)");
    app.add_option("--seed", seed, "Seed of the weights, the shuffling and the augmentation");
    app.add_option("--data", data_dir, "Directory with the Fashion-MNIST IDX files");
    CLI11_PARSE(app, argc, argv);
    try {
        // Normalised with Fashion-MNIST's mean and standard deviation.
        const auto train_set = xgrad::data::normalize(
            xgrad::data::load_fashion_mnist(xgrad::data::Split::train, data_dir), {0.2860}, {0.3530});
        auto test_set = xgrad::data::normalize(xgrad::data::load_fashion_mnist(xgrad::data::Split::test, data_dir),
                                               {0.2860}, {0.3530});
        if (test_limit) test_set = test_set.slice(0, std::min(test_limit, test_set.size()));
        xgrad::manual_seed(seed);
        ResNet model(width, norm == "group");
        xgrad::optim::Adam opt(model.parameters(), {.lr = lr});
        xgrad::data::DataLoader loader(
            train_set, {.batch_size = 64, .seed = seed, .augment = {.crop_padding = 2, .horizontal_flip = true}});
        double last = 0;
        const double seconds = train_classifier(
            model, opt, loader, epochs, max_batches,
            [&](int epoch) {  // a tenfold cut of the learning rate for the last third
                if (epochs >= 3 && epoch == epochs - epochs / 3) opt.set_lr(lr / 10);
            },
            [&] {
                last = test_accuracy(model, test_set);
                return fmt::format(" test {:.2f}%", 100 * last);
            });
        fmt::print("test accuracy {:.2f}% ({} images) after {} epochs, {:.1f} s per epoch\n", 100 * last,
                   test_set.size(), epochs, seconds);
        return last > 0.2 ? 0 : 1;
    } catch (const xgrad::Error& e) {
        fmt::print(stderr, "resnet: {}\n", e.what());
        return 1;
    }
}
