#include "xgrad/nn/metrics.hpp"

#include <algorithm>

#include "detail/check.hpp"

namespace xgrad::nn {

namespace {

std::size_t row_argmax(const float* row, std::size_t k) {
    return static_cast<std::size_t>(std::max_element(row, row + k) - row);
}

}  // namespace

std::size_t count_correct(const Tensor& scores, const Tensor& targets) {
    detail::check_shape(scores.dim() == 2 && ((targets.dim() == 1 && targets.shape()[0] == scores.shape()[0]) ||
                                              targets.shape() == scores.shape()),
                        "count_correct: scores must be [N, K] and targets [N] or [N, K]; scores {}, targets {}",
                        scores.shape(), targets.shape());
    const std::size_t n = scores.shape()[0], k = scores.shape()[1];
    detail::check_shape(k > 0, "count_correct: scores have no classes; scores {}, targets {}", scores.shape(),
                        targets.shape());
    std::size_t correct = 0;
    for (std::size_t i = 0; i < n; ++i) {
        const std::size_t predicted = row_argmax(scores.value().data() + i * k, k);
        const std::size_t target = targets.dim() == 1 ? static_cast<std::size_t>(targets.value().data()[i])
                                                      : row_argmax(targets.value().data() + i * k, k);
        correct += predicted == target;
    }
    return correct;
}

}  // namespace xgrad::nn
