// Trains the W1 CNN on Fashion-MNIST, written imperatively as a Module (like the PyTorch C++
// frontend), and reports test accuracy. The default main job of tools/run.
//
//   Conv2D(32, 3x3, same) + ReLU -> MaxPool 2 -> Conv2D(64, 3x3, same) + ReLU -> MaxPool 2
//   -> Flatten -> Dense(128) + ReLU -> Dense(10), softmax cross-entropy, SGD momentum 0.9.
//
// The default recipe differs from W1's (lr 0.01, constant) in two documented ways: lr 0.03,
// annealed to 0 over the epochs with a cosine (--schedule). Measured after 3 epochs: 90.96% and
// 90.76% test accuracy (seeds 1, 2) against 90.01% and 89.66% for lr 0.01 with the cosine and
// 89.16% for plain W1 (PyTorch gets 88.9% with plain W1).
//
//   tools/run fashion_mnist --epochs 3 --save fashion.npz
//
// Data-parallel over MPI: every rank trains on its shard of each batch (--batch per rank) and
// the ranks average gradients before each step; only rank 0 prints and writes files.
//
//   mpirun -np 2 build/examples/fashion_mnist --distributed --batch 32

#include <cstdio>
#include <filesystem>
#include <optional>
#include <thread>

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include "w1_net.hpp"
#include "xgrad/xgrad.hpp"

namespace nn = xgrad::nn;
namespace dist = xgrad::distributed;
using xgrad::Tensor;

// Mean loss and accuracy of `model` over `data`, in batches, without recording. Distributed,
// each rank takes its slice of the data and the sums are added over the ranks.
std::pair<double, double> evaluate(Net& model, const xgrad::data::Dataset& all, std::size_t batch) {
    xgrad::NoGradGuard no_grad;
    model.eval();
    const auto rank = static_cast<std::size_t>(dist::rank()), ranks = static_cast<std::size_t>(dist::world_size());
    const auto data = ranks == 1 ? all : all.slice(rank * all.size() / ranks, (rank + 1) * all.size() / ranks);
    xgrad::data::DataLoader loader(data, {.batch_size = batch, .shuffle = false});
    double loss = 0, correct = 0;
    for (std::size_t i = 0; i < loader.size(); ++i) {
        const auto b = loader.batch(0, i);
        const auto logits = model(b.x);
        loss += xgrad::cross_entropy(logits, b.y, xgrad::Reduction::sum).item();
        correct += static_cast<double>(nn::count_correct(logits, b.y));
    }
    model.train();
    std::vector<double> sums{loss, correct, static_cast<double>(data.size())};
    dist::allreduce_sum(sums);
    return {sums[0] / sums[2], sums[1] / sums[2]};
}

