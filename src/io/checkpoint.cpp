#include "xgrad/io/checkpoint.hpp"

#include <cmath>

#include <fmt/format.h>
#include <xtensor/xbuilder.hpp>

namespace xgrad::io {

namespace {
constexpr const char* kFormat = "xgrad-checkpoint-1";
}

template <class T>
void save_checkpoint(const std::string& path, const nn::basic_module<T>& model, const optim::Optimizer& optimizer,
                     std::int64_t epoch, const optim::Scheduler* scheduler) {
    // load_checkpoint accepts counts of epochs only: refuse what it would refuse.
    if (epoch < 0 || epoch >= (std::int64_t{1} << 53))
        throw ValueError(fmt::format("save_checkpoint: {}: epoch {} is not a count of completed epochs", path, epoch));
    NpzArchive arrays;
    arrays.emplace_back("format", bytes_to_npy(kFormat));
    arrays.emplace_back("epoch", to_npy(xt::xarray<double>(static_cast<double>(epoch))));
    arrays.emplace_back("rng", bytes_to_npy(generator_state()));
    for (const auto& [name, t] : model.state()) arrays.emplace_back("model/" + name, to_npy(t.value()));
    for (auto& [name, a] : optimizer.state()) arrays.emplace_back("optim/" + name, std::move(a));
    if (scheduler)
        for (auto& [name, a] : scheduler->state()) arrays.emplace_back("sched/" + name, std::move(a));
    write_npz(path, arrays);
}

template <class T>
std::int64_t load_checkpoint(const std::string& path, nn::basic_module<T>& model, optim::Optimizer& optimizer,
                             optim::Scheduler* scheduler) {
    const NpzArchive arrays = read_npz(path);
    const NpyArray* format = nullptr;
    const NpyArray* epoch = nullptr;
    const NpyArray* rng = nullptr;
    NpzArchive optim_state, sched_state;
    for (const auto& [name, a] : arrays) {
        if (name.rfind("sched/", 0) == 0) sched_state.emplace_back(name.substr(6), a);
        if (name == "format") format = &a;
        if (name == "epoch") epoch = &a;
        if (name == "rng") rng = &a;
        if (name.rfind("optim/", 0) == 0) optim_state.emplace_back(name.substr(6), a);
    }
    if (!format || npy_to_bytes(*format, path + ", format") != kFormat || !epoch || !rng)
        throw IoError(fmt::format("checkpoint: {} is not an xgrad checkpoint (no format, epoch or rng entry)", path));
    for (const auto& [name, a] : arrays)
        if (name != "format" && name != "epoch" && name != "rng" && name.rfind("optim/", 0) != 0 &&
            name.rfind("model/", 0) != 0 && name.rfind("sched/", 0) != 0)
            throw IoError(fmt::format("checkpoint: {}: unexpected entry '{}'", path, name));
    const auto epochs = npy_to_double(*epoch, path + ", epoch");
    // A count of completed epochs: one whole number, 0 <= n < 2^53 (exact in a double).
    if (epochs.size() != 1 || !(epochs.data()[0] >= 0 && epochs.data()[0] < 0x1p53) ||
        epochs.data()[0] != std::floor(epochs.data()[0]))
        throw IoError(fmt::format("checkpoint: {}: the epoch entry (shape {}) is not a count of epochs", path,
                                  to_string(epochs.shape())));
    const auto completed = static_cast<std::int64_t>(epochs.data()[0]);
    const std::string rng_state = npy_to_bytes(*rng, path + ", rng");
    // A schedule's state without a scheduler to take it (or the reverse) would resume with
    // the wrong rates: the trap of building the schedule after loading.
    if (sched_state.empty() != (scheduler == nullptr))
        throw IoError(scheduler ? fmt::format("checkpoint: {} holds no learning-rate schedule, but a {} was given to "
                                              "load into",
                                              path, scheduler->name())
                                : fmt::format("checkpoint: {} holds a learning-rate schedule's state; build the "
                                              "schedule on the optimizer and pass it to load_checkpoint",
                                              path));
    // All or nothing: each step below checks before it changes anything, and a later
    // failure puts back what the earlier steps changed.
    const NpzArchive previous_optim = optimizer.state();
    const NpzArchive previous_sched = scheduler ? scheduler->state() : NpzArchive{};
    const std::string previous_rng = generator_state();
    try {
        optimizer.load_state(optim_state);
        if (scheduler) scheduler->load_state(sched_state);
        set_generator_state(rng_state);
        model.load_state(arrays, "model/", path);
    } catch (const Error& e) {
        optimizer.load_state(previous_optim);
        if (scheduler) scheduler->load_state(previous_sched);
        set_generator_state(previous_rng);
        if (std::string(e.what()).find(path) != std::string::npos) throw;
        throw IoError(fmt::format("checkpoint: {}: {}", path, e.what()));
    }
    return completed;
}

#define XGRAD_INSTANTIATE(T)                                                                                  \
    template void save_checkpoint(const std::string&, const nn::basic_module<T>&, const optim::Optimizer&,     \
                                  std::int64_t, const optim::Scheduler*);                                     \
    template std::int64_t load_checkpoint(const std::string&, nn::basic_module<T>&, optim::Optimizer&,          \
                                          optim::Scheduler*);
XGRAD_INSTANTIATE(float)
XGRAD_INSTANTIATE(double)
#undef XGRAD_INSTANTIATE

}  // namespace xgrad::io
