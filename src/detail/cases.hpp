#pragma once

// Gradcheck cases: each op family registers its own, beside its backward rules, and
// src/gradcheck_cases.cpp lists the families once.

#include <string>
#include <vector>

#include "xgrad/gradcheck.hpp"
#include "xgrad/tape.hpp"

namespace xgrad::detail {

// One random input of a case: uniform in [lo, hi].
struct CaseInput {
    Shape shape;
    double lo = -1.0;
    double hi = 1.0;
    bool requires_grad = true;
};

// Every case is checked to first and second order (gradcheck and gradgradcheck on the same
// inputs), except the custom checks of the last add().
class CaseRegistry {
public:
    // A case whose inputs are random tensors drawn from the seed.
    void add(OpKind op, std::string name, std::vector<CaseInput> inputs, GradcheckFn fn);
    void add(std::string op, std::string name, std::vector<CaseInput> inputs, GradcheckFn fn);
    // A case that builds its own inputs (labels, fixed values) from the seed.
    void add(std::string op, std::string name, std::function<std::vector<Tensor64>(std::uint64_t seed)> make,
             GradcheckFn fn);
    // A check of its own (both conv variants agree), run as a first-order case.
    void add(std::string op, std::string name,
             std::function<GradcheckReport(std::uint64_t seed)> run);

    std::vector<GradcheckCase> take() { return std::move(cases_); }

private:
    std::vector<GradcheckCase> cases_;
};

// Random inputs for a case, reproducible from the seed and the case's name.
std::vector<Tensor64> case_inputs(const std::vector<CaseInput>& inputs, std::uint64_t seed,
                                  const std::string& case_id);

void register_elementwise_cases(CaseRegistry& r);
void register_reduce_cases(CaseRegistry& r);
void register_shape_cases(CaseRegistry& r);
void register_linalg_cases(CaseRegistry& r);
void register_activation_cases(CaseRegistry& r);
void register_conv_cases(CaseRegistry& r);
void register_conv_transpose_cases(CaseRegistry& r);
void register_pool_cases(CaseRegistry& r);
void register_norm_cases(CaseRegistry& r);
void register_loss_cases(CaseRegistry& r);
void register_index_cases(CaseRegistry& r);
void register_attention_cases(CaseRegistry& r);

}  // namespace xgrad::detail
