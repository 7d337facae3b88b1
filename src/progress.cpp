#include "xgrad/progress.hpp"

#include <cmath>

#include <unistd.h>

#include <fmt/format.h>

namespace xgrad {

Progress::Progress(Mode mode, std::FILE* out)
    : terminal_(mode == Mode::terminal || (mode == Mode::automatic && ::isatty(::fileno(out)))),
      quiet_(mode == Mode::quiet),
      out_(out) {}

void Progress::begin_epoch(std::size_t epoch, std::size_t epochs, std::size_t batches) {
    epoch_ = epoch;
    epochs_ = epochs;
    batches_ = batches;
    images_ = 0;
    train_seconds_ = 0;
    start_ = std::chrono::steady_clock::now();
    last_draw_ = {};
}

double Progress::train_seconds() const { return train_seconds_ > 0 ? train_seconds_ : seconds(); }

double Progress::seconds() const {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
}

void Progress::update(std::size_t batch, double loss, double accuracy, std::size_t images) {
    images_ = images;
    if (batch + 1 == batches_) train_seconds_ = seconds();
    if (quiet_ || !terminal_) return;
    const auto now = std::chrono::steady_clock::now();
    const bool last = batch + 1 == batches_;
    if (!last && now - last_draw_ < std::chrono::milliseconds(100)) return;
    last_draw_ = now;
    const double s = seconds();
    const double rate = s > 0 ? static_cast<double>(images) / s : 0;
    const double eta = batch + 1 > 0 ? s / static_cast<double>(batch + 1) * static_cast<double>(batches_ - batch - 1) : 0;
    constexpr std::size_t kWidth = 24;
    const std::size_t filled = batches_ ? kWidth * (batch + 1) / batches_ : kWidth;
    const std::string bar = std::string(filled, '=') + (filled < kWidth ? ">" : "") +
                            std::string(kWidth - filled - (filled < kWidth ? 1 : 0), ' ');
    const std::string acc = std::isnan(accuracy) ? "" : fmt::format(" acc {:.1f}%", 100 * accuracy);
    fmt::print(out_, "\r\033[2Kepoch {}/{} [{}] {}/{} loss {:.4f}{} {:.0f} img/s ETA {:.0f}s", epoch_ + 1, epochs_, bar,
               batch + 1, batches_, loss, acc, rate, eta);
    std::fflush(out_);
}

void Progress::end_epoch(double loss, double accuracy, const std::string& extra) {
    if (quiet_) return;
    const double s = train_seconds_ > 0 ? train_seconds_ : seconds();
    const std::string acc = std::isnan(accuracy) ? "" : fmt::format(" acc {:.2f}%", 100 * accuracy);
    fmt::print(out_, "{}epoch {}/{}: loss {:.4f}{}{} ({:.1f} s, {:.0f} img/s)\n", terminal_ ? "\r\033[2K" : "",
               epoch_ + 1, epochs_, loss, acc, extra, s, s > 0 ? static_cast<double>(images_) / s : 0.0);
    std::fflush(out_);
}

}  // namespace xgrad
