#pragma once

#include <cstdint>
#include <initializer_list>
#include <string>
#include <vector>

#include "xgrad/io/npz.hpp"
#include "xgrad/tensor.hpp"

namespace xgrad::optim {

/// The tensors an optimizer updates: float32 parameters (a Module's) or float64 ones (a
/// Module64's), never a mix. Converts from either list.
class ParamList {
public:
    ParamList() = default;
    ParamList(std::vector<Tensor> params) : float_(std::move(params)) {}      // NOLINT: implicit on purpose
    ParamList(std::vector<Tensor64> params) : double_(std::move(params)) {}   // NOLINT
    ParamList(std::initializer_list<Tensor> params) : float_(params) {}       // NOLINT: SGD opt({w}, ...)
    ParamList(std::initializer_list<Tensor64> params) : double_(params) {}    // NOLINT
    bool is_double() const { return !double_.empty(); }
    std::size_t size() const { return is_double() ? double_.size() : float_.size(); }
    const std::vector<Tensor>& floats() const { return float_; }
    const std::vector<Tensor64>& doubles() const { return double_; }

private:
    std::vector<Tensor> float_;
    std::vector<Tensor64> double_;
};

/// Base of the optimizers. Each step follows the formula of the torch.optim class of the
/// same name, element by element, under NoGradGuard, in the parameters' precision (float32
/// or float64; state slots in the same precision, constants such as 1 - beta formed in
/// double first); parameters without a gradient are skipped. Throws ValueError for a
/// negative learning rate or an invalid hyper-parameter.
class Optimizer {
public:
    /// `name` ("SGD") opens the optimizer's error messages. Throws ValueError for an empty
    /// parameter list, a parameter that does not require grad, or a negative or non-finite lr.
    Optimizer(ParamList params, double lr, std::string name = "optimizer");
    virtual ~Optimizer() = default;

    /// One update of every parameter from its gradient.
    void step();
    /// Sets every parameter's existing gradient to zero.
    void zero_grad();

    const std::string& name() const { return name_; }
    double lr() const { return lr_; }
    /// Throws ValueError for a negative rate.
    void set_lr(double lr);
    /// Number of completed steps.
    std::int64_t steps() const { return steps_; }
    /// The float32 parameters (empty for a float64 optimizer).
    const std::vector<Tensor>& params() const { return params_.floats(); }
    /// The float64 parameters (empty for a float32 optimizer).
    const std::vector<Tensor64>& params64() const { return params_.doubles(); }

    /// The per-parameter state (momentum buffers, moments) and the step count, named
    /// "<slot>.<parameter index>", for checkpoints.
    io::NpzArchive state() const;
    /// Restores what state() returned, all or nothing. Throws IoError when the state was saved
    /// by another optimizer or with other options (its `type` entry; states without one, from
    /// before it was recorded, are taken on their slots alone), when `steps` or `lr` is
    /// missing or not a single valid number (steps a whole number >= 0, lr finite and >= 0),
    /// when a slot is not one this optimizer keeps (another optimizer's or other options'
    /// checkpoint), when a parameter has some of its slots but not all, when steps > 0 and no
    /// parameter has any, or when a slot's shape differs from its parameter's.
    void load_state(const io::NpzArchive& state);
    /// The per-parameter slots update() keeps with these options ("momentum_buffer", ...).
    virtual std::vector<std::string> slot_names() const = 0;
    /// The hyper-parameters other than lr, as text ("momentum=0.9, dampening=0, ..."): state()
    /// records them with name(), and load_state() refuses a state saved with others.
    virtual std::string options() const = 0;

protected:
    /// Updates parameter i (value p, gradient g) at step t (1 for the first step), in the
    /// parameters' precision.
    virtual void update(std::size_t i, xt::xarray<float>& p, const xt::xarray<float>& g, std::int64_t t) = 0;
    virtual void update(std::size_t i, xt::xarray<double>& p, const xt::xarray<double>& g, std::int64_t t) = 0;
    /// A state slot of parameter i, filled with `init` on first use (then *created is true).
    template <class T>
    xt::xarray<T>& slot(const std::string& name, std::size_t i, T init = 0, bool* created = nullptr);

private:
    template <class T>
    using Slots = std::vector<std::pair<std::string, std::vector<xt::xarray<T>>>>;
    template <class T>
    Slots<T>& slots();
    template <class T>
    const Slots<T>& slots() const;
    template <class T>
    const std::vector<basic_tensor<T>>& typed_params() const;
    template <class T>
    void step_as();
    template <class T>
    io::NpzArchive state_as() const;
    template <class T>
    void load_state_as(const io::NpzArchive& state);

