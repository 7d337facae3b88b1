#include "xgrad/optim/optimizer.hpp"

#include <cmath>
#include <numbers>
#include <optional>

#include <fmt/format.h>
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

Optimizer::Optimizer(ParamList params, double lr, std::string name)
    : params_(std::move(params)), lr_(lr), name_(std::move(name)) {
    detail::check_value(params_.size() > 0, "{}: got an empty parameter list", name_);
    check_params(params_.floats(), name_);
    check_params(params_.doubles(), name_);
    set_lr(lr);
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

void Optimizer::set_lr(double lr) {
    detail::check_value(lr >= 0 && std::isfinite(lr), "{}: the learning rate must be finite and not negative, got {}",
                        name_, lr);
    lr_ = lr;
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
    out.emplace_back("type", io::bytes_to_npy(fmt::format("{}({})", name_, options())));
    out.emplace_back("steps", io::to_npy(xt::xarray<double>(static_cast<double>(steps_))));
    out.emplace_back("lr", io::to_npy(xt::xarray<double>(lr_)));
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
    std::optional<double> steps_in, lr_in;
    std::optional<std::string> stepped;  // absent in older checkpoints
    Slots<T> slots;
    const auto names = slot_names();
    for (const auto& [key, a] : state) {
        if (key == "steps") {
            steps_in = scalar(a, "steps");
            continue;
        }
        if (key == "lr") {
            lr_in = scalar(a, "lr");
            continue;
        }
        if (key == "type") {
            const std::string saved = io::npy_to_bytes(a, name_ + " state 'type'"),
                              ours = fmt::format("{}({})", name_, options());
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
    if (!(*lr_in >= 0 && std::isfinite(*lr_in)))
        throw IoError(fmt::format("{} state: the learning rate {} is not finite and >= 0", name_, *lr_in));
    const auto steps = static_cast<std::int64_t>(*steps_in);
    const double lr = *lr_in;
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
    lr_ = lr;
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

template <class T>
void SGD::run(std::size_t i, xt::xarray<T>& p, const xt::xarray<T>& g, std::int64_t) {
    const auto lr = static_cast<T>(this->lr()), wd = static_cast<T>(o_.weight_decay);
    const auto mu = static_cast<T>(o_.momentum), keep = static_cast<T>(1 - o_.dampening);
    T* pv = p.data();
    const T* gv = g.data();
    bool first = false;  // the buffer starts as the first gradient, as in PyTorch
    T* buf = mu != 0 ? slot<T>("momentum_buffer", i, 0, &first).data() : nullptr;
    const auto n = static_cast<std::ptrdiff_t>(p.size());
#pragma omp parallel for schedule(static) if (n > detail::kParallelElements)
    for (std::ptrdiff_t k = 0; k < n; ++k) {
        T d = gv[k] + wd * pv[k];
        if (buf) {
            buf[k] = first ? d : mu * buf[k] + keep * d;
            d = o_.nesterov ? d + mu * buf[k] : buf[k];
        }
        pv[k] -= lr * d;
    }
}

Adagrad::Adagrad(ParamList params, AdagradOptions o) : OptimizerOf(std::move(params), o.lr, "Adagrad"), o_(o) {
    detail::check_value(finite_non_negative({o.lr_decay, o.weight_decay, o.initial_accumulator_value, o.eps}),
                        "Adagrad: lr_decay, weight_decay, initial_accumulator_value and eps must be finite and not negative, "
                        "got {}, {}, {} and {}",
                        o.lr_decay, o.weight_decay, o.initial_accumulator_value, o.eps);
}

template <class T>
void Adagrad::run(std::size_t i, xt::xarray<T>& p, const xt::xarray<T>& g, std::int64_t t) {
    const auto clr = static_cast<T>(lr() / (1 + static_cast<double>(t - 1) * o_.lr_decay));
    const auto wd = static_cast<T>(o_.weight_decay), eps = static_cast<T>(o_.eps);
    T* sum = slot<T>("sum", i, static_cast<T>(o_.initial_accumulator_value)).data();
    T* pv = p.data();
    for (std::size_t k = 0; k < p.size(); ++k) {
        const T d = g.data()[k] + wd * pv[k];
        sum[k] += d * d;
        pv[k] -= clr * d / (std::sqrt(sum[k]) + eps);
    }
}

RMSprop::RMSprop(ParamList params, RMSpropOptions o) : OptimizerOf(std::move(params), o.lr, "RMSprop"), o_(o) {
    detail::check_value(o.alpha >= 0 && o.alpha <= 1, "RMSprop: alpha must be in [0, 1], got {}", o.alpha);
    detail::check_value(finite_non_negative({o.eps, o.weight_decay, o.momentum}),
                        "RMSprop: eps, weight_decay and momentum must be finite and not negative, got {}, {} and {}", o.eps,
                        o.weight_decay, o.momentum);
}

template <class T>
void RMSprop::run(std::size_t i, xt::xarray<T>& p, const xt::xarray<T>& g, std::int64_t) {
    const auto alpha = static_cast<T>(o_.alpha), rest = static_cast<T>(1 - o_.alpha), eps = static_cast<T>(o_.eps);
    const auto lr = static_cast<T>(this->lr()), mu = static_cast<T>(o_.momentum);
    const auto wd = static_cast<T>(o_.weight_decay);
    T* sq = slot<T>("square_avg", i).data();
    T* ga = o_.centered ? slot<T>("grad_avg", i).data() : nullptr;
    T* buf = mu > 0 ? slot<T>("momentum_buffer", i).data() : nullptr;
    T* pv = p.data();
    for (std::size_t k = 0; k < p.size(); ++k) {
        const T d = g.data()[k] + wd * pv[k];
        sq[k] = alpha * sq[k] + rest * d * d;
        T avg;
        if (ga) {
            ga[k] = alpha * ga[k] + rest * d;
            avg = std::sqrt(sq[k] - ga[k] * ga[k]) + eps;
        } else {
            avg = std::sqrt(sq[k]) + eps;
        }
        if (buf) {
            buf[k] = mu * buf[k] + d / avg;
            pv[k] -= lr * buf[k];
        } else {
            pv[k] -= lr * d / avg;
        }
    }
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

template <class T>
void Adam::run(std::size_t i, xt::xarray<T>& p, const xt::xarray<T>& g, std::int64_t t) {
    const double lr = this->lr();
    const double bc1 = 1 - std::pow(o_.beta1, static_cast<double>(t));
    const double bc2 = 1 - std::pow(o_.beta2, static_cast<double>(t));
    const auto step_size = static_cast<T>(lr / bc1);
    const auto sqrt_bc2 = static_cast<T>(std::sqrt(bc2));
    // 1 - beta in double, then rounded: 1 - float(0.999) is 1.3e-5 off, relative, and Adam's
    // trajectory drifts by that much per step (PyTorch forms these constants in double too).
    const auto b1 = static_cast<T>(o_.beta1), b2 = static_cast<T>(o_.beta2);
    const auto rest1 = static_cast<T>(1 - o_.beta1), rest2 = static_cast<T>(1 - o_.beta2);
    const auto eps = static_cast<T>(o_.eps), wd = static_cast<T>(o_.weight_decay);
    const auto decay = static_cast<T>(1 - lr * o_.weight_decay);
    T* m = slot<T>("exp_avg", i).data();
    T* v = slot<T>("exp_avg_sq", i).data();
    T* vmax = o_.amsgrad ? slot<T>("max_exp_avg_sq", i).data() : nullptr;
    T* pv = p.data();
    for (std::size_t k = 0; k < p.size(); ++k) {
        T d = g.data()[k];
        if (decoupled_)
            pv[k] *= decay;
        else
            d += wd * pv[k];
        m[k] = b1 * m[k] + rest1 * d;
        v[k] = b2 * v[k] + rest2 * d * d;
        T second = v[k];
        if (vmax) second = vmax[k] = std::max(vmax[k], v[k]);
        pv[k] -= step_size * m[k] / (std::sqrt(second) / sqrt_bc2 + eps);
    }
}

StepLR::StepLR(Optimizer& opt, std::int64_t step_size, double gamma)
    : Scheduler(opt), step_size_(step_size), gamma_(gamma) {
    detail::check_value(step_size >= 1, "StepLR: step_size must be at least 1, got {}", step_size);
}
double StepLR::rate(std::int64_t epoch) const {
    return base_lr_ * std::pow(gamma_, static_cast<double>(epoch / step_size_));
}

ExponentialLR::ExponentialLR(Optimizer& opt, double gamma) : Scheduler(opt), gamma_(gamma) {
    detail::check_value(gamma > 0, "ExponentialLR: gamma must be positive, got {}", gamma);
}
double ExponentialLR::rate(std::int64_t epoch) const { return base_lr_ * std::pow(gamma_, static_cast<double>(epoch)); }

CosineAnnealingLR::CosineAnnealingLR(Optimizer& opt, std::int64_t t_max, double eta_min)
    : Scheduler(opt), t_max_(t_max), eta_min_(eta_min) {
    detail::check_value(t_max >= 1, "CosineAnnealingLR: t_max must be at least 1, got {}", t_max);
}
double CosineAnnealingLR::rate(std::int64_t epoch) const {
    return eta_min_ + (base_lr_ - eta_min_) *
                          (1 + std::cos(std::numbers::pi * static_cast<double>(epoch) / static_cast<double>(t_max_))) / 2;
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
