#pragma once

#include <cstddef>
#include <string>
#include <vector>

#include "xgrad/tensor.hpp"

namespace xgrad::nn {

/// How many rows of scores [N, K] have their largest value (the first, on ties) at the
/// target class: targets are indices [N] or one-hot/probabilities [N, K] (their largest
/// entry). Throws ShapeError when the shapes do not fit.
template <class T>
std::size_t count_correct(const basic_tensor<T>& scores, const basic_tensor<T>& targets);

/// How many rows have their target among the k highest scores (ties go to the lower class
/// index, as argmax's; k = 1 is count_correct). Throws ShapeError as count_correct and
/// ValueError for k = 0 or a target that is not a class.
template <class T>
std::size_t count_top_k(const basic_tensor<T>& scores, const basic_tensor<T>& targets, std::size_t k);

/// count_top_k as a fraction of the rows (NaN for none).
template <class T>
double top_k_accuracy(const basic_tensor<T>& scores, const basic_tensor<T>& targets, std::size_t k);

/// Counts of (true class, predicted class) accumulated over batches, and the per-class
/// figures derived from them:
///
/// ```
/// xgrad::nn::ConfusionMatrix cm(10);
/// cm.update(model.predict(test.x), test.y);          // scores [N, 10], labels [N]
/// fmt::print("{}", cm.report({"T-shirt", "Trouser", ...}));  // the table, then P/R/F1 per class
/// ```
///
/// A class never predicted has precision 0, one never present recall 0, and F1 is 0 when
/// both are (scikit-learn's zero_division=0).
class ConfusionMatrix {
public:
    /// Throws ValueError for no classes.
    explicit ConfusionMatrix(std::size_t classes);

    /// Adds a batch: the predicted class is each row's argmax. Throws as count_correct, and
    /// ShapeError when the scores do not have `classes()` columns.
    template <class T>
    void update(const basic_tensor<T>& scores, const basic_tensor<T>& targets);
    /// Adds one (true, predicted) pair. Throws ValueError for a class out of range.
    void add(std::size_t true_class, std::size_t predicted, std::size_t times = 1);

    std::size_t classes() const { return k_; }
    /// Rows so far.
    std::size_t total() const;
    /// Samples of class `true_class` predicted as `predicted`.
    std::size_t count(std::size_t true_class, std::size_t predicted) const { return counts_[true_class * k_ + predicted]; }
    double accuracy() const;
    std::vector<double> precision() const;
    std::vector<double> recall() const;
    std::vector<double> f1() const;
    /// The unweighted mean of the classes' F1.
    double macro_f1() const;
    /// The matrix (rows true, columns predicted) and a precision / recall / F1 / support line
    /// per class, named by `names` (or their index). Throws ValueError for a wrong number of names.
    std::string report(const std::vector<std::string>& names = {}) const;

private:
    std::size_t k_;
    std::vector<std::size_t> counts_;
};

}  // namespace xgrad::nn
