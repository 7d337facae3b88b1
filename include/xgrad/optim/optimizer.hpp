#pragma once

#include <cstdint>
#include <functional>
#include <initializer_list>
#include <optional>
#include <string>
#include <vector>

#include "xgrad/io/npz.hpp"
#include "xgrad/tensor.hpp"

namespace xgrad::optim {

/// A parameter group: tensors that share a learning rate and weight decay other than the
/// optimizer's (torch.optim's param_groups). Unset fields take the optimizer's options.
///
/// ```
/// // no weight decay on biases and normalisation scales, a tenth of the rate for the stem:
/// optim::AdamW opt({{.params = weights}, {.params = biases_and_norms, .weight_decay = 0},
///                   {.params = stem, .lr = 1e-4}}, {.lr = 1e-3});
/// ```
struct ParamGroup {
    std::vector<Tensor> params{};      ///< float32 parameters, or
    std::vector<Tensor64> params64{};  ///< float64 ones (every group of an optimizer the same)
    std::optional<double> lr{};
    std::optional<double> weight_decay{};
};

/// The tensors an optimizer updates: float32 parameters (a Module's) or float64 ones (a
/// Module64's), never a mix, in one group or several. Converts from either list (one group)
/// or from a list of ParamGroup.
class ParamList {
public:
    /// One group's place in the flat list and its overrides.
    struct Group {
        std::size_t begin = 0, end = 0;
        std::optional<double> lr, weight_decay;
    };

    ParamList() = default;
    ParamList(std::vector<Tensor> params);                      // NOLINT: implicit on purpose
    ParamList(std::vector<Tensor64> params);                    // NOLINT
    ParamList(std::initializer_list<Tensor> params);            // NOLINT: SGD opt({w}, ...)
    ParamList(std::initializer_list<Tensor64> params);          // NOLINT
    /// Throws ValueError when the groups mix float32 and float64 tensors or one is empty.
    ParamList(std::vector<ParamGroup> groups);                  // NOLINT
    ParamList(std::initializer_list<ParamGroup> groups) : ParamList(std::vector<ParamGroup>(groups)) {}  // NOLINT
    bool is_double() const { return !double_.empty(); }
    std::size_t size() const { return is_double() ? double_.size() : float_.size(); }
    const std::vector<Tensor>& floats() const { return float_; }
    const std::vector<Tensor64>& doubles() const { return double_; }
    const std::vector<Group>& groups() const { return groups_; }

private:
    std::vector<Tensor> float_;
    std::vector<Tensor64> double_;
    std::vector<Group> groups_;
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
    /// The learning rate of the first parameter group (of every group when there is one).
    double lr() const { return lr_.front(); }
    /// The learning rate of parameter group `group`. Throws ValueError for a group it does not have.
    double lr(std::size_t group) const;
    /// Sets the rate of every group. Throws ValueError for a negative or non-finite rate.
    void set_lr(double lr);
    /// Sets the rate of one group. Throws ValueError as set_lr and for a group it does not have.
    void set_lr(std::size_t group, double lr);
    /// Number of parameter groups (1 unless the optimizer was given a list of ParamGroup).
    std::size_t groups() const { return lr_.size(); }
    /// Number of completed steps.
    std::int64_t steps() const { return steps_; }
    /// The float32 parameters (empty for a float64 optimizer).
    const std::vector<Tensor>& params() const { return params_.floats(); }
    /// The float64 parameters (empty for a float32 optimizer).
    const std::vector<Tensor64>& params64() const { return params_.doubles(); }

    /// The per-parameter state (momentum buffers, moments), the step count and the groups'
    /// learning rates, named "<slot>.<parameter index>", for checkpoints.
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
    /// records them with name() and the groups' sizes and weight decays, and load_state()
    /// refuses a state saved with others.
    virtual std::string options() const = 0;

protected:
    /// Updates parameter i (value p, gradient g) at step t (1 for the first step), in the
    /// parameters' precision.
    virtual void update(std::size_t i, xt::xarray<float>& p, const xt::xarray<float>& g, std::int64_t t) = 0;
    virtual void update(std::size_t i, xt::xarray<double>& p, const xt::xarray<double>& g, std::int64_t t) = 0;
    /// The learning rate of parameter i (its group's).
    double lr_of(std::size_t i) const { return lr_[group_[i]]; }
    /// The weight decay of parameter i: its group's, else `fallback` (the optimizer's option).
    double weight_decay_of(std::size_t i, double fallback) const {
        return params_.groups()[group_[i]].weight_decay.value_or(fallback);
    }
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