    ParamList params_;
    double lr_;
    std::string name_;
    std::int64_t steps_ = 0;
    Slots<float> slots_;
    Slots<double> slots64_;
};

/// The base of each optimizer: both update() overrides call Derived::run<T>, the one
/// formula written once for float32 and float64.
template <class Derived>
class OptimizerOf : public Optimizer {
public:
    using Optimizer::Optimizer;

protected:
    void update(std::size_t i, xt::xarray<float>& p, const xt::xarray<float>& g, std::int64_t t) override {
        static_cast<Derived*>(this)->run(i, p, g, t);
    }
    void update(std::size_t i, xt::xarray<double>& p, const xt::xarray<double>& g, std::int64_t t) override {
        static_cast<Derived*>(this)->run(i, p, g, t);
    }
};

struct SGDOptions {
    double lr = 0.01;
    double momentum = 0;
    double dampening = 0;
    double weight_decay = 0;
    bool nesterov = false;
};

/// torch.optim.SGD: g += wd·p; buf = g on the first step, then momentum·buf + (1 - dampening)·g;
/// g = g + momentum·buf (nesterov) or buf; p -= lr·g.
class SGD : public OptimizerOf<SGD> {
public:
    friend class OptimizerOf<SGD>;

    SGD(ParamList params, SGDOptions o = {});

    std::vector<std::string> slot_names() const override {
        return o_.momentum != 0 ? std::vector<std::string>{"momentum_buffer"} : std::vector<std::string>{};
    }
    std::string options() const override;

protected:
    template <class T>
    void run(std::size_t i, xt::xarray<T>& p, const xt::xarray<T>& g, std::int64_t t);

private:
    SGDOptions o_;
};

struct AdagradOptions {
    double lr = 0.01;
    double lr_decay = 0;
    double weight_decay = 0;
    double initial_accumulator_value = 0;
    double eps = 1e-10;
};

/// torch.optim.Adagrad: clr = lr / (1 + (t - 1)·lr_decay); sum += g²; p -= clr·g / (sqrt(sum) + eps).
class Adagrad : public OptimizerOf<Adagrad> {
public:
    friend class OptimizerOf<Adagrad>;

    Adagrad(ParamList params, AdagradOptions o = {});

    std::vector<std::string> slot_names() const override {
        return {"sum"};
    }
    std::string options() const override;

protected:
    template <class T>
    void run(std::size_t i, xt::xarray<T>& p, const xt::xarray<T>& g, std::int64_t t);

private:
    AdagradOptions o_;
};

struct RMSpropOptions {
    double lr = 0.01;
    double alpha = 0.99;
    double eps = 1e-8;
    double weight_decay = 0;
    double momentum = 0;
    bool centered = false;
};

/// torch.optim.RMSprop: v = alpha·v + (1 - alpha)·g²; centered: avg = sqrt(v - mean_g²) + eps,
/// else sqrt(v) + eps; with momentum buf = momentum·buf + g / avg, p -= lr·buf; else p -= lr·g / avg.
class RMSprop : public OptimizerOf<RMSprop> {
public:
    friend class OptimizerOf<RMSprop>;

    RMSprop(ParamList params, RMSpropOptions o = {});

