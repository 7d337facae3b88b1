#pragma once

#include <stdexcept>
#include <string>

namespace xgrad {

/// Base of every exception xgrad throws for a user's mistake. The message names the op
/// (or file) and prints every shape involved, e.g.
/// `matmul: inner dimensions differ; a [2, 3], b [4, 5]`.
class Error : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

/// Shapes that do not fit the op: wrong rank, mismatched or non-broadcastable dimensions.
class ShapeError : public Error {
public:
    using Error::Error;
};

/// A bad option or state: a negative axis out of range, backward twice over a freed graph,
/// the gradient of a tensor that has none.
class ValueError : public Error {
public:
    using Error::Error;
};

/// A file that is missing, truncated, corrupt or not of the expected format.
class IoError : public Error {
public:
    using Error::Error;
};

}  // namespace xgrad
