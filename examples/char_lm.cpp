// A character-level language model on the text of Debian's fortunes-min package (the
// fortunes, literature and riddles files, ~98k characters): Embedding -> LSTM -> Dense over
// the byte vocabulary, trained on random windows of the first 90% of the text to predict each
// next character. Reports the validation loss per character on the last 10% and prints text
// sampled from the model one character at a time (the LSTM's state carried between calls).
//
//   tools/run char_lm [--steps 1000] [--hidden 128] [--temperature 0.8]
//
// Measured: see the README's examples table.

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <random>

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include "xgrad/xgrad.hpp"

using xgrad::Tensor;
namespace nn = xgrad::nn;

namespace {

class CharModel : public nn::Module {
public:
    CharModel(std::size_t vocab, std::size_t hidden)
        : embed(add_module("embed", nn::Embedding(vocab, 48))),
          lstm(add_module("lstm", nn::LSTM(48, hidden))),
          head(add_module("head", nn::Dense(hidden, vocab))) {}

    // ids [N, T] -> logits [N·T, vocab], and the LSTM's final state
    std::pair<Tensor, nn::basic_recurrent_state<float>> run(const Tensor& ids,
                                                            const std::optional<nn::basic_recurrent_state<float>>& s) {
        auto [out, state] = lstm->run((*embed)(ids), s);
        const auto rows = static_cast<std::ptrdiff_t>(ids.size());
        return {(*head)(xgrad::reshape(out, {rows, static_cast<std::ptrdiff_t>(lstm->hidden_size())})), state};
    }
    Tensor forward(const Tensor& ids) override { return run(ids, std::nullopt).first; }

    std::shared_ptr<nn::Embedding> embed;
    std::shared_ptr<nn::LSTM> lstm;
    std::shared_ptr<nn::Dense> head;
};

// Windows of `len + 1` characters as inputs [N, len] and next-character targets [N·len].
std::pair<Tensor, Tensor> windows(const std::vector<float>& ids, const std::vector<std::size_t>& starts, std::size_t len) {
    xt::xarray<float> x = xt::zeros<float>({starts.size(), len}), y = xt::zeros<float>({starts.size() * len});
    for (std::size_t i = 0; i < starts.size(); ++i)
        for (std::size_t t = 0; t < len; ++t) {
            x(i, t) = ids[starts[i] + t];
            y(i * len + t) = ids[starts[i] + t + 1];
        }
    return {Tensor(x), Tensor(y)};
}

}  // namespace