    std::vector<std::string> slot_names() const override {
        std::vector<std::string> n{"square_avg"};
        if (o_.centered) n.push_back("grad_avg");
        if (o_.momentum > 0) n.push_back("momentum_buffer");
        return n;
    }
    std::string options() const override;

protected:
    template <class T>
    void run(std::size_t i, xt::xarray<T>& p, const xt::xarray<T>& g, std::int64_t t);

private:
    RMSpropOptions o_;
};

struct AdamOptions {
    double lr = 1e-3;
    double beta1 = 0.9;
    double beta2 = 0.999;
    double eps = 1e-8;
    double weight_decay = 0;  ///< Adam: added to the gradient; AdamW: decoupled (default 0.01)
    bool amsgrad = false;
};

/// torch.optim.Adam: m = b1·m + (1 - b1)·g; v = b2·v + (1 - b2)·g²;
/// p -= lr / (1 - b1^t) · m / (sqrt(v) / sqrt(1 - b2^t) + eps).
class Adam : public OptimizerOf<Adam> {
public:
    friend class OptimizerOf<Adam>;

    Adam(ParamList params, AdamOptions o = {});

    std::vector<std::string> slot_names() const override {
        std::vector<std::string> n{"exp_avg", "exp_avg_sq"};
        if (o_.amsgrad) n.push_back("max_exp_avg_sq");
        return n;
    }
    std::string options() const override;

protected:
    template <class T>
    void run(std::size_t i, xt::xarray<T>& p, const xt::xarray<T>& g, std::int64_t t);
    Adam(ParamList params, AdamOptions o, std::string name);
    AdamOptions o_;
    bool decoupled_ = false;
};

/// torch.optim.AdamW: p -= lr·wd·p, then the Adam step without weight decay in the gradient.
class AdamW : public Adam {
public:
    AdamW(ParamList params, AdamOptions o = {.weight_decay = 0.01});
};

/// Learning-rate schedules, stepped once per epoch: each sets the optimizer's rate from the
/// initial rate and the number of step() calls, as torch.optim.lr_scheduler.
class Scheduler {
public:
    explicit Scheduler(Optimizer& opt) : opt_(opt), base_lr_(opt.lr()) {}
    virtual ~Scheduler() = default;
    void step() { opt_.set_lr(rate(++epoch_)); }
    std::int64_t epoch() const { return epoch_; }

protected:
    virtual double rate(std::int64_t epoch) const = 0;
    Optimizer& opt_;
    double base_lr_;
    std::int64_t epoch_ = 0;
};

/// lr = base·gamma^floor(epoch / step_size).
class StepLR : public Scheduler {
public:
    StepLR(Optimizer& opt, std::int64_t step_size, double gamma = 0.1);

protected:
    double rate(std::int64_t epoch) const override;

private:
    std::int64_t step_size_;
    double gamma_;
};

/// lr = base·gamma^epoch.
class ExponentialLR : public Scheduler {
public:
    ExponentialLR(Optimizer& opt, double gamma);

protected:
    double rate(std::int64_t epoch) const override;

private:
    double gamma_;
};

/// lr = eta_min + (base - eta_min)·(1 + cos(π·epoch / t_max)) / 2.
class CosineAnnealingLR : public Scheduler {
public:
    CosineAnnealingLR(Optimizer& opt, std::int64_t t_max, double eta_min = 0);

protected:
    double rate(std::int64_t epoch) const override;

private:
    std::int64_t t_max_;
    double eta_min_;
};

/// Scales all gradients together so that their joint L2 norm is at most max_norm (as
/// torch.nn.utils.clip_grad_norm_); returns the norm before clipping. Throws ValueError for
/// max_norm <= 0.
double clip_grad_norm(const std::vector<Tensor>& params, double max_norm);
double clip_grad_norm(const std::vector<Tensor64>& params, double max_norm);

}  // namespace xgrad::optim