    std::string type() const;

    ParamList params_;
    std::vector<std::size_t> group_;  // parameter index -> group
    std::vector<double> lr_;          // per group
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

/// Base of the learning-rate schedules (torch.optim.lr_scheduler). A schedule sets each
/// group's rate from the rate that group had when the schedule was built (its base) and the
/// number of step() calls; it sets the rate for step 0 when it is built. Step it once per
/// epoch, or once per batch for the per-batch schedules (OneCycleLR); `Sequential::fit` does
/// either when given one (FitOptions::scheduler). state() and load_state() (used by the
/// checkpoints) make a resumed run continue exactly.
class Scheduler {
public:
    Scheduler(Optimizer& opt, std::string name);
    virtual ~Scheduler() = default;
    Scheduler(const Scheduler&) = delete;
    Scheduler& operator=(const Scheduler&) = delete;

    /// Advances one epoch (or batch). `metric` is what ReduceLROnPlateau watches; the other
    /// schedules ignore it.
    virtual void step(std::optional<double> metric = std::nullopt);
    /// Number of step() calls so far.
    std::int64_t epoch() const { return epoch_; }
    const std::string& name() const { return name_; }
    /// The optimizer whose rates it sets.
    const Optimizer* optimizer() const { return &opt_; }
    /// True for a schedule meant to be stepped after every batch (fit does so).
    virtual bool per_batch() const { return false; }
    /// The step count, the base rates and what the schedule keeps besides, for checkpoints.
    io::NpzArchive state() const;
    /// Restores what state() returned, all or nothing. Throws IoError when it was saved by
    /// another schedule or with other options, for another number of groups, or is malformed.
    void load_state(const io::NpzArchive& state);

protected:
    /// The rate of a group whose base rate is `base`, after `epoch` steps.
    virtual double rate(double base, std::int64_t epoch) const = 0;
    /// The options as text, recorded in state() and checked by load_state().
    virtual std::string options() const = 0;
    /// Extra state entries (ReduceLROnPlateau's best metric and counters).
    virtual void save_extra(io::NpzArchive&) const {}
    /// Checks and applies what save_extra wrote; throws IoError before changing anything.
    virtual void load_extra(const io::NpzArchive&) {}
    /// Sets every group's rate for the current step count.
    void apply();