int main(int argc, char** argv) {
    CLI::App app{"Trains a character-level LSTM language model on Debian's fortunes-min text."};
    std::size_t steps = 1000, hidden = 128, batch = 32, len = 64, sample = 400;
    double lr = 3e-3, temperature = 0.8;
    std::uint64_t seed = 1;
    std::string dir = "/usr/share/games/fortunes";
    app.add_option("--steps", steps, "Training steps (batches of random windows)")->check(CLI::PositiveNumber);
    app.add_option("--hidden", hidden, "LSTM hidden size")->check(CLI::PositiveNumber);
    app.add_option("--batch", batch, "Windows per batch")->check(CLI::PositiveNumber);
    app.add_option("--length", len, "Characters per window")->check(CLI::PositiveNumber);
    app.add_option("--lr", lr, "Adam learning rate")->check(CLI::PositiveNumber);
    app.add_option("--temperature", temperature, "Sampling temperature")->check(CLI::PositiveNumber);
    app.add_option("--sample", sample, "Characters to sample at the end");
    app.add_option("--seed", seed, "Seed of the weights, the windows and the sampling");
    app.add_option("--data", dir, "Directory of the fortune files (Debian's fortunes-min)");
    CLI11_PARSE(app, argc, argv);
    try {
        // The text: every fortune file of the directory (not the .dat indexes or .u8 links).
        std::string text;
        std::vector<std::filesystem::path> files;
        if (std::filesystem::is_directory(dir))
            for (const auto& e : std::filesystem::directory_iterator(dir))
                if (e.is_regular_file() && !e.is_symlink() && e.path().extension().empty()) files.push_back(e.path());
        std::sort(files.begin(), files.end());
        for (const auto& f : files) {
            std::ifstream in(f, std::ios::binary);
            text.append(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
        }
        if (text.size() < 10 * (len + 1))
            throw xgrad::IoError(fmt::format("char_lm: no fortune text in {} (install Debian's fortunes-min)", dir));
        // The vocabulary: the bytes that occur, in byte order.
        std::vector<int> index(256, -1);
        std::string vocab;
        for (unsigned char ch : text)
            if (index[ch] < 0) index[ch] = 0;
        for (int ch = 0; ch < 256; ++ch)
            if (index[static_cast<std::size_t>(ch)] == 0) {
                index[static_cast<std::size_t>(ch)] = static_cast<int>(vocab.size());
                vocab.push_back(static_cast<char>(ch));
            }
        std::vector<float> ids(text.size());
        for (std::size_t i = 0; i < text.size(); ++i) ids[i] = static_cast<float>(index[static_cast<unsigned char>(text[i])]);
        const std::size_t split = text.size() * 9 / 10;
        const std::vector<float> train(ids.begin(), ids.begin() + static_cast<std::ptrdiff_t>(split)),
            valid(ids.begin() + static_cast<std::ptrdiff_t>(split), ids.end());
        fmt::print("{} characters in {} files, vocabulary {}; {} for training, {} for validation\n", text.size(),
                   files.size(), vocab.size(), train.size(), valid.size());

        xgrad::manual_seed(seed);
        CharModel model(vocab.size(), hidden);
        xgrad::optim::Adam opt(model.parameters(), {.lr = lr});
        std::mt19937_64 rng(seed);
        std::uniform_int_distribution<std::size_t> start(0, train.size() - len - 1);
        // Validation: consecutive windows over the held-out text.
        std::vector<std::size_t> valid_starts;
        for (std::size_t s = 0; s + len + 1 <= valid.size(); s += len) valid_starts.push_back(s);
        const auto [vx, vy] = windows(valid, valid_starts, len);
        auto validation_loss = [&, vx = vx, vy = vy] {
            xgrad::NoGradGuard off;
            return xgrad::cross_entropy(model(vx), vy).item();
        };
        xgrad::Progress progress(xgrad::Progress::Mode::automatic);
        const std::size_t per_report = std::min<std::size_t>(steps, 250);
        double loss_sum = 0;
        for (std::size_t step = 0; step < steps; ++step) {
            if (step % per_report == 0) progress.begin_epoch(step / per_report, (steps + per_report - 1) / per_report,
                                                             std::min(per_report, steps - step));
            std::vector<std::size_t> starts(batch);
            for (auto& s : starts) s = start(rng);
            const auto [x, y] = windows(train, starts, len);
            auto loss = xgrad::cross_entropy(model(x), y);
            opt.zero_grad();
            loss.backward();
            xgrad::optim::clip_grad_norm(model.parameters(), 1.0);
            opt.step();
            loss_sum += loss.item();
            const std::size_t in_report = step % per_report + 1;
            progress.update(step % per_report, loss_sum / static_cast<double>(in_report), std::nan(""),
                            in_report * batch * len);
            if (in_report == per_report || step + 1 == steps) {
                const double v = validation_loss();
                progress.end_epoch(loss_sum / static_cast<double>(in_report), std::nan(""),
                                   fmt::format(" validation {:.3f} nats/char ({:.3f} bits)", v, v / std::log(2.0)));
                loss_sum = 0;
            }
        }
        const double v = validation_loss();
        fmt::print("validation loss {:.3f} nats per character ({:.3f} bits) after {} steps\n", v, v / std::log(2.0),
                   steps);
        // Sampling: one character at a time, the state carried along, from a newline.
        xgrad::NoGradGuard off;
        std::optional<nn::basic_recurrent_state<float>> state;
        float current = static_cast<float>(index[static_cast<unsigned char>('\n')]);
        std::string out;
        for (std::size_t i = 0; i < sample; ++i) {
            xt::xarray<float> one = xt::zeros<float>({1, 1});
            one(0, 0) = current;
            auto [logits, next] = model.run(Tensor(one), state);
            state = next;
            std::vector<double> p(vocab.size());
            double top = -1e30;
            for (std::size_t k = 0; k < p.size(); ++k) top = std::max(top, static_cast<double>(logits.value()(0, k)));
            for (std::size_t k = 0; k < p.size(); ++k)
                p[k] = std::exp((logits.value()(0, k) - top) / temperature);
            std::discrete_distribution<std::size_t> pick(p.begin(), p.end());
            const std::size_t k = pick(rng);
            out.push_back(vocab[k]);
            current = static_cast<float>(k);
        }
        fmt::print("sampled at temperature {}:\n{}\n", temperature, out);
        // Far below a uniform guess over the vocabulary, log(V) nats.
        return v < 0.8 * std::log(static_cast<double>(vocab.size())) ? 0 : 1;
    } catch (const xgrad::Error& e) {
        fmt::print(stderr, "char_lm: {}\n", e.what());
        return 1;
    }
}
