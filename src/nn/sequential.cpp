#include "xgrad/nn/sequential.hpp"

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <limits>
#include <typeinfo>

#include <fmt/format.h>
#include <xtensor/xbuilder.hpp>

#include "detail/check.hpp"
#include "xgrad/io/checkpoint.hpp"
#include "xgrad/nn/metrics.hpp"
#include "xgrad/nn/layers.hpp"
#include "xgrad/ops/loss.hpp"
#include "xgrad/ops/pool.hpp"
#include "xgrad/ops/shape.hpp"
#include "xgrad/tape.hpp"

namespace xgrad::nn {

namespace {

template <class T>
std::size_t count(const std::vector<basic_tensor<T>>& ts) {
    std::size_t n = 0;
    for (const auto& t : ts) n += t.size();
    return n;
}

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

// The layer as an L when it is one, not a subclass (whose forward may differ); null otherwise.
template <class L, class M>
const L* exactly(const M* layer) {
    return typeid(*layer) == typeid(L) ? static_cast<const L*>(layer) : nullptr;
}

}  // namespace

template <class T>
basic_tensor<T> basic_sequential<T>::forward(const Tensor& x) {
    const auto& layers = this->children();
    Tensor h = x;
    for (std::size_t i = 0; i < layers.size(); ++i) {
        try {
            // A Conv2D with relu followed by MaxPool2D: one op, the pool taken while the
            // convolution's lines are in cache (the same numbers as the two layers).
            const auto* conv = exactly<basic_conv2d<T>>(layers[i].second.get());
            const auto* pool =
                i + 1 < layers.size() ? exactly<basic_max_pool2d<T>>(layers[i + 1].second.get()) : nullptr;
            if (conv && pool && conv->activation() == Activation::relu) {
                h = conv->forward_relu_max_pool(h, pool->options());
                ++i;
                continue;
            }
            h = (*layers[i].second)(h);
        } catch (const ShapeError& e) {
            throw ShapeError(fmt::format("Sequential layer {} ({}): {}", i, layers[i].second->type_name(), e.what()));
        } catch (const ValueError& e) {
            throw ValueError(fmt::format("Sequential layer {} ({}): {}", i, layers[i].second->type_name(), e.what()));
        }
    }
    return h;
}

template <class T>
std::string basic_sequential<T>::summary(bool print) const {
    if (input_shape_.empty()) return basic_module<T>::summary(print);
    NoGradGuard no_grad;
    Shape shape{1};
    shape.insert(shape.end(), input_shape_.begin(), input_shape_.end());
    Tensor h = zeros<T>(shape);
    std::string out = fmt::format("{:<24} {:<20} {:>10}\n{}\n", "Layer (type)", "Output shape", "Params",
                                  std::string(56, '='));
    std::size_t total = 0, trainable = 0;
    for (const auto& [name, layer] : this->children()) {
        const bool was_training = layer->is_training();
        layer->eval();  // no batch statistics are updated by the probe
        h = (*layer)(h);
        layer->train(was_training);
        Shape s = h.shape();
        std::string shown = "[N" + (s.size() > 1 ? ", " + to_string(Shape(s.begin() + 1, s.end())).substr(1) : "]");
        const std::size_t p = count(layer->parameters());
        std::size_t b = 0;
        for (const auto& [n, t] : layer->named_buffers()) b += t.size();
        fmt::format_to(std::back_inserter(out), "{:<24} {:<20} {:>10}\n", name + " (" + layer->type_name() + ")",
                       shown, p);
        trainable += p;
        total += p + b;
    }
    fmt::format_to(std::back_inserter(out), "{}\nTotal params: {}\nTrainable params: {}\nNon-trainable (buffers): {}\n",
                   std::string(56, '='), total, trainable, total - trainable);
    if (print) fmt::print("{}", out);
    return out;
}

template <class T>
void basic_sequential<T>::compile(std::shared_ptr<optim::Optimizer> optimizer, Loss loss) {
    detail::check_value(optimizer != nullptr, "Sequential::compile: the optimizer is null");
    detail::check_value(optimizer->params64().empty() == std::is_same_v<T, float>,
                        "Sequential::compile: the optimizer updates float{} parameters, the model is float{}",
                        optimizer->params64().empty() ? 32 : 64, std::is_same_v<T, float> ? 32 : 64);
    optimizer_ = std::move(optimizer);
    loss_ = loss;
}

template <class T>
basic_tensor<T> basic_sequential<T>::loss_of(const Tensor& out, const Tensor& y) const {
    switch (loss_) {
        case Loss::cross_entropy: return cross_entropy(out, y);
        case Loss::mse: return mse_loss(out, y);
        case Loss::nll: return nll_loss(out, y);
        case Loss::huber: return huber_loss(out, y);
        case Loss::l1: return l1_loss(out, y);
        case Loss::binary_cross_entropy: return binary_cross_entropy(out, y);
        case Loss::binary_cross_entropy_with_logits: return binary_cross_entropy_with_logits(out, y);
    }
    return cross_entropy(out, y);
}

template <class T>
std::size_t basic_sequential<T>::correct(const Tensor& out, const Tensor& y) const {
    if (classifies()) return count_correct(out, y);
    const T threshold = loss_ == Loss::binary_cross_entropy ? T(0.5) : T(0);
    std::size_t n = 0;
    for (std::size_t i = 0; i < out.size(); ++i)
        n += (out.value().data()[i] > threshold) == (y.value().data()[i] > T(0.5));
    return n;
}

template <class T>
Evaluation basic_sequential<T>::evaluate(const Dataset& data, std::size_t batch_size) {
    return evaluate_loader(data::basic_data_loader<T>(data, {.batch_size = batch_size, .shuffle = false}));
}

template <class T>
Evaluation basic_sequential<T>::evaluate(std::shared_ptr<const data::basic_source<T>> data, std::size_t batch_size) {
    return evaluate_loader(
        data::basic_data_loader<T>(std::move(data), {.batch_size = batch_size, .shuffle = false, .prefetch = true}));
}

template <class T>
Evaluation basic_sequential<T>::evaluate_loader(const data::basic_data_loader<T>& loader) {
    NoGradGuard no_grad;
    const bool was_training = this->is_training();
    this->eval();
    double loss = 0, right = 0, targets = 0, samples = 0;
    for (std::size_t i = 0; i < loader.size(); ++i) {
        const auto b = loader.batch(0, i);
        const auto out = forward(b.x);
        const auto rows = static_cast<double>(b.x.shape()[0]);
        loss += loss_of(out, b.y).item() * rows;
        right += static_cast<double>(correct(out, b.y));
        targets += classifies() ? rows : static_cast<double>(b.y.size());
        samples += rows;
    }
    this->train(was_training);
    return {loss / samples, regression() ? kNaN : right / targets};
}

template <class T>
basic_tensor<T> basic_sequential<T>::predict(const Tensor& x, std::size_t batch_size) {
    detail::check_value(batch_size > 0, "Sequential::predict: batch_size must be positive");
    detail::check_shape(x.dim() >= 1, "Sequential::predict: x must have a batch axis, got x {}", x.shape());
    NoGradGuard no_grad;
    const bool was_training = this->is_training();
    this->eval();
    std::vector<Tensor> parts;
    const std::size_t n = x.shape()[0];
    if (n == 0) parts.push_back(forward(x));  // an empty batch: the model's empty output
    for (std::size_t begin = 0; begin < n; begin += batch_size) {
        std::vector<std::size_t> idx;
        for (std::size_t i = begin; i < std::min(n, begin + batch_size); ++i) idx.push_back(i);
        parts.push_back(forward(data::take_rows(x, idx)));
    }
    this->train(was_training);
    return parts.size() == 1 ? parts[0] : concat(parts, 0);
}

namespace {

// The monitored figure of an epoch, as a number where smaller is better (accuracies negated),
// or nothing when the epoch lacks it.
std::optional<double> monitored(const EpochMetrics& m, Monitor monitor) {
    switch (monitor) {
        case Monitor::automatic: return m.val_loss ? m.val_loss : std::optional<double>(m.loss);
        case Monitor::loss: return m.loss;
        case Monitor::accuracy: return -m.accuracy;
        case Monitor::val_loss: return m.val_loss;
        case Monitor::val_accuracy: return m.val_accuracy ? std::optional<double>(-*m.val_accuracy) : std::nullopt;
    }
    return std::nullopt;
}

}  // namespace

template <class T>
void basic_sequential<T>::check_fit(const basic_fit_options<T>& o) const {
    detail::check_value(optimizer_ != nullptr, "Sequential::fit: call compile(optimizer, loss) first");
    detail::check_value(o.epochs >= 1, "Sequential::fit: epochs must be at least 1, got {}", o.epochs);
    detail::check_value(o.initial_epoch >= 0 && o.initial_epoch < o.epochs,
                        "Sequential::fit: initial_epoch must be in [0, epochs), got {} with epochs {}", o.initial_epoch,
                        o.epochs);
    detail::check_value(o.validation_split >= 0 && o.validation_split < 1,
                        "Sequential::fit: validation_split must be in [0, 1), got {}", o.validation_split);
    detail::check_value(!(o.validation_data && o.validation_source),
                        "Sequential::fit: give validation_data or validation_source, not both");
    const bool validating = o.validation_data || o.validation_source || o.validation_split > 0;
    detail::check_value(validating || (o.monitor != Monitor::val_loss && o.monitor != Monitor::val_accuracy),
                        "Sequential::fit: the monitor is a validation figure, but there is no validation data "
                        "(validation_data, validation_source or validation_split)");
    detail::check_value(!regression() || (o.monitor != Monitor::accuracy && o.monitor != Monitor::val_accuracy),
                        "Sequential::fit: the monitor is an accuracy, which a regression loss has not");
    detail::check_value(!o.scheduler || o.scheduler->optimizer() == optimizer_.get(),
                        "Sequential::fit: the scheduler ({}) was built on another optimizer than the compiled {}",
                        o.scheduler ? o.scheduler->name() : "", optimizer_->name());
}

namespace {

data::LoaderOptions loader_options(const auto& o) {
    return {.batch_size = o.batch_size,
            .shuffle = o.shuffle,
            .seed = o.seed,
            .drop_last = o.drop_last,
            .augment = o.augment,
            .prefetch = o.prefetch};
}

}  // namespace

template <class T>
History basic_sequential<T>::fit(const Dataset& train_in, const basic_fit_options<T>& o) {
    check_fit(o);
    Dataset train_set = train_in, held_out;
    const Dataset* validation = o.validation_data;
    if (!validation && !o.validation_source && o.validation_split > 0) {
        const auto n = train_in.size();
        const auto keep = n - static_cast<std::size_t>(std::floor(static_cast<double>(n) * o.validation_split));
        held_out = train_in.slice(keep, n);
        train_set = train_in.slice(0, keep);
        validation = &held_out;
    }
    return fit_loader(data::basic_data_loader<T>(train_set, loader_options(o)), validation, o);
}

template <class T>
History basic_sequential<T>::fit(std::shared_ptr<const data::basic_source<T>> train, const basic_fit_options<T>& o) {
    check_fit(o);
    detail::check_value(o.validation_split == 0,
                        "Sequential::fit: validation_split needs an in-memory Dataset; give a Source's validation "
                        "samples as validation_source (or validation_data)");
    return fit_loader(data::basic_data_loader<T>(std::move(train), loader_options(o)), o.validation_data, o);
}

template <class T>
History basic_sequential<T>::fit_loader(const data::basic_data_loader<T>& loader, const Dataset* validation,
                                        const basic_fit_options<T>& o) {
    Progress progress(o.progress);
    History history;
    std::optional<double> best;
    std::size_t since_best = 0;
    std::vector<xt::xarray<T>> best_state;  // for EarlyStopping::restore_best
    this->train();
    bool go_on = true;
    for (int e = o.initial_epoch; e < o.epochs && go_on; ++e) {
        const auto epoch = static_cast<std::size_t>(e);
        progress.begin_epoch(epoch, static_cast<std::size_t>(o.epochs), loader.size());
        double loss_sum = 0, right = 0, targets = 0;
        std::size_t seen = 0;
        for (std::size_t i = 0; i < loader.size() && go_on; ++i) {
            const auto b = loader.batch(epoch, i);
            const auto out = forward(b.x);
            auto loss = loss_of(out, b.y);
            optimizer_->zero_grad();
            loss.backward();
            const double lr = optimizer_->lr();
            optimizer_->step();
            if (o.scheduler && o.scheduler->per_batch()) o.scheduler->step();
            const std::size_t rows = b.x.shape()[0];
            seen += rows;
            loss_sum += loss.item() * static_cast<double>(rows);
            right += static_cast<double>(correct(out, b.y));
            targets += static_cast<double>(classifies() ? rows : b.y.size());
            progress.update(i, loss_sum / static_cast<double>(seen), regression() ? 0.0 : right / targets, seen);
            const BatchMetrics bm{epoch + 1, i, loader.size(), loss.item(), lr};
            for (const auto& cb : o.batch_callbacks) go_on = cb(bm) && go_on;
        }
        EpochMetrics m;
        m.epoch = epoch + 1;
        m.loss = seen ? loss_sum / static_cast<double>(seen) : kNaN;
        m.accuracy = regression() || !seen ? kNaN : right / targets;
        m.seconds = progress.train_seconds();
        std::string extra;
        if (validation || o.validation_source) {
            const auto v = validation ? evaluate(*validation) : evaluate(o.validation_source);
            m.val_loss = v.loss;
            m.val_accuracy = v.accuracy;
            extra = fmt::format(", val loss {:.4f} acc {:.2f}%", v.loss, 100 * v.accuracy);
        }
        progress.end_epoch(m.loss, std::isnan(m.accuracy) ? 0.0 : m.accuracy, extra);
        history.epochs.push_back(m);
        if (!o.csv_log.empty()) write_history_csv(history, o.csv_log);
        const auto figure = monitored(m, o.monitor);
        if (o.scheduler && !o.scheduler->per_batch()) o.scheduler->step(figure);
        // A new best: beats the best so far by more than min_delta (NaN never does).
        const double delta = o.early_stopping ? o.early_stopping->min_delta : 0;
        const bool improved = figure && !std::isnan(*figure) && (!best || *figure < *best - delta);
        if (improved) {
            best = figure;
            since_best = 0;
            if (!o.best_model.empty()) this->save(o.best_model);
            if (o.early_stopping && o.early_stopping->restore_best) {
                best_state.clear();
                for (const auto& [name, t] : this->state()) best_state.push_back(t.value());
            }
        } else {
            ++since_best;
        }
        if (!o.checkpoint.empty()) io::save_checkpoint(o.checkpoint, *this, *optimizer_, e + 1, o.scheduler);
        for (const auto& cb : o.callbacks) go_on = cb(m) && go_on;
        if (o.early_stopping && since_best >= o.early_stopping->patience && best) {
            if (o.progress != Progress::Mode::quiet)
                fmt::print("early stopping after epoch {}: no improvement for {} epochs{}\n", epoch + 1, since_best,
                           o.early_stopping->restore_best ? "; weights of the best epoch restored" : "");
            go_on = false;
        }
    }
    if (o.early_stopping && o.early_stopping->restore_best && !best_state.empty()) {
        NoGradGuard no_grad;
        std::size_t k = 0;
        for (auto& [name, t] : this->state()) t.mutable_value() = best_state[k++];
    }
    if (!o.plot.empty() && !plot_history(history, o.plot))
        fmt::print("note: gnuplot is not installed, so no plot was drawn ({})\n", o.plot);
    return history;
}

template class basic_sequential<float>;
template class basic_sequential<double>;

void write_history_csv(const History& history, const std::string& path) {
    std::ofstream f(path);
    if (!f) throw IoError("csv: cannot write " + path);
    f << "epoch,loss,accuracy,val_loss,val_accuracy,seconds\n";
    auto opt = [](const std::optional<double>& v) { return v ? fmt::format("{:.6f}", *v) : std::string(); };
    for (const auto& m : history.epochs)
        f << fmt::format("{},{:.6f},{:.6f},{},{},{:.3f}\n", m.epoch, m.loss, m.accuracy, opt(m.val_loss),
                         opt(m.val_accuracy), m.seconds);
    if (!f) throw IoError("csv: writing " + path + " failed");
}

bool plot_history(const History& history, const std::string& png_path) {
    if (std::system("command -v gnuplot >/dev/null 2>&1") != 0) return false;
    const std::string data = png_path + ".dat";
    {
        std::ofstream f(data);
        if (!f) throw IoError("plot: cannot write " + data);
        for (const auto& m : history.epochs)
            f << fmt::format("{} {} {} {} {}\n", m.epoch, m.loss, m.accuracy, m.val_loss.value_or(kNaN),
                             m.val_accuracy.value_or(kNaN));
    }
    std::FILE* g = ::popen("gnuplot", "w");
    if (!g) return false;
    fmt::print(g,
               "set terminal png size 1000,400\nset output '{0}'\nset multiplot layout 1,2\nset xlabel 'epoch'\nset xtics 1\nset key top right\n"
               "set title 'loss'\nplot '{1}' using 1:2 with linespoints title 'train', '' using 1:4 with linespoints "
               "title 'validation'\nset title 'accuracy'\nplot '{1}' using 1:3 with linespoints title 'train', '' "
               "using 1:5 with linespoints title 'validation'\nunset multiplot\n",
               png_path, data);
    const bool ok = ::pclose(g) == 0;
    std::remove(data.c_str());
    return ok;
}

}  // namespace xgrad::nn
