#pragma once

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "xgrad/data/dataset.hpp"
#include "xgrad/nn/module.hpp"
#include "xgrad/optim/optimizer.hpp"
#include "xgrad/progress.hpp"

namespace xgrad::nn {

/// The loss Sequential::fit minimises.
enum class Loss {
    cross_entropy,                     ///< logits [N, K], targets class indices or one-hot
    mse,                               ///< outputs and targets of the same shape
    binary_cross_entropy,              ///< probabilities (after a Sigmoid) and 0/1 targets
    binary_cross_entropy_with_logits,  ///< logits and 0/1 targets
    nll,                               ///< log-probabilities (after log_softmax) and class indices
    huber,                             ///< huber_loss with delta 1, outputs and targets of the same shape
    l1,                                ///< mean absolute error
};

/// One epoch's figures. Accuracy is the fraction of correct predictions (argmax for
/// cross-entropy and nll, a 0.5 threshold for the binary losses) and NaN for the regression
/// losses (mse, huber, l1).
struct EpochMetrics {
    std::size_t epoch = 0;  ///< from 1, as the progress line and the CSV count
    double loss = 0, accuracy = 0;
    std::optional<double> val_loss, val_accuracy;
    double seconds = 0;  ///< training time of the epoch
};

struct History {
    std::vector<EpochMetrics> epochs;
};

/// Called after every epoch; returning false stops training.
using Callback = std::function<bool(const EpochMetrics&)>;

/// One training batch's figures, for per-batch callbacks.
struct BatchMetrics {
    std::size_t epoch = 0;  ///< from 1
    std::size_t batch = 0;  ///< from 0 within the epoch
    std::size_t batches = 0;  ///< per epoch
    double loss = 0;          ///< of this batch
    double lr = 0;            ///< the rate this batch's update used (the first group's)
};

/// Called after every batch's update; returning false stops training after it.
using BatchCallback = std::function<bool(const BatchMetrics&)>;

/// The epoch figure that early stopping, best-model saving and ReduceLROnPlateau watch.
enum class Monitor {
    automatic,     ///< val_loss with validation data, else loss
    loss,
    accuracy,
    val_loss,
    val_accuracy,
};

/// Stop when the monitored figure has not improved by more than min_delta for `patience`
/// epochs (Keras's EarlyStopping); with restore_best the model ends with the weights (and
/// buffers) of its best epoch.
struct EarlyStopping {
    std::size_t patience = 5;
    double min_delta = 0;
    bool restore_best = true;
};

template <class T>
struct basic_fit_options {
    int epochs = 1;
    std::size_t batch_size = 32;
    bool shuffle = true;
    std::uint64_t seed = 0;  ///< with the epoch, fixes the order of the samples
    /// Validation data, or the last `validation_split` of the training data (not trained on).
    const data::basic_dataset<T>* validation_data = nullptr;
    /// Validation samples read on demand (an ImageFolder), instead of validation_data.
    std::shared_ptr<const data::basic_source<T>> validation_source{};
    double validation_split = 0;
    std::vector<Callback> callbacks{};
    std::vector<BatchCallback> batch_callbacks{};
    /// Skip a last batch smaller than batch_size (BatchNorm cannot train on one sample).
    bool drop_last = false;
    /// Epochs already done (resuming from load_checkpoint's count): training runs epochs
    /// initial_epoch + 1 ... epochs, with the same data order as an uninterrupted run.
    int initial_epoch = 0;
    /// Stepped after every batch (per-batch schedules such as OneCycleLR) or every epoch (with
    /// the monitored figure, which ReduceLROnPlateau uses). Must be built on the compiled optimizer.
    optim::Scheduler* scheduler = nullptr;
    Monitor monitor = Monitor::automatic;
    std::optional<EarlyStopping> early_stopping{};
    /// When set, a checkpoint (model, optimizer, scheduler, epoch) is written here after every
    /// epoch: io::load_checkpoint and initial_epoch resume from it.
    std::string checkpoint{};
    /// When set, the model's weights are saved here (Module::save) whenever the monitored figure
    /// reaches a new best.
    std::string best_model{};
    Progress::Mode progress = Progress::Mode::automatic;
    std::string csv_log{};  ///< when set, per-epoch metrics are written to this CSV file
    std::string plot{};     ///< when set, a PNG of the loss and accuracy curves (needs gnuplot)
    /// Random augmentation of the training batches (never of the validation data).
    data::Augment augment{};
    /// Prepare the next training batch on a worker thread (LoaderOptions::prefetch): worth it
    /// when reading or augmenting a batch takes a noticeable share of a step. Same results.
    bool prefetch = false;
};
using FitOptions = basic_fit_options<float>;

struct Evaluation {
    double loss = 0, accuracy = 0;
};

/// Layers applied one after the other, with a Keras-like interface:
///
/// ```
/// xgrad::nn::Sequential model({28, 28, 1});
/// model.add(Conv2D(1, 32, 3, {.padding = Padding::same}, Activation::relu))
///      .add(MaxPool2D({.kernel = 2}))
///      .add(Flatten())
///      .add(Dense(14 * 14 * 32, 10));
/// model.summary();
/// model.compile(std::make_shared<xgrad::optim::SGD>(model.parameters(), xgrad::optim::SGDOptions{.lr = 0.01}));
/// auto history = model.fit(train, {.epochs = 3, .batch_size = 64, .validation_data = &test});
/// ```
///
/// `Sequential64` is the same in float64, with float64 layers (`Dense64`, ...) and data
/// (`Dataset64`).
template <class T>
class basic_sequential : public basic_module<T> {
public:
    using Tensor = basic_tensor<T>;
    using Dataset = data::basic_dataset<T>;

