#pragma once

#include <cstdint>
#include <string>

#include "xgrad/nn/module.hpp"
#include "xgrad/optim/optimizer.hpp"

namespace xgrad::io {

/// Saves everything needed to resume training: the model's parameters and buffers, the
/// optimizer's state (moments, step count, learning rates), the learning-rate schedule's
/// state when there is one, the number of completed epochs and the random generator's state,
/// in one .npz (entries "model/...", "optim/...", "sched/...", "epoch", "rng"). Written
/// atomically: a crash mid-save leaves the previous checkpoint intact. A float64 model
/// (Module64) saves float64 arrays. Throws IoError.
///
/// A resumed run continues exactly like an uninterrupted one, mid-epoch too: the data
/// loader's order depends on (seed, epoch) only, so after a checkpoint saved with `epoch`
/// completed epochs, skip the first `optimizer.steps() - epoch * loader.size()` batches of
/// epoch `epoch` (tests/test_nn.cpp does this with a per-batch OneCycleLR).
template <class T>
void save_checkpoint(const std::string& path, const nn::basic_module<T>& model, const optim::Optimizer& optimizer,
                     std::int64_t epoch, const optim::Scheduler* scheduler = nullptr);

/// Restores a checkpoint into `model`, `optimizer`, `scheduler` (build it on the optimizer
/// first, with the same options) and the random generator; returns the number of completed
/// epochs. Throws IoError naming the file when it is not a checkpoint, is corrupt, belongs
/// to a model with other tensors or shapes, to another optimizer or schedule, or holds a
/// schedule's state and no scheduler is given (or the reverse); nothing is changed then.
template <class T>
std::int64_t load_checkpoint(const std::string& path, nn::basic_module<T>& model, optim::Optimizer& optimizer,
                             optim::Scheduler* scheduler = nullptr);

}  // namespace xgrad::io
