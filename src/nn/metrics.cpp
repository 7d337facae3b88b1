#include "xgrad/nn/metrics.hpp"

#include <algorithm>
#include <cmath>
#include <limits>

#include <fmt/format.h>

#include "detail/check.hpp"

namespace xgrad::nn {

namespace {

template <class T>
std::size_t row_argmax(const T* row, std::size_t k) {
    return static_cast<std::size_t>(std::max_element(row, row + k) - row);
}

// Checks scores [N, K] against targets [N] or [N, K]; returns K.
template <class T>
std::size_t check_scores(const char* op, const basic_tensor<T>& scores, const basic_tensor<T>& targets) {
    detail::check_shape(scores.dim() == 2 && ((targets.dim() == 1 && targets.shape()[0] == scores.shape()[0]) ||
                                              targets.shape() == scores.shape()),
                        "{}: scores must be [N, K] and targets [N] or [N, K]; scores {}, targets {}", op,
                        scores.shape(), targets.shape());
    detail::check_shape(scores.shape()[1] > 0, "{}: scores have no classes; scores {}, targets {}", op, scores.shape(),
                        targets.shape());
    return scores.shape()[1];
}

// The target class of row i: the index for [N] targets (checked), the argmax of a [N, K] row.
template <class T>
std::size_t target_of(const char* op, const basic_tensor<T>& targets, std::size_t i, std::size_t k) {
    if (targets.dim() == 2) return row_argmax(targets.value().data() + i * k, k);
    const T c = targets.value().data()[i];
    detail::check_value(c >= 0 && c < static_cast<T>(k) && c == std::floor(c),
                        "{}: target {} of row {} is not a class in [0, {})", op, c, i, k);
    return static_cast<std::size_t>(c);
}

}  // namespace

template <class T>
std::size_t count_correct(const basic_tensor<T>& scores, const basic_tensor<T>& targets) {
    const std::size_t k = check_scores("count_correct", scores, targets), n = scores.shape()[0];
    std::size_t correct = 0;
    for (std::size_t i = 0; i < n; ++i) {
        const std::size_t predicted = row_argmax(scores.value().data() + i * k, k);
        // Labels out of range count as wrong here (training reports them through the loss).
        const std::size_t target = targets.dim() == 1 ? static_cast<std::size_t>(targets.value().data()[i])
                                                      : row_argmax(targets.value().data() + i * k, k);
        correct += predicted == target;
    }
    return correct;
}

template <class T>
std::size_t count_top_k(const basic_tensor<T>& scores, const basic_tensor<T>& targets, std::size_t top) {
    const std::size_t k = check_scores("count_top_k", scores, targets), n = scores.shape()[0];
    detail::check_value(top >= 1, "count_top_k: k must be at least 1");
    std::size_t correct = 0;
    for (std::size_t i = 0; i < n; ++i) {
        const T* row = scores.value().data() + i * k;
        const std::size_t t = target_of("count_top_k", targets, i, k);
        // The target's rank: classes scoring higher, and equal ones of lower index (argmax's order).
        std::size_t rank = 0;
        for (std::size_t j = 0; j < k; ++j) rank += row[j] > row[t] || (row[j] == row[t] && j < t);
        correct += rank < top;
    }
    return correct;
}

template <class T>
double top_k_accuracy(const basic_tensor<T>& scores, const basic_tensor<T>& targets, std::size_t k) {
    const std::size_t right = count_top_k(scores, targets, k);
    return scores.shape()[0] ? static_cast<double>(right) / static_cast<double>(scores.shape()[0])
                             : std::numeric_limits<double>::quiet_NaN();
}

ConfusionMatrix::ConfusionMatrix(std::size_t classes) : k_(classes), counts_(classes * classes, 0) {
    detail::check_value(classes > 0, "ConfusionMatrix: needs at least one class");
}

template <class T>
void ConfusionMatrix::update(const basic_tensor<T>& scores, const basic_tensor<T>& targets) {
    const std::size_t k = check_scores("ConfusionMatrix::update", scores, targets), n = scores.shape()[0];
    detail::check_shape(k == k_, "ConfusionMatrix::update: scores have {} classes, the matrix {}; scores {}, targets {}",
                        k, k_, scores.shape(), targets.shape());
    std::vector<std::size_t> pairs;  // checked first: a bad target adds nothing
    for (std::size_t i = 0; i < n; ++i)
        pairs.push_back(target_of("ConfusionMatrix::update", targets, i, k) * k_ +
                        row_argmax(scores.value().data() + i * k, k));
    for (const auto p : pairs) ++counts_[p];
}

void ConfusionMatrix::add(std::size_t true_class, std::size_t predicted, std::size_t times) {
    detail::check_value(true_class < k_ && predicted < k_, "ConfusionMatrix::add: classes ({}, {}) out of [0, {})",
                        true_class, predicted, k_);
    counts_[true_class * k_ + predicted] += times;
}

std::size_t ConfusionMatrix::total() const {
    std::size_t n = 0;
    for (const auto c : counts_) n += c;
    return n;
}

double ConfusionMatrix::accuracy() const {
    std::size_t right = 0;
    for (std::size_t c = 0; c < k_; ++c) right += count(c, c);
    const auto n = total();
    return n ? static_cast<double>(right) / static_cast<double>(n) : std::numeric_limits<double>::quiet_NaN();
}

namespace {

// diagonal / (row or column sum), 0 for an empty one.
std::vector<double> ratios(const ConfusionMatrix& cm, bool by_prediction) {
    std::vector<double> out;
    for (std::size_t c = 0; c < cm.classes(); ++c) {
        std::size_t all = 0;
        for (std::size_t j = 0; j < cm.classes(); ++j) all += by_prediction ? cm.count(j, c) : cm.count(c, j);
        out.push_back(all ? static_cast<double>(cm.count(c, c)) / static_cast<double>(all) : 0.0);
    }
    return out;
}

}  // namespace

std::vector<double> ConfusionMatrix::precision() const { return ratios(*this, true); }
std::vector<double> ConfusionMatrix::recall() const { return ratios(*this, false); }

std::vector<double> ConfusionMatrix::f1() const {
    const auto p = precision(), r = recall();
    std::vector<double> out;
    for (std::size_t c = 0; c < k_; ++c) out.push_back(p[c] + r[c] > 0 ? 2 * p[c] * r[c] / (p[c] + r[c]) : 0.0);
    return out;
}

double ConfusionMatrix::macro_f1() const {
    double s = 0;
    for (const double f : f1()) s += f;
    return s / static_cast<double>(k_);
}

std::string ConfusionMatrix::report(const std::vector<std::string>& names) const {
    detail::check_value(names.empty() || names.size() == k_, "ConfusionMatrix::report: {} names for {} classes",
                        names.size(), k_);
    auto name = [&](std::size_t c) { return names.empty() ? std::to_string(c) : names[c]; };
    std::size_t width = 5;
    for (std::size_t c = 0; c < k_; ++c) width = std::max(width, name(c).size());
    std::string out = fmt::format("{:>{}}  predicted ->\n", "true", width);
    for (std::size_t c = 0; c < k_; ++c) {
        out += fmt::format("{:>{}}", name(c), width);
        for (std::size_t j = 0; j < k_; ++j) out += fmt::format(" {:>6}", count(c, j));
        out += "\n";
    }
    const auto p = precision(), r = recall(), f = f1();
    out += fmt::format("\n{:>{}} {:>9} {:>9} {:>9} {:>9}\n", "", width, "precision", "recall", "f1", "support");
    for (std::size_t c = 0; c < k_; ++c) {
        std::size_t support = 0;
        for (std::size_t j = 0; j < k_; ++j) support += count(c, j);
        out += fmt::format("{:>{}} {:>9.4f} {:>9.4f} {:>9.4f} {:>9}\n", name(c), width, p[c], r[c], f[c], support);
    }
    out += fmt::format("{:>{}} {:>9} {:>9} {:>9.4f} {:>9}\n{:>{}} {:>29.4f} {:>9}\n", "macro f1", width, "", "",
                       macro_f1(), total(), "accuracy", width, accuracy(), total());
    return out;
}

#define XGRAD_INSTANTIATE(T)                                                                          \
    template std::size_t count_correct(const basic_tensor<T>&, const basic_tensor<T>&);               \
    template std::size_t count_top_k(const basic_tensor<T>&, const basic_tensor<T>&, std::size_t);    \
    template double top_k_accuracy(const basic_tensor<T>&, const basic_tensor<T>&, std::size_t);      \
    template void ConfusionMatrix::update(const basic_tensor<T>&, const basic_tensor<T>&);
XGRAD_INSTANTIATE(float)
XGRAD_INSTANTIATE(double)
#undef XGRAD_INSTANTIATE

}  // namespace xgrad::nn