    /// `input_shape` is the shape of one sample ([28, 28, 1]); summary() needs it.
    explicit basic_sequential(Shape input_shape = {}) : input_shape_(std::move(input_shape)) {}

    /// Appends a layer (by value or shared_ptr); named "0", "1", ... in parameter paths.
    template <class L>
    basic_sequential& add(L layer) {
        this->add_module(std::to_string(this->children().size()), std::move(layer));
        return *this;
    }

    /// The layers in order. An error in a layer is rethrown (same type) with the layer's index
    /// and type first: "Sequential layer 2 (Dense): matmul: ...".
    Tensor forward(const Tensor& x) override;
    std::string type_name() const override { return "Sequential"; }

    /// A table of layers, output shapes and parameter counts with totals. Prints it to
    /// stdout unless `print` is false; returns it. Without an input shape, Module's table
    /// (no output shapes). Throws the error of the first layer that does not fit its input.
    std::string summary(bool print = true) const override;

    /// Chooses the optimizer and the loss of fit(). Throws ValueError for a null optimizer.
    void compile(std::shared_ptr<optim::Optimizer> optimizer, Loss loss = Loss::cross_entropy);
    /// Trains on `train` (batches of batch_size, shuffled every epoch) and returns each
    /// epoch's metrics. Throws ValueError when not compiled or for bad options (a monitor
    /// that needs validation data without any, a scheduler on another optimizer).
    History fit(const Dataset& train, const basic_fit_options<T>& options = {});
    /// Trains on a Source's samples (read on demand; see data::basic_source), with the same
    /// options except validation_split (give validation_source or validation_data instead:
    /// ValueError otherwise).
    History fit(std::shared_ptr<const data::basic_source<T>> train, const basic_fit_options<T>& options = {});
    /// Loss and accuracy over `data`, in batches, in eval mode, without recording.
    Evaluation evaluate(const Dataset& data, std::size_t batch_size = 256);
    /// The same over a Source's samples (read ahead on a worker thread).
    Evaluation evaluate(std::shared_ptr<const data::basic_source<T>> data, std::size_t batch_size = 256);
    /// Outputs for x [N, ...], computed in batches in eval mode (never the whole set at once).
    Tensor predict(const Tensor& x, std::size_t batch_size = 256);

private:
    void check_fit(const basic_fit_options<T>& options) const;
    Evaluation evaluate_loader(const data::basic_data_loader<T>& loader);
    History fit_loader(const data::basic_data_loader<T>& loader, const Dataset* validation,
                       const basic_fit_options<T>& options);
    Tensor loss_of(const Tensor& out, const Tensor& y) const;
    std::size_t correct(const Tensor& out, const Tensor& y) const;
    bool classifies() const { return loss_ == Loss::cross_entropy || loss_ == Loss::nll; }
    bool regression() const { return loss_ == Loss::mse || loss_ == Loss::huber || loss_ == Loss::l1; }

    Shape input_shape_;
    std::shared_ptr<optim::Optimizer> optimizer_;
    Loss loss_ = Loss::cross_entropy;
};
using Sequential = basic_sequential<float>;
using Sequential64 = basic_sequential<double>;

/// Writes per-epoch metrics as CSV (epoch, loss, accuracy, val_loss, val_accuracy, seconds).
/// Throws IoError.
void write_history_csv(const History& history, const std::string& path);
/// Draws the loss and accuracy curves to a PNG with gnuplot. Returns false (and draws
/// nothing) when gnuplot is not installed.
bool plot_history(const History& history, const std::string& png_path);

}  // namespace xgrad::nn
