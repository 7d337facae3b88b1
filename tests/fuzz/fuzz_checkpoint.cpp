// libFuzzer target: checkpoint loading into a small model (dense and conv layers, batch
// norm buffers) with an SGD-momentum optimizer. Any input must either load, or throw an
// xgrad::IoError and leave the model, the optimizer and the random generator unchanged.
#include "fuzz_input.hpp"
#include "xgrad/xgrad.hpp"

namespace nn = xgrad::nn;

namespace {

struct Net : nn::Module {
    std::shared_ptr<nn::Conv2D> conv = add_module("conv", nn::Conv2D(1, 2, 3));
    std::shared_ptr<nn::BatchNorm> norm = add_module("norm", nn::BatchNorm(2));
    std::shared_ptr<nn::Dense> dense = add_module("dense", nn::Dense(8, 3));
    xgrad::Tensor forward(const xgrad::Tensor& x) override { return (*dense)(xgrad::flatten((*norm)((*conv)(x)))); }
};

std::string snapshot(const nn::Module& model, const xgrad::optim::Optimizer& opt) {
    std::string s = xgrad::generator_state();
    for (const auto& [name, t] : model.state())
        s.append(reinterpret_cast<const char*>(t.value().data()), t.value().size() * sizeof(float));
    for (const auto& [name, a] : opt.state()) s.append(a.bytes.begin(), a.bytes.end());
    return s;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    static Net model;
    static xgrad::optim::SGD opt(model.parameters(), {.lr = 0.1, .momentum = 0.9});
    const auto& path = xgrad_fuzz::input_file("checkpoint", data, size);
    const std::string before = snapshot(model, opt);
    try {
        xgrad::io::load_checkpoint(path, model, opt);
    } catch (const xgrad::IoError&) {
        if (snapshot(model, opt) != before) xgrad_fuzz::contract_broken("a failed load changed the model");
    }
    return 0;
}
