#pragma once

/// The umbrella header: everything a user of xgrad needs.

#include "xgrad/error.hpp"
#include "xgrad/gradcheck.hpp"
#include "xgrad/ops/activation.hpp"
#include "xgrad/ops/conv.hpp"
#include "xgrad/ops/elementwise.hpp"
#include "xgrad/ops/linalg.hpp"
#include "xgrad/ops/loss.hpp"
#include "xgrad/ops/norm.hpp"
#include "xgrad/ops/pool.hpp"
#include "xgrad/ops/reduce.hpp"
#include "xgrad/ops/shape.hpp"
#include "xgrad/parallel.hpp"
#include "xgrad/tape.hpp"
#include "xgrad/tensor.hpp"
