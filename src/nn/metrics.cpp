#include "xgrad/nn/metrics.hpp"

#include <algorithm>

#include "detail/check.hpp"

namespace xgrad::nn {

namespace {

template <class T>
std::size_t row_argmax(const T* row, std::size_t k) {
    return static_cast<std::size_t>(std::max_element(row, row + k) - row);
}

}  // namespace

template <class T>
std::size_t count_correct(const basic_tensor<T>& scores, const basic_tensor<T>& targets) {
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

template std::size_t count_correct(const basic_tensor<float>&, const basic_tensor<float>&);
template std::size_t count_correct(const basic_tensor<double>&, const basic_tensor<double>&);

}  // namespace xgrad::nn