    Optimizer& opt_;
    std::vector<double> base_lr_;
    std::int64_t epoch_ = 0;
    std::string name_;
};

/// lr = base·gamma^floor(epoch / step_size).
class StepLR : public Scheduler {
public:
    StepLR(Optimizer& opt, std::int64_t step_size, double gamma = 0.1);

protected:
    double rate(double base, std::int64_t epoch) const override;
    std::string options() const override;

private:
    std::int64_t step_size_;
    double gamma_;
};

/// lr = base·gamma^(number of milestones <= epoch); milestones increasing.
class MultiStepLR : public Scheduler {
public:
    MultiStepLR(Optimizer& opt, std::vector<std::int64_t> milestones, double gamma = 0.1);

protected:
    double rate(double base, std::int64_t epoch) const override;
    std::string options() const override;

private:
    std::vector<std::int64_t> milestones_;
    double gamma_;
};

/// lr = base·gamma^epoch.
class ExponentialLR : public Scheduler {
public:
    ExponentialLR(Optimizer& opt, double gamma);

protected:
    double rate(double base, std::int64_t epoch) const override;
    std::string options() const override;

private:
    double gamma_;
};

/// lr = eta_min + (base - eta_min)·(1 + cos(π·epoch / t_max)) / 2.
class CosineAnnealingLR : public Scheduler {
public:
    CosineAnnealingLR(Optimizer& opt, std::int64_t t_max, double eta_min = 0);

protected:
    double rate(double base, std::int64_t epoch) const override;
    std::string options() const override;

private:
    std::int64_t t_max_;
    double eta_min_;
};

struct LinearLROptions {
    double start_factor = 1.0 / 3;
    double end_factor = 1.0;
    std::int64_t total_iters = 5;
};

/// Linear warmup (or decay): lr = base·(start + (end - start)·min(epoch, total_iters) / total_iters).
class LinearLR : public Scheduler {
public:
    LinearLR(Optimizer& opt, LinearLROptions o = {});

protected:
    double rate(double base, std::int64_t epoch) const override;
    std::string options() const override;

private:
    LinearLROptions o_;
};

/// lr = base·factor(epoch), for any function of the step count. The function cannot be
/// saved: a resumed run must build the schedule with the same one.
class LambdaLR : public Scheduler {
public:
    LambdaLR(Optimizer& opt, std::function<double(std::int64_t)> factor);

protected:
    double rate(double base, std::int64_t epoch) const override;
    std::string options() const override { return ""; }

private:
    std::function<double(std::int64_t)> factor_;
};

struct OneCycleOptions {
    double max_lr = 0.1;
    std::int64_t total_steps = 0;  ///< required: batches per epoch x epochs
    double pct_start = 0.3;        ///< fraction of the steps spent raising the rate
    double div_factor = 25;        ///< initial rate = max_lr / div_factor
    double final_div_factor = 1e4; ///< final rate = initial rate / final_div_factor
};

/// torch.optim.lr_scheduler.OneCycleLR with cosine annealing, stepped per batch: the rate rises
/// from max_lr / div_factor to max_lr over pct_start of total_steps, then falls to
/// initial / final_div_factor (the same max_lr for every group), reached at step
/// total_steps - 1 and kept at step total_steps (after the last batch). Throws ValueError when
/// stepped more than total_steps times.
class OneCycleLR : public Scheduler {
public:
    OneCycleLR(Optimizer& opt, OneCycleOptions o);
    bool per_batch() const override { return true; }

protected:
    double rate(double base, std::int64_t epoch) const override;
    std::string options() const override;

private:
    OneCycleOptions o_;
};

struct PlateauOptions {
    bool maximize = false;        ///< true when the metric is an accuracy
    double factor = 0.1;          ///< new rate = rate·factor
    std::int64_t patience = 10;   ///< epochs without improvement before a cut
    double threshold = 1e-4;      ///< an improvement beats best by this fraction (relative) ...
    bool relative = true;         ///< ... or by this much (relative = false)
    std::int64_t cooldown = 0;    ///< epochs after a cut before counting again
    double min_lr = 0;
};

/// torch.optim.lr_scheduler.ReduceLROnPlateau: step(metric) once per epoch (fit gives the
/// validation loss, or the training loss without validation data); after `patience` epochs
/// without improvement every group's rate is multiplied by factor (not below min_lr).
/// Throws ValueError when stepped without a metric or with NaN.
class ReduceLROnPlateau : public Scheduler {
public:
    ReduceLROnPlateau(Optimizer& opt, PlateauOptions o = {});
    void step(std::optional<double> metric = std::nullopt) override;
    /// The best metric so far (infinite before the first step).
    double best() const { return best_; }

protected:
    double rate(double base, std::int64_t) const override { return base; }
    std::string options() const override;
    void save_extra(io::NpzArchive& out) const override;
    void load_extra(const io::NpzArchive& in) override;

private:
    PlateauOptions o_;
    double best_;
    std::int64_t bad_epochs_ = 0, cooldown_left_ = 0;
};

/// Scales all gradients together so that their joint L2 norm is at most max_norm (as
/// torch.nn.utils.clip_grad_norm_); returns the norm before clipping. Throws ValueError for
/// max_norm <= 0.
double clip_grad_norm(const std::vector<Tensor>& params, double max_norm);
double clip_grad_norm(const std::vector<Tensor64>& params, double max_norm);

}  // namespace xgrad::optim
