#pragma once

#include <chrono>
#include <cstddef>
#include <cstdio>
#include <string>

namespace xgrad {

/// A training progress display. On a terminal it redraws one line
/// `epoch 1/3 [=====>    ] 412/938 loss 0.4123 acc 85.1% 5210 img/s ETA 12s` at most ten
/// times a second; elsewhere (a log file, CI) it stays silent until the epoch ends. Either
/// way, end_epoch() prints one summary line. Quiet mode prints nothing.
class Progress {
public:
    enum class Mode { automatic, terminal, lines, quiet };

    explicit Progress(Mode mode = Mode::automatic, std::FILE* out = stdout);

    /// Starts an epoch of `batches` batches.
    void begin_epoch(std::size_t epoch, std::size_t epochs, std::size_t batches);
    /// After each batch: running mean loss and accuracy (a fraction; NaN for none, as for a
    /// regression or an autoencoder: the line then shows no accuracy), images so far.
    void update(std::size_t batch, double loss, double accuracy, std::size_t images);
    /// Ends the epoch with its summary line (`extra` is appended, e.g. validation figures).
    void end_epoch(double loss, double accuracy, const std::string& extra = "");
    /// Seconds since begin_epoch().
    double seconds() const;
    /// Seconds from begin_epoch() to the update of the last batch (what end_epoch reports,
    /// leaving out evaluation after it).
    double train_seconds() const;

private:
    bool terminal_;
    bool quiet_;
    std::FILE* out_;
    std::size_t epoch_ = 0, epochs_ = 0, batches_ = 0, images_ = 0;
    double train_seconds_ = 0;
    std::chrono::steady_clock::time_point start_, last_draw_;
};

}  // namespace xgrad
