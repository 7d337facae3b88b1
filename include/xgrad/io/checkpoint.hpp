#pragma once

#include <cstdint>
#include <string>

#include "xgrad/nn/module.hpp"
#include "xgrad/optim/optimizer.hpp"

namespace xgrad::io {

/// Saves everything needed to resume training: the model's parameters and buffers, the
/// optimizer's state (moments, step count, learning rate), the number of completed epochs
/// and the random generator's state, in one .npz (entries "model/...", "optim/...",
/// "epoch", "rng"). Written atomically: a crash mid-save leaves the previous checkpoint
/// intact. A float64 model (Module64) saves float64 arrays. Throws IoError.
template <class T>
void save_checkpoint(const std::string& path, const nn::basic_module<T>& model, const optim::Optimizer& optimizer,
                     std::int64_t epoch);

/// Restores a checkpoint into `model` and `optimizer` and the random generator; returns the
/// number of completed epochs. Throws IoError naming the file when it is not a checkpoint,
/// is corrupt, or belongs to a model with other tensors or shapes (nothing is changed then).
template <class T>
std::int64_t load_checkpoint(const std::string& path, nn::basic_module<T>& model, optim::Optimizer& optimizer);

}  // namespace xgrad::io
