// A two-layer perceptron learns XOR: the smallest network that needs a hidden layer.
//
//   tools/run xor

#include <fmt/format.h>

#include "xgrad/xgrad.hpp"

using namespace xgrad::nn;

int main() {
    xgrad::manual_seed(3);
    const xgrad::data::Dataset xor_data{xgrad::Tensor(xt::xarray<float>{{0, 0}, {0, 1}, {1, 0}, {1, 1}}),
                                        xgrad::reshape(xgrad::Tensor(xt::xarray<float>{0, 1, 1, 0}), {4, 1})};
    Sequential model({2});
    model.add(Dense(2, 8, Activation::tanh)).add(Dense(8, 1));
    model.compile(std::make_shared<xgrad::optim::Adam>(model.parameters(), xgrad::optim::AdamOptions{.lr = 0.05}),
                  Loss::binary_cross_entropy_with_logits);
    const auto history = model.fit(xor_data, {.epochs = 300, .batch_size = 4, .progress = xgrad::Progress::Mode::quiet});
    const auto out = xgrad::sigmoid(model.predict(xor_data.x));
    for (std::size_t i = 0; i < 4; ++i)
        fmt::print("{} xor {} -> {:.3f}\n", xor_data.x.value()(i, 0), xor_data.x.value()(i, 1), out.value()(i, 0));
    const auto final = history.epochs.back();
    fmt::print("loss {:.4f}, accuracy {:.0f}%\n", final.loss, 100 * final.accuracy);
    return final.accuracy == 1.0 ? 0 : 1;
}