int main(int argc, char** argv) {
    CLI::App app{"Trains a CNN on Fashion-MNIST and reports test accuracy."};
    int epochs = 3, threads = 0;
    std::size_t batch = 64, max_batches = 0;
    double lr = 0.03, momentum = 0.9;
    std::uint64_t seed = 1;
    std::string data_dir = xgrad::data::kFashionMnistDir, save, checkpoint;
    bool resume = false;
    bool quiet = false, distributed = false, bf16 = false;
    std::string schedule = "cosine", optimizer = "sgd";
    app.add_option("--epochs", epochs, "Training epochs")->check(CLI::PositiveNumber);
    app.add_option("--batch", batch, "Batch size")->check(CLI::PositiveNumber);
    app.add_option("--lr", lr, "SGD learning rate")->check(CLI::NonNegativeNumber);
    app.add_option("--momentum", momentum, "SGD momentum")->check(CLI::NonNegativeNumber);
    app.add_option("--schedule", schedule, "Learning rate over the epochs: cosine (annealed to 0) or constant")
        ->check(CLI::IsMember({"cosine", "constant"}));
    app.add_option("--optimizer", optimizer, "sgd (with --lr, --momentum) or adam (lr 1e-3 unless --lr is given)")
        ->check(CLI::IsMember({"sgd", "adam"}));
    app.add_option("--seed", seed, "Seed of the weights and the shuffling");
    app.add_option("--threads", threads, "Threads (default: all cores)");
    app.add_option("--max-batches", max_batches, "Stop each epoch after this many batches (0: all)");
    app.add_option("--data", data_dir, "Directory with the Fashion-MNIST IDX files");
    app.add_option("--save", save, "Write the trained weights to this .npz file");
    app.add_option("--checkpoint", checkpoint, "Save a checkpoint here after every epoch (written atomically)");
    app.add_flag("--resume", resume, "Continue from --checkpoint when it exists");
    app.add_flag("--quiet", quiet, "No progress output");
    app.add_flag("--bf16", bf16, "bf16 mixed precision: convolutions and dense layers take bf16 operands, sum in float32 "
                                 "(float32 weights, optimizer and everything else; xgrad/precision.hpp)");
    app.add_flag("--distributed", distributed,
                 "Data-parallel training under mpirun: --batch is per rank, threads default to cores / local ranks");
    CLI11_PARSE(app, argc, argv);

    std::optional<dist::Session> mpi;  // outlives the try: a failing rank must abort the others
    try {
        if (distributed) {
            mpi.emplace(argc, argv);
            if (threads == 0)
                threads = std::max(1, static_cast<int>(std::thread::hardware_concurrency()) / dist::local_size());
        }
        if (!dist::is_main()) quiet = true;
        if (threads > 0) xgrad::set_num_threads(threads);
        std::optional<xgrad::AutocastGuard> mixed;  // training and evaluation, for the whole run
        if (bf16) mixed.emplace(xgrad::Precision::bf16);
        xgrad::manual_seed(seed);
        const auto train = xgrad::data::load_fashion_mnist(xgrad::data::Split::train, data_dir);
        const auto test = xgrad::data::load_fashion_mnist(xgrad::data::Split::test, data_dir);
        if (dist::is_main())
            fmt::print("Fashion-MNIST: {} training and {} test images; {} threads{}{}\n", train.size(), test.size(),
                       xgrad::num_threads(), bf16 ? fmt::format(", bf16 mixed precision ({} kernels)", xgrad::bf16_kernels()) : "",
                       distributed ? fmt::format(" x {} ranks, global batch {}", dist::world_size(),
                                                 batch * static_cast<std::size_t>(dist::world_size()))
                                   : "");

        Net model;
        dist::broadcast(model);  // every rank starts from rank 0's weights
        dist::GradientAverager averager(model.parameters());
        std::unique_ptr<xgrad::optim::Optimizer> optimizer_ptr;
        if (optimizer == "adam")
            optimizer_ptr = std::make_unique<xgrad::optim::Adam>(
                model.parameters(), xgrad::optim::AdamOptions{.lr = app.count("--lr") ? lr : 1e-3});
        else
            optimizer_ptr = std::make_unique<xgrad::optim::SGD>(
                model.parameters(), xgrad::optim::SGDOptions{.lr = lr, .momentum = momentum});
        auto& opt = *optimizer_ptr;
        xgrad::optim::CosineAnnealingLR cosine(opt, epochs);
        xgrad::data::DataLoader loader(train, {.batch_size = batch,
                                               .seed = seed,
                                               .shard = static_cast<std::size_t>(dist::rank()),
                                               .shards = static_cast<std::size_t>(dist::world_size())});
        xgrad::Progress progress(quiet ? xgrad::Progress::Mode::quiet : xgrad::Progress::Mode::automatic);
        const std::size_t batches = max_batches ? std::min(max_batches, loader.size()) : loader.size();
        double seconds = 0;
        int first_epoch = 0;
        if (resume && !checkpoint.empty() && std::filesystem::exists(checkpoint)) {
            first_epoch = static_cast<int>(xgrad::io::load_checkpoint(checkpoint, model, opt));
            for (int e = 0; e < first_epoch; ++e)
                if (schedule == "cosine") cosine.step();
            if (dist::is_main()) fmt::print("resumed from {} after epoch {}\n", checkpoint, first_epoch);
        }
        for (int epoch = first_epoch; epoch < epochs; ++epoch) {
            progress.begin_epoch(static_cast<std::size_t>(epoch), static_cast<std::size_t>(epochs), batches);
            double loss_sum = 0, correct = 0;
            std::size_t seen = 0;
            for (std::size_t i = 0; i < batches; ++i) {
                const auto b = loader.batch(static_cast<std::size_t>(epoch), i);
                const auto logits = model(b.x);
                auto loss = xgrad::cross_entropy(logits, b.y);
                opt.zero_grad();
                loss.backward();
                averager.average();  // no-op in a single process
                opt.step();
                correct += static_cast<double>(nn::count_correct(logits, b.y));
                seen += b.y.size();
                loss_sum += loss.item() * static_cast<double>(b.y.size());
                // rank 0's figures; images counted for all ranks (they take equal shares)
                progress.update(i, loss_sum / static_cast<double>(seen), correct / static_cast<double>(seen),
                                seen * static_cast<std::size_t>(dist::world_size()));
            }
            seconds += progress.train_seconds();
            if (schedule == "cosine") cosine.step();
            const auto [test_loss, test_acc] = evaluate(model, test, 256);
            std::vector<double> sums{loss_sum, correct, static_cast<double>(seen)};  // over all ranks
            dist::allreduce_sum(sums);
            progress.end_epoch(sums[0] / sums[2], sums[1] / sums[2],
                               fmt::format(", test loss {:.4f} acc {:.2f}%", test_loss, 100 * test_acc));
            if (!checkpoint.empty() && dist::is_main()) xgrad::io::save_checkpoint(checkpoint, model, opt, epoch + 1);
        }
        const auto [test_loss, test_acc] = evaluate(model, test, 256);
        if (!dist::is_main()) return 0;
        if (distributed)
            fmt::print("gradient allreduce (waiting for the slowest rank included): {:.2f} ms per step, {} bucket(s)\n",
                       1e3 * averager.seconds() / static_cast<double>(std::max<std::size_t>(1, averager.calls())),
                       averager.buckets());
        fmt::print("test accuracy: {:.2f}% (loss {:.4f}) after {} epochs, {:.1f} s per epoch of training\n",
                   100 * test_acc, test_loss, epochs, seconds / std::max(1, epochs - first_epoch));
        if (!save.empty()) {
            model.save(save);
            fmt::print("weights saved to {}\n", save);
        }
    } catch (const xgrad::Error& e) {
        fmt::print(stderr, "fashion_mnist: {}\n", e.what());
        if (distributed) dist::abort(1);  // the other ranks would wait for this one forever
        return 1;
    }
    return 0;
}
