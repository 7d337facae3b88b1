#include "xgrad/optim/optimizer.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numbers>
#include <optional>

#include <fmt/format.h>
#include <xtensor/xadapt.hpp>
#include <xtensor/xbuilder.hpp>

#include "detail/check.hpp"
#include "detail/parallel.hpp"
#include "xgrad/tape.hpp"

namespace xgrad::optim {

namespace {

// Hyper-parameters that must be finite numbers >= 0 (NaN and infinity are refused).
bool finite_non_negative(std::initializer_list<double> values) {
    for (const double v : values)
        if (!(v >= 0 && std::isfinite(v))) return false;
    return true;
}

}  // namespace

namespace {

template <class T>
void check_params(const std::vector<basic_tensor<T>>& params, const std::string& name) {
    for (std::size_t i = 0; i < params.size(); ++i) {
        detail::check_value(params[i].defined() && params[i].requires_grad(),
                            "{}: parameter {} does not require grad", name, i);
        for (std::size_t j = 0; j < i; ++j)
            detail::check_value(params[j].node() != params[i].node(),
                                "{}: parameter {} (shape {}) is parameter {} again; it would be stepped twice per "
                                "update",
                                name, i, params[i].shape(), j);
    }
}

}  // namespace

ParamList::ParamList(std::vector<Tensor> params) : float_(std::move(params)), groups_{{0, float_.size(), {}, {}}} {}
ParamList::ParamList(std::vector<Tensor64> params) : double_(std::move(params)), groups_{{0, double_.size(), {}, {}}} {}
ParamList::ParamList(std::initializer_list<Tensor> params) : ParamList(std::vector<Tensor>(params)) {}
ParamList::ParamList(std::initializer_list<Tensor64> params) : ParamList(std::vector<Tensor64>(params)) {}

ParamList::ParamList(std::vector<ParamGroup> groups) {
    for (std::size_t g = 0; g < groups.size(); ++g) {
        auto& group = groups[g];
        detail::check_value(group.params.empty() != group.params64.empty(),
                            "parameter group {}: give float32 tensors (params) or float64 ones (params64), got {} and {}",
                            g, group.params.size(), group.params64.size());
        detail::check_value(g == 0 || group.params64.empty() == double_.empty(),
                            "parameter group {}: holds float{} tensors, group 0 float{}; an optimizer updates one "
                            "precision",
                            g, group.params64.empty() ? 32 : 64, double_.empty() ? 32 : 64);
        const std::size_t begin = size();
        for (auto& t : group.params) float_.push_back(std::move(t));
        for (auto& t : group.params64) double_.push_back(std::move(t));
        groups_.push_back({begin, size(), group.lr, group.weight_decay});
    }
}

Optimizer::Optimizer(ParamList params, double lr, std::string name)
    : params_(std::move(params)), name_(std::move(name)) {
    detail::check_value(params_.size() > 0, "{}: got an empty parameter list", name_);
    check_params(params_.floats(), name_);
    check_params(params_.doubles(), name_);
    for (const auto& g : params_.groups()) {
        const double rate = g.lr.value_or(lr);
        detail::check_value(rate >= 0 && std::isfinite(rate),
                            "{}: the learning rate must be finite and not negative, got {}{}", name_, rate,
                            g.lr ? fmt::format(" (group {})", lr_.size()) : "");
        detail::check_value(!g.weight_decay || (*g.weight_decay >= 0 && std::isfinite(*g.weight_decay)),
                            "{}: group {}'s weight_decay must be finite and not negative, got {}", name_, lr_.size(),
                            g.weight_decay.value_or(0));
        lr_.push_back(rate);
        group_.insert(group_.end(), g.end - g.begin, lr_.size() - 1);
    }
}

template <class T>
const std::vector<basic_tensor<T>>& Optimizer::typed_params() const {
    if constexpr (std::is_same_v<T, float>)
        return params_.floats();
    else
        return params_.doubles();
}

template <class T>
Optimizer::Slots<T>& Optimizer::slots() {
    if constexpr (std::is_same_v<T, float>)
        return slots_;
    else
        return slots64_;
}

template <class T>
const Optimizer::Slots<T>& Optimizer::slots() const {
    return const_cast<Optimizer*>(this)->slots<T>();
}

double Optimizer::lr(std::size_t group) const {
    detail::check_value(group < lr_.size(), "{}: no parameter group {} (it has {})", name_, group, lr_.size());
    return lr_[group];
}

void Optimizer::set_lr(double lr) {
    for (std::size_t g = 0; g < lr_.size(); ++g) set_lr(g, lr);
}

void Optimizer::set_lr(std::size_t group, double lr) {
    detail::check_value(group < lr_.size(), "{}: no parameter group {} (it has {})", name_, group, lr_.size());
    detail::check_value(lr >= 0 && std::isfinite(lr), "{}: the learning rate must be finite and not negative, got {}",
                        name_, lr);
    lr_[group] = lr;
}

std::string Optimizer::type() const {
    std::string t = fmt::format("{}({})", name_, options());
    // Groups change what the steps do: one group with the optimizer's options reads as before.
    const auto& groups = params_.groups();
    if (groups.size() > 1 || groups.front().weight_decay) {
        std::vector<std::string> parts;
        for (const auto& g : groups)
            parts.push_back(g.weight_decay ? fmt::format("{} weight_decay={}", g.end - g.begin, *g.weight_decay)
                                           : fmt::format("{}", g.end - g.begin));
        t += fmt::format(" groups [{}]", fmt::join(parts, ", "));
    }
    return t;
}

template <class T>
void Optimizer::step_as() {
    for (std::size_t i = 0; i < typed_params<T>().size(); ++i) {
        auto p = typed_params<T>()[i];
        if (p.has_grad()) update(i, p.mutable_value(), p.grad(), steps_);
    }
}

void Optimizer::step() {
    NoGradGuard guard;
    ++steps_;
    if (params_.is_double())
        step_as<double>();
    else
        step_as<float>();
}

void Optimizer::zero_grad() {
    for (auto p : params_.floats()) p.zero_grad();
    for (auto p : params_.doubles()) p.zero_grad();
}

template <class T>
xt::xarray<T>& Optimizer::slot(const std::string& name, std::size_t i, T init, bool* created) {
    auto& all = slots<T>();
    const auto& params = typed_params<T>();
    auto it = std::find_if(all.begin(), all.end(), [&](const auto& s) { return s.first == name; });
    if (it == all.end()) {
        all.emplace_back(name, std::vector<xt::xarray<T>>(params.size()));
        it = std::prev(all.end());
    }
    auto& s = it->second[i];
    const bool fresh = s.shape() != params[i].shape();
    if (fresh) {
        s = xt::empty<T>(params[i].shape());
        s.fill(init);
    }
    if (created) *created = fresh;
    return s;
}

io::NpzArchive Optimizer::state() const { return params_.is_double() ? state_as<double>() : state_as<float>(); }

void Optimizer::load_state(const io::NpzArchive& state) {
    if (params_.is_double())
        load_state_as<double>(state);
    else
        load_state_as<float>(state);
}

template <class T>
io::NpzArchive Optimizer::state_as() const {
    const auto& params = typed_params<T>();
    const auto& all = slots<T>();
    io::NpzArchive out;
    out.emplace_back("type", io::bytes_to_npy(type()));
    out.emplace_back("steps", io::to_npy(xt::xarray<double>(static_cast<double>(steps_))));
    out.emplace_back("lr", io::to_npy(xt::xarray<double>(xt::adapt(lr_, {lr_.size()}))));
    // Which parameters have their slots (were updated at least once): with it a loader can
    // tell a slot that was never made from one that was lost.
    std::string stepped(params.size(), '\0');
    for (const auto& [name, values] : all)
        for (std::size_t i = 0; i < values.size(); ++i)
            if (values[i].shape() == params[i].shape()) stepped[i] = 1;
    out.emplace_back("stepped", io::bytes_to_npy(stepped));
    for (const auto& [name, values] : all)
        for (std::size_t i = 0; i < values.size(); ++i)
            if (values[i].shape() == params[i].shape()) out.emplace_back(fmt::format("{}.{}", name, i), io::to_npy(values[i]));
    return out;
}

template <class T>
void Optimizer::load_state_as(const io::NpzArchive& state) {
    const auto& params = typed_params<T>();
    // One number of a state entry, or an IoError naming it.
    auto scalar = [this](const io::NpyArray& a, const char* key) {
        const auto v = io::npy_to_double(a, fmt::format("{} state '{}'", name_, key));
        if (v.size() != 1)
            throw IoError(fmt::format("{} state: '{}' has shape {}; expected one number", name_, key,
                                      to_string(v.shape())));
        return v.data()[0];
    };
    std::optional<double> steps_in;
    std::optional<std::vector<double>> lr_in;
    std::optional<std::string> stepped;  // absent in older checkpoints
    Slots<T> slots;
    const auto names = slot_names();
    for (const auto& [key, a] : state) {
        if (key == "steps") {
            steps_in = scalar(a, "steps");
            continue;
        }
        if (key == "lr") {
            const auto v = io::npy_to_double(a, name_ + " state 'lr'");
            if (v.size() != lr_.size())
                throw IoError(fmt::format("{} state: 'lr' has {} rate(s) (shape {}) for {} parameter group(s)", name_,
                                          v.size(), to_string(v.shape()), lr_.size()));
            lr_in.emplace(v.begin(), v.end());
            continue;
        }
        if (key == "type") {
            const std::string saved = io::npy_to_bytes(a, name_ + " state 'type'"), ours = type();
            if (saved != ours)
                throw IoError(fmt::format("optimizer state: saved by {}, not by this {}; load it into the same "
                                          "optimizer with the same options",
                                          saved, ours));
            continue;
        }
        if (key == "stepped") {
            stepped = io::npy_to_bytes(a, name_ + " state 'stepped'");
            if (stepped->size() != params.size())
                throw IoError(fmt::format("{} state: 'stepped' has {} entries for {} parameters", name_,
                                          stepped->size(), params.size()));
            continue;
        }
        const auto dot = key.rfind('.');
        std::size_t i = params.size();
        try {
            if (dot != std::string::npos && key.find_first_not_of("0123456789", dot + 1) == std::string::npos)
                i = std::stoul(key.substr(dot + 1));
        } catch (const std::exception&) {
        }
        if (dot == std::string::npos || i >= params.size())
            throw IoError(fmt::format("{} state: '{}' names no parameter of this optimizer ({} parameters)", name_,
                                      key, params.size()));
        const std::string name = key.substr(0, dot);
        if (std::find(names.begin(), names.end(), name) == names.end())
            throw IoError(fmt::format("{} state: '{}' is not a slot this {} keeps (it keeps: {}); the state "
                                      "belongs to another optimizer or other options",
                                      name_, key, name_, names.empty() ? "none" : fmt::format("{}", fmt::join(names, ", "))));
        auto value = io::npy_to<T>(a, "optimizer state " + key);
        if (value.shape() != params[i].shape())
            throw IoError(fmt::format("optimizer state: '{}' has shape {} but parameter {} has {}", key,
                                      to_string(value.shape()), i, to_string(params[i].shape())));
        auto it = std::find_if(slots.begin(), slots.end(), [&](const auto& s) { return s.first == name; });
        if (it == slots.end()) {
            slots.emplace_back(name, std::vector<xt::xarray<T>>(params.size()));
            it = std::prev(slots.end());
        }
        if (it->second[i].shape() == params[i].shape())
            throw IoError(fmt::format("{} state: '{}' appears twice", name_, key));
        it->second[i] = std::move(value);
    }
    if (!steps_in || !lr_in)
        throw IoError(fmt::format("{} state: the '{}' entry is missing", name_, !steps_in ? "steps" : "lr"));
    // A count of steps: a whole number, 0 <= n < 2^53 (exact in a double).
    if (!(*steps_in >= 0 && *steps_in < 0x1p53) || *steps_in != std::floor(*steps_in))
        throw IoError(fmt::format("{} state: steps {} is not a count of steps", name_, *steps_in));
    for (const double lr : *lr_in)
        if (!(lr >= 0 && std::isfinite(lr)))
            throw IoError(fmt::format("{} state: the learning rate {} is not finite and >= 0", name_, lr));
    const auto steps = static_cast<std::int64_t>(*steps_in);
    // Slots come together: a parameter that was updated has every slot, one never updated none.
    bool any = false;
    for (std::size_t i = 0; i < params.size(); ++i) {
        std::size_t have = 0;
        for (const auto& n : names) {
            auto it = std::find_if(slots.begin(), slots.end(), [&](const auto& s) { return s.first == n; });
            have += it != slots.end() && it->second[i].shape() == params[i].shape();
        }
        if (have != 0 && have != names.size())
            throw IoError(fmt::format("{} state: parameter {} has {} of its {} slots ({}); some are missing", name_, i,
                                      have, names.size(), fmt::join(names, ", ")));
        if (stepped && !names.empty() && ((*stepped)[i] != 0) != (have > 0))
            throw IoError(fmt::format("{} state: parameter {} {} its slots ({}) but was {}updated", name_, i,
                                      have > 0 ? "has" : "lacks", fmt::join(names, ", "),
                                      (*stepped)[i] != 0 ? "" : "never "));
        any = any || have > 0;
    }
    if (steps > 0 && !names.empty() && !any)
        throw IoError(fmt::format("{} state: {} steps were taken but no parameter has its {} slots", name_, steps,
                                  fmt::join(names, ", ")));
    steps_ = steps;
    lr_ = *lr_in;
    this->slots<T>() = std::move(slots);
}

SGD::SGD(ParamList params, SGDOptions o) : OptimizerOf(std::move(params), o.lr, "SGD"), o_(o) {
    detail::check_value(finite_non_negative({o.momentum, o.dampening, o.weight_decay}),
                        "SGD: momentum, dampening and weight_decay must be finite and not negative, got {}, {} and {}",
                        o.momentum, o.dampening, o.weight_decay);
    detail::check_value(!o.nesterov || (o.momentum > 0 && o.dampening == 0),
                        "SGD: nesterov needs momentum > 0 and dampening 0, got momentum {} and dampening {}",
                        o.momentum, o.dampening);
}

namespace {

// The optimizers' update loops. Each is a function whose choices are made at compile time and
// whose operands are restrict-qualified parameters, with the constants passed by value, so that
// the loop vectorises: with the branches inside, or constants read through a lambda's captures
// (which a store to p may alias, so they are read again after every store), the loops ran
// scalar (SGD's was 9% of a W1 step; Adam took 1.3 ms a step on 401k floats, now 0.18). Large
// tensors on all threads.
template <bool kBuffer, bool kFirst, bool kNesterov, class T>
void sgd_update(T* __restrict pv, const T* __restrict gv, T* __restrict buf, std::ptrdiff_t n, T lr, T wd, T mu,
                T keep) {
#pragma omp parallel for schedule(static) if (n > detail::kParallelElements)
    for (std::ptrdiff_t k = 0; k < n; ++k) {
        T d = gv[k] + wd * pv[k];
        if constexpr (kBuffer) {
            buf[k] = kFirst ? d : mu * buf[k] + keep * d;
            d = kNesterov ? d + mu * buf[k] : buf[k];
        }
        pv[k] -= lr * d;
    }
}

}  // namespace

template <class T>
void SGD::run(std::size_t i, xt::xarray<T>& p, const xt::xarray<T>& g, std::int64_t) {
    const auto lr = static_cast<T>(lr_of(i)), wd = static_cast<T>(weight_decay_of(i, o_.weight_decay));
    const auto mu = static_cast<T>(o_.momentum), keep = static_cast<T>(1 - o_.dampening);
    bool first = false;  // the buffer starts as the first gradient, as in PyTorch
    T* buf = mu != 0 ? slot<T>("momentum_buffer", i, 0, &first).data() : nullptr;
    const auto n = static_cast<std::ptrdiff_t>(p.size());
    using Update = void (*)(T*, const T*, T*, std::ptrdiff_t, T, T, T, T);
    const Update update = !buf          ? sgd_update<false, false, false, T>
                          : o_.nesterov ? (first ? sgd_update<true, true, true, T> : sgd_update<true, false, true, T>)
                                        : (first ? sgd_update<true, true, false, T> : sgd_update<true, false, false, T>);
    update(p.data(), g.data(), buf, n, lr, wd, mu, keep);
}

Adagrad::Adagrad(ParamList params, AdagradOptions o) : OptimizerOf(std::move(params), o.lr, "Adagrad"), o_(o) {
    detail::check_value(finite_non_negative({o.lr_decay, o.weight_decay, o.initial_accumulator_value, o.eps}),
                        "Adagrad: lr_decay, weight_decay, initial_accumulator_value and eps must be finite and not negative, "
                        "got {}, {}, {} and {}",
                        o.lr_decay, o.weight_decay, o.initial_accumulator_value, o.eps);
}

namespace {

template <class T>
void adagrad_update(T* __restrict pv, const T* __restrict gv, T* __restrict sum, std::ptrdiff_t n, T clr, T wd,
                    T eps) {
#pragma omp parallel for schedule(static) if (n > detail::kParallelElements)
    for (std::ptrdiff_t k = 0; k < n; ++k) {
        const T d = gv[k] + wd * pv[k];
        sum[k] += d * d;
        pv[k] -= clr * d / (std::sqrt(sum[k]) + eps);
    }
}

}  // namespace

template <class T>
void Adagrad::run(std::size_t i, xt::xarray<T>& p, const xt::xarray<T>& g, std::int64_t t) {
    const auto clr = static_cast<T>(lr_of(i) / (1 + static_cast<double>(t - 1) * o_.lr_decay));
    const auto wd = static_cast<T>(weight_decay_of(i, o_.weight_decay)), eps = static_cast<T>(o_.eps);
    T* sum = slot<T>("sum", i, static_cast<T>(o_.initial_accumulator_value)).data();
    adagrad_update(p.data(), g.data(), sum, static_cast<std::ptrdiff_t>(p.size()), clr, wd, eps);
}

RMSprop::RMSprop(ParamList params, RMSpropOptions o) : OptimizerOf(std::move(params), o.lr, "RMSprop"), o_(o) {
    detail::check_value(o.alpha >= 0 && o.alpha <= 1, "RMSprop: alpha must be in [0, 1], got {}", o.alpha);
    detail::check_value(finite_non_negative({o.eps, o.weight_decay, o.momentum}),
                        "RMSprop: eps, weight_decay and momentum must be finite and not negative, got {}, {} and {}", o.eps,
                        o.weight_decay, o.momentum);
}

namespace {

template <class T>
struct RMSpropConstants {
    T alpha, rest, eps, lr, mu, wd;
};

template <bool kCentered, bool kMomentum, class T>
void rmsprop_update(T* __restrict pv, const T* __restrict gv, T* __restrict sq, T* __restrict ga, T* __restrict buf,
                    std::ptrdiff_t n, RMSpropConstants<T> c) {
    const T alpha = c.alpha, rest = c.rest, eps = c.eps, lr = c.lr, mu = c.mu, wd = c.wd;
#pragma omp parallel for schedule(static) if (n > detail::kParallelElements)
    for (std::ptrdiff_t k = 0; k < n; ++k) {
        const T d = gv[k] + wd * pv[k];
        sq[k] = alpha * sq[k] + rest * d * d;
        T avg;
        if constexpr (kCentered) {
            ga[k] = alpha * ga[k] + rest * d;
            avg = std::sqrt(sq[k] - ga[k] * ga[k]) + eps;
        } else {
            avg = std::sqrt(sq[k]) + eps;
        }
        if constexpr (kMomentum) {
            buf[k] = mu * buf[k] + d / avg;
            pv[k] -= lr * buf[k];
        } else {
            pv[k] -= lr * d / avg;
        }
    }
}

}  // namespace

template <class T>
void RMSprop::run(std::size_t i, xt::xarray<T>& p, const xt::xarray<T>& g, std::int64_t) {
    const RMSpropConstants<T> c{static_cast<T>(o_.alpha),  static_cast<T>(1 - o_.alpha),
                                static_cast<T>(o_.eps),    static_cast<T>(lr_of(i)),
                                static_cast<T>(o_.momentum), static_cast<T>(weight_decay_of(i, o_.weight_decay))};
    T* sq = slot<T>("square_avg", i).data();
    T* ga = o_.centered ? slot<T>("grad_avg", i).data() : nullptr;
    T* buf = c.mu > 0 ? slot<T>("momentum_buffer", i).data() : nullptr;
    using Update = void (*)(T*, const T*, T*, T*, T*, std::ptrdiff_t, RMSpropConstants<T>);
    const Update update = ga ? (buf ? rmsprop_update<true, true, T> : rmsprop_update<true, false, T>)
                             : (buf ? rmsprop_update<false, true, T> : rmsprop_update<false, false, T>);
    update(p.data(), g.data(), sq, ga, buf, static_cast<std::ptrdiff_t>(p.size()), c);
}

Adam::Adam(ParamList params, AdamOptions o) : Adam(std::move(params), o, "Adam") {}

Adam::Adam(ParamList params, AdamOptions o, std::string name)
    : OptimizerOf(std::move(params), o.lr, std::move(name)), o_(o) {
    detail::check_value(o.beta1 >= 0 && o.beta1 < 1 && o.beta2 >= 0 && o.beta2 < 1,
                        "{}: betas must be in [0, 1), got beta1 {} and beta2 {}", this->name(), o.beta1, o.beta2);
    detail::check_value(finite_non_negative({o.eps, o.weight_decay}),
                        "{}: eps and weight_decay must be finite and not negative, got {} and {}",
                        this->name(), o.eps, o.weight_decay);
}

AdamW::AdamW(ParamList params, AdamOptions o) : Adam(std::move(params), o, "AdamW") { decoupled_ = true; }

namespace {

template <class T>
struct AdamConstants {
    T step_size, sqrt_bc2, b1, b2, rest1, rest2, eps, wd, decay;
};

template <bool kDecoupled, bool kAmsgrad, class T>
void adam_update(T* __restrict pv, const T* __restrict gv, T* __restrict m, T* __restrict v, T* __restrict vmax,
                 std::ptrdiff_t n, AdamConstants<T> c) {
    const T step_size = c.step_size, sqrt_bc2 = c.sqrt_bc2, b1 = c.b1, b2 = c.b2, rest1 = c.rest1,
            rest2 = c.rest2, eps = c.eps, wd = c.wd, decay = c.decay;
#pragma omp parallel for schedule(static) if (n > detail::kParallelElements)
    for (std::ptrdiff_t k = 0; k < n; ++k) {
        T d = gv[k];
        if constexpr (kDecoupled)
            pv[k] *= decay;
        else
            d += wd * pv[k];
        m[k] = b1 * m[k] + rest1 * d;
        v[k] = b2 * v[k] + rest2 * d * d;
        T second = v[k];
        if constexpr (kAmsgrad) second = vmax[k] = std::max(vmax[k], v[k]);
        pv[k] -= step_size * m[k] / (std::sqrt(second) / sqrt_bc2 + eps);
    }
}

}  // namespace

template <class T>
void Adam::run(std::size_t i, xt::xarray<T>& p, const xt::xarray<T>& g, std::int64_t t) {
    const double lr = lr_of(i), weight_decay = weight_decay_of(i, o_.weight_decay);
    const double bc1 = 1 - std::pow(o_.beta1, static_cast<double>(t));
    const double bc2 = 1 - std::pow(o_.beta2, static_cast<double>(t));
    // 1 - beta in double, then rounded: 1 - float(0.999) is 1.3e-5 off, relative, and Adam's
    // trajectory drifts by that much per step (PyTorch forms these constants in double too).
    const AdamConstants<T> c{static_cast<T>(lr / bc1),        static_cast<T>(std::sqrt(bc2)),
                             static_cast<T>(o_.beta1),        static_cast<T>(o_.beta2),
                             static_cast<T>(1 - o_.beta1),    static_cast<T>(1 - o_.beta2),
                             static_cast<T>(o_.eps),          static_cast<T>(weight_decay),
                             static_cast<T>(1 - lr * weight_decay)};
    T* m = slot<T>("exp_avg", i).data();
    T* v = slot<T>("exp_avg_sq", i).data();
    T* vmax = o_.amsgrad ? slot<T>("max_exp_avg_sq", i).data() : nullptr;
    using Update = void (*)(T*, const T*, T*, T*, T*, std::ptrdiff_t, AdamConstants<T>);
    const Update update = decoupled_ ? (vmax ? adam_update<true, true, T> : adam_update<true, false, T>)
                                     : (vmax ? adam_update<false, true, T> : adam_update<false, false, T>);
    update(p.data(), g.data(), m, v, vmax, static_cast<std::ptrdiff_t>(p.size()), c);
}

Scheduler::Scheduler(Optimizer& opt, std::string name) : opt_(opt), name_(std::move(name)) {
    for (std::size_t g = 0; g < opt.groups(); ++g) base_lr_.push_back(opt.lr(g));
}

void Scheduler::apply() {
    for (std::size_t g = 0; g < base_lr_.size(); ++g) opt_.set_lr(g, rate(base_lr_[g], epoch_));
}

void Scheduler::step(std::optional<double>) {
    ++epoch_;
    apply();
}

io::NpzArchive Scheduler::state() const {
    io::NpzArchive out;
    out.emplace_back("type", io::bytes_to_npy(fmt::format("{}({})", name_, options())));
    out.emplace_back("epoch", io::to_npy(xt::xarray<double>(static_cast<double>(epoch_))));
    out.emplace_back("base_lr", io::to_npy(xt::xarray<double>(xt::adapt(base_lr_, {base_lr_.size()}))));
    save_extra(out);
    return out;
}

void Scheduler::load_state(const io::NpzArchive& state) {
    std::optional<std::string> type;
    std::optional<double> epoch;
    std::optional<std::vector<double>> base;
    for (const auto& [key, a] : state) {
        if (key == "type") type = io::npy_to_bytes(a, name_ + " state 'type'");
        if (key == "epoch") {
            const auto v = io::npy_to_double(a, name_ + " state 'epoch'");
            if (v.size() != 1)
                throw IoError(fmt::format("{} state: 'epoch' has shape {}; expected one number", name_,
                                          to_string(v.shape())));
            epoch = v.data()[0];
        }
        if (key == "base_lr") {
            const auto v = io::npy_to_double(a, name_ + " state 'base_lr'");
            base.emplace(v.begin(), v.end());
        }
    }
    if (!type || !epoch || !base)
        throw IoError(fmt::format("{} state: the '{}' entry is missing", name_,
                                  !type ? "type" : !epoch ? "epoch" : "base_lr"));
    const std::string ours = fmt::format("{}({})", name_, options());
    if (*type != ours)
        throw IoError(fmt::format("scheduler state: saved by {}, not by this {}; build the same schedule with the "
                                  "same options before loading",
                                  *type, ours));
    if (!(*epoch >= 0 && *epoch < 0x1p53) || *epoch != std::floor(*epoch))
        throw IoError(fmt::format("{} state: epoch {} is not a count of steps", name_, *epoch));
    if (base->size() != base_lr_.size())
        throw IoError(fmt::format("{} state: {} base rate(s) for an optimizer with {} parameter group(s)", name_,
                                  base->size(), base_lr_.size()));
    for (const double b : *base)
        if (!(b >= 0 && std::isfinite(b)))
            throw IoError(fmt::format("{} state: the base rate {} is not finite and >= 0", name_, b));
    load_extra(state);  // checks, then applies; throws before changing anything
    epoch_ = static_cast<std::int64_t>(*epoch);
    base_lr_ = *base;
}

StepLR::StepLR(Optimizer& opt, std::int64_t step_size, double gamma)
    : Scheduler(opt, "StepLR"), step_size_(step_size), gamma_(gamma) {
    detail::check_value(step_size >= 1, "StepLR: step_size must be at least 1, got {}", step_size);
    detail::check_value(gamma > 0 && std::isfinite(gamma), "StepLR: gamma must be positive, got {}", gamma);
    apply();
}
double StepLR::rate(double base, std::int64_t epoch) const {
    return base * std::pow(gamma_, static_cast<double>(epoch / step_size_));
}
std::string StepLR::options() const { return fmt::format("step_size={}, gamma={}", step_size_, gamma_); }

MultiStepLR::MultiStepLR(Optimizer& opt, std::vector<std::int64_t> milestones, double gamma)
    : Scheduler(opt, "MultiStepLR"), milestones_(std::move(milestones)), gamma_(gamma) {
    for (std::size_t i = 0; i < milestones_.size(); ++i)
        detail::check_value(milestones_[i] >= 1 && (i == 0 || milestones_[i] > milestones_[i - 1]),
                            "MultiStepLR: milestones must be increasing and at least 1, got [{}]",
                            fmt::join(milestones_, ", "));
    detail::check_value(gamma > 0 && std::isfinite(gamma), "MultiStepLR: gamma must be positive, got {}", gamma);
    apply();
}
double MultiStepLR::rate(double base, std::int64_t epoch) const {
    const auto passed = std::upper_bound(milestones_.begin(), milestones_.end(), epoch) - milestones_.begin();
    return base * std::pow(gamma_, static_cast<double>(passed));
}
std::string MultiStepLR::options() const {
    return fmt::format("milestones=[{}], gamma={}", fmt::join(milestones_, ", "), gamma_);
}

ExponentialLR::ExponentialLR(Optimizer& opt, double gamma) : Scheduler(opt, "ExponentialLR"), gamma_(gamma) {
    detail::check_value(gamma > 0 && std::isfinite(gamma), "ExponentialLR: gamma must be positive, got {}", gamma);
    apply();
}
double ExponentialLR::rate(double base, std::int64_t epoch) const {
    return base * std::pow(gamma_, static_cast<double>(epoch));
}
std::string ExponentialLR::options() const { return fmt::format("gamma={}", gamma_); }

CosineAnnealingLR::CosineAnnealingLR(Optimizer& opt, std::int64_t t_max, double eta_min)
    : Scheduler(opt, "CosineAnnealingLR"), t_max_(t_max), eta_min_(eta_min) {
    detail::check_value(t_max >= 1, "CosineAnnealingLR: t_max must be at least 1, got {}", t_max);
    detail::check_value(eta_min >= 0 && std::isfinite(eta_min), "CosineAnnealingLR: eta_min must be >= 0, got {}",
                        eta_min);
    apply();
}
double CosineAnnealingLR::rate(double base, std::int64_t epoch) const {
    return eta_min_ + (base - eta_min_) *
                          (1 + std::cos(std::numbers::pi * static_cast<double>(epoch) / static_cast<double>(t_max_))) / 2;
}
std::string CosineAnnealingLR::options() const { return fmt::format("t_max={}, eta_min={}", t_max_, eta_min_); }

LinearLR::LinearLR(Optimizer& opt, LinearLROptions o) : Scheduler(opt, "LinearLR"), o_(o) {
    detail::check_value(o.start_factor > 0 && o.start_factor <= 1 && o.end_factor >= 0 && o.end_factor <= 1,
                        "LinearLR: start_factor must be in (0, 1] and end_factor in [0, 1], got {} and {}",
                        o.start_factor, o.end_factor);
    detail::check_value(o.total_iters >= 1, "LinearLR: total_iters must be at least 1, got {}", o.total_iters);
    apply();
}
double LinearLR::rate(double base, std::int64_t epoch) const {
    const double done = static_cast<double>(std::min(epoch, o_.total_iters)) / static_cast<double>(o_.total_iters);
    return base * (o_.start_factor + (o_.end_factor - o_.start_factor) * done);
}
std::string LinearLR::options() const {
    return fmt::format("start_factor={}, end_factor={}, total_iters={}", o_.start_factor, o_.end_factor,
                       o_.total_iters);
}

LambdaLR::LambdaLR(Optimizer& opt, std::function<double(std::int64_t)> factor)
    : Scheduler(opt, "LambdaLR"), factor_(std::move(factor)) {
    detail::check_value(static_cast<bool>(factor_), "LambdaLR: the factor function is empty");
    apply();
}
double LambdaLR::rate(double base, std::int64_t epoch) const {
    const double f = factor_(epoch);
    detail::check_value(f >= 0 && std::isfinite(f), "LambdaLR: the factor for step {} is {}; it must be finite and >= 0",
                        epoch, f);
    return base * f;
}

OneCycleLR::OneCycleLR(Optimizer& opt, OneCycleOptions o) : Scheduler(opt, "OneCycleLR"), o_(o) {
    detail::check_value(o.total_steps >= 2, "OneCycleLR: total_steps must be at least 2, got {}", o.total_steps);
    detail::check_value(o.max_lr > 0 && std::isfinite(o.max_lr), "OneCycleLR: max_lr must be positive, got {}", o.max_lr);
    detail::check_value(o.pct_start > 0 && o.pct_start < 1, "OneCycleLR: pct_start must be in (0, 1), got {}",
                        o.pct_start);
    detail::check_value(o.div_factor >= 1 && o.final_div_factor >= 1 && std::isfinite(o.div_factor) &&
                            std::isfinite(o.final_div_factor),
                        "OneCycleLR: div_factor and final_div_factor must be at least 1, got {} and {}", o.div_factor,
                        o.final_div_factor);
    apply();
}
double OneCycleLR::rate(double, std::int64_t epoch) const {
    detail::check_value(epoch <= o_.total_steps, "OneCycleLR: stepped {} times, more than total_steps = {}", epoch,
                        o_.total_steps);
    const double initial = o_.max_lr / o_.div_factor, final = initial / o_.final_div_factor;
    const double rise_end = o_.pct_start * static_cast<double>(o_.total_steps) - 1, end = static_cast<double>(o_.total_steps - 1);
    auto anneal = [](double from, double to, double pct) { return to + (from - to) / 2 * (std::cos(std::numbers::pi * pct) + 1); };
    const auto t = static_cast<double>(epoch);
    if (t <= rise_end) return anneal(initial, o_.max_lr, rise_end > 0 ? t / rise_end : 1);
    // The step after the last batch (epoch == total_steps) gets the final rate.
    return anneal(o_.max_lr, final, std::min(1.0, (t - rise_end) / (end - rise_end)));
}
std::string OneCycleLR::options() const {
    return fmt::format("max_lr={}, total_steps={}, pct_start={}, div_factor={}, final_div_factor={}", o_.max_lr,
                       o_.total_steps, o_.pct_start, o_.div_factor, o_.final_div_factor);
}

ReduceLROnPlateau::ReduceLROnPlateau(Optimizer& opt, PlateauOptions o)
    : Scheduler(opt, "ReduceLROnPlateau"), o_(o),
      best_(o.maximize ? -std::numeric_limits<double>::infinity() : std::numeric_limits<double>::infinity()) {
    detail::check_value(o.factor > 0 && o.factor < 1, "ReduceLROnPlateau: factor must be in (0, 1), got {}", o.factor);
    detail::check_value(o.patience >= 0 && o.cooldown >= 0, "ReduceLROnPlateau: patience and cooldown must be >= 0, got {} "
                        "and {}", o.patience, o.cooldown);
    detail::check_value(finite_non_negative({o.threshold, o.min_lr}),
                        "ReduceLROnPlateau: threshold and min_lr must be finite and >= 0, got {} and {}", o.threshold,
                        o.min_lr);
}

void ReduceLROnPlateau::step(std::optional<double> metric) {
    detail::check_value(metric.has_value() && !std::isnan(*metric),
                        "ReduceLROnPlateau: step() needs the metric it watches (a validation loss), got {}",
                        metric ? fmt::format("{}", *metric) : std::string("none"));
    ++epoch_;
    const double m = *metric;
    const double margin = o_.relative ? std::abs(best_) * o_.threshold : o_.threshold;
    const bool better = std::isinf(best_) ? (o_.maximize ? m > best_ : m < best_)
                                           : (o_.maximize ? m > best_ + margin : m < best_ - margin);
    if (better) {
        best_ = m;
        bad_epochs_ = 0;
    } else {
        ++bad_epochs_;
    }
    if (cooldown_left_ > 0) {
        --cooldown_left_;
        bad_epochs_ = 0;
    }
    if (bad_epochs_ > o_.patience) {
        for (std::size_t g = 0; g < opt_.groups(); ++g) {
            const double old = opt_.lr(g), cut = std::max(old * o_.factor, o_.min_lr);
            if (old - cut > 1e-8) opt_.set_lr(g, cut);  // PyTorch's eps: changes below it are skipped
        }
        cooldown_left_ = o_.cooldown;
        bad_epochs_ = 0;
    }
}

std::string ReduceLROnPlateau::options() const {
    return fmt::format("maximize={}, factor={}, patience={}, threshold={}, relative={}, cooldown={}, min_lr={}",
                       o_.maximize, o_.factor, o_.patience, o_.threshold, o_.relative, o_.cooldown, o_.min_lr);
}

void ReduceLROnPlateau::save_extra(io::NpzArchive& out) const {
    out.emplace_back("best", io::to_npy(xt::xarray<double>(best_)));
    out.emplace_back("bad_epochs", io::to_npy(xt::xarray<double>(static_cast<double>(bad_epochs_))));
    out.emplace_back("cooldown_left", io::to_npy(xt::xarray<double>(static_cast<double>(cooldown_left_))));
}

void ReduceLROnPlateau::load_extra(const io::NpzArchive& in) {
    std::optional<double> best, bad, cooldown;
    for (const auto& [key, a] : in) {
        auto* target = key == "best" ? &best : key == "bad_epochs" ? &bad : key == "cooldown_left" ? &cooldown : nullptr;
        if (!target) continue;
        const auto v = io::npy_to_double(a, name_ + " state '" + key + "'");
        if (v.size() != 1)
            throw IoError(fmt::format("{} state: '{}' has shape {}; expected one number", name_, key,
                                      to_string(v.shape())));
        *target = v.data()[0];
    }
    if (!best || !bad || !cooldown)
        throw IoError(fmt::format("{} state: the best metric or a counter is missing", name_));
    auto count = [](double v) { return v >= 0 && v < 0x1p53 && v == std::floor(v); };
    if (std::isnan(*best) || !count(*bad) || !count(*cooldown))
        throw IoError(fmt::format("{} state: best {}, bad_epochs {}, cooldown_left {} are not a metric and two counts",
                                  name_, *best, *bad, *cooldown));
    best_ = *best;
    bad_epochs_ = static_cast<std::int64_t>(*bad);
    cooldown_left_ = static_cast<std::int64_t>(*cooldown);
}

namespace {

template <class T>
double clip_norm(const std::vector<basic_tensor<T>>& params, double max_norm) {
    detail::check_value(max_norm > 0, "clip_grad_norm: max_norm must be positive, got {}", max_norm);
    double total = 0;
    for (const auto& p : params)
        if (p.has_grad())
            for (const T g : p.grad()) total += static_cast<double>(g) * g;
    total = std::sqrt(total);
    const double scale = max_norm / (total + 1e-6);
    if (scale < 1)
        for (auto p : params)
            if (p.has_grad()) p.mutable_grad() *= static_cast<T>(scale);
    return total;
}

}  // namespace

double clip_grad_norm(const std::vector<Tensor>& params, double max_norm) { return clip_norm(params, max_norm); }
double clip_grad_norm(const std::vector<Tensor64>& params, double max_norm) { return clip_norm(params, max_norm); }

#define XGRAD_INSTANTIATE(T)                                                                           \
    template void SGD::run<T>(std::size_t, xt::xarray<T>&, const xt::xarray<T>&, std::int64_t);      \
    template void Adagrad::run<T>(std::size_t, xt::xarray<T>&, const xt::xarray<T>&, std::int64_t);  \
    template void RMSprop::run<T>(std::size_t, xt::xarray<T>&, const xt::xarray<T>&, std::int64_t);  \
    template void Adam::run<T>(std::size_t, xt::xarray<T>&, const xt::xarray<T>&, std::int64_t);
XGRAD_INSTANTIATE(float)
XGRAD_INSTANTIATE(double)
#undef XGRAD_INSTANTIATE

std::string SGD::options() const {
    return fmt::format("momentum={}, dampening={}, weight_decay={}, nesterov={}", o_.momentum, o_.dampening,
                       o_.weight_decay, o_.nesterov);
}

std::string Adagrad::options() const {
    return fmt::format("lr_decay={}, weight_decay={}, initial_accumulator_value={}, eps={}", o_.lr_decay,
                       o_.weight_decay, o_.initial_accumulator_value, o_.eps);
}

std::string RMSprop::options() const {
    return fmt::format("alpha={}, eps={}, weight_decay={}, momentum={}, centered={}", o_.alpha, o_.eps,
                       o_.weight_decay, o_.momentum, o_.centered);
}

std::string Adam::options() const {
    return fmt::format("beta1={}, beta2={}, eps={}, weight_decay={}, amsgrad={}", o_.beta1, o_.beta2, o_.eps,
                       o_.weight_decay, o_.amsgrad);
}

}  // namespace xgrad::optim
