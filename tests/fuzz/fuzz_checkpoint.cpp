// libFuzzer target: checkpoint loading into a small model (dense and conv layers, batch
// norm buffers) with an SGD-momentum optimizer. Any input must either load, or throw an
// xgrad::IoError and leave the model, the optimizer and the random generator unchanged.
#include "fuzz_input.hpp"
#include "fuzz_net.hpp"
#include "xgrad/xgrad.hpp"

namespace nn = xgrad::nn;

namespace {

std::string snapshot(const nn::Module& model, const xgrad::optim::Optimizer& opt) {
    std::string s = xgrad::generator_state();
    for (const auto& [name, t] : model.state())
        s.append(reinterpret_cast<const char*>(t.value().data()), t.value().size() * sizeof(float));
    for (const auto& [name, a] : opt.state()) s.append(a.bytes.begin(), a.bytes.end());
    return s;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    static xgrad_fuzz::Net model;
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
