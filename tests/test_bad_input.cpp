// The bad-input battery: every public entry point, called the wrong way, must throw a typed
// xgrad exception whose message names the op (or the file) and the shapes involved. Each
// expect() is one case; the last test checks how many ran.
#include <atomic>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <functional>
#include <limits>
#include <string>
#include <thread>
#include <typeinfo>
#include <vector>

#include <catch2/catch.hpp>

#include <zlib.h>

#include <xtensor/xadapt.hpp>

#include "xgrad/xgrad.hpp"

using xgrad::IoError;
using xgrad::Shape;
using xgrad::ShapeError;
using xgrad::Tensor;
using xgrad::ValueError;
namespace nn = xgrad::nn;
namespace optim = xgrad::optim;
namespace io = xgrad::io;

namespace {

int cases = 0;

// One case: `call` must throw E (exactly that type, not another xgrad error) with every
// string of `parts` in its message.
template <class E>
void expect(const std::string& what, const std::function<void()>& call, const std::vector<std::string>& parts) {
    ++cases;
    INFO("case: " << what);
    try {
        call();
    } catch (const E& e) {
        const std::string message = e.what();
        for (const auto& p : parts) CHECK_THAT(message, Catch::Matchers::Contains(p));
        return;
    } catch (const std::exception& e) {
        FAIL_CHECK("threw another exception type (" << typeid(e).name() << "): " << e.what());
        return;
    }
    FAIL_CHECK("did not throw");
}

Tensor t(const Shape& shape, bool requires_grad = false) { return xgrad::ones(shape, requires_grad); }

const float kNaN = std::numeric_limits<float>::quiet_NaN();

std::string temp_file(const std::string& name, const std::string& bytes) {
    const std::string path = "/tmp/xgrad_bad_input_" + name;
    std::ofstream(path, std::ios::binary) << bytes;
    return path;
}

struct Small : nn::Module {
    std::shared_ptr<nn::Dense> fc = add_module("fc", nn::Dense(4, 3));
    Tensor forward(const Tensor& x) override { return (*fc)(x); }
};

}  // namespace

TEST_CASE("bad input: elementwise ops, reductions and shapes", "[errors][battery]") {
    const auto a = t({2, 3}), b = t({4});
    expect<ShapeError>("add broadcast", [&] { xgrad::add(a, b); }, {"add", "[2, 3]", "[4]"});
    expect<ShapeError>("sub broadcast", [&] { xgrad::sub(a, b); }, {"sub", "[2, 3]", "[4]"});
    expect<ShapeError>("mul broadcast", [&] { xgrad::mul(a, b); }, {"mul", "[2, 3]", "[4]"});
    expect<ShapeError>("div broadcast", [&] { xgrad::div(a, b); }, {"div", "[2, 3]", "[4]"});
    expect<ShapeError>("pow broadcast", [&] { xgrad::pow(a, b); }, {"pow", "[2, 3]", "[4]"});
    expect<ShapeError>("broadcast of rank 3 against 2", [&] { xgrad::add(t({2, 2, 3}), t({3, 3})); },
                       {"add", "[2, 2, 3]", "[3, 3]"});
    expect<ShapeError>("sum axis out of range", [&] { xgrad::sum(a, {2}); }, {"sum", "[2, 3]"});
    expect<ShapeError>("mean negative axis out of range", [&] { xgrad::mean(a, {-3}); }, {"mean", "[2, 3]"});
    expect<ShapeError>("max repeated axis", [&] { xgrad::max(a, {0, 0}); }, {"max", "[2, 3]"});
    expect<ShapeError>("max of an empty tensor", [&] { xgrad::max(t({0, 3})); }, {"max", "[0, 3]"});
    expect<ShapeError>("max over an empty axis", [&] { xgrad::max(t({0, 3}), {0}); }, {"max", "[0, 3]"});
    expect<ShapeError>("reshape to another size", [&] { xgrad::reshape(a, {4, 2}); }, {"reshape", "[2, 3]"});
    expect<ShapeError>("reshape with two -1", [&] { xgrad::reshape(a, {-1, -1}); }, {"reshape", "[2, 3]"});
    expect<ShapeError>("reshape with -2", [&] { xgrad::reshape(a, {-2, 3}); }, {"reshape", "[2, 3]"});
    expect<ShapeError>("permute of the wrong length", [&] { xgrad::permute(a, {0}); }, {"permute", "[2, 3]"});
    expect<ShapeError>("permute repeating an axis", [&] { xgrad::permute(a, {1, 1}); }, {"permute", "[2, 3]"});
    expect<ShapeError>("transpose axis out of range", [&] { xgrad::transpose(a, 0, 5); }, {"[2, 3]"});
    expect<ShapeError>("concat ranks differ", [&] { xgrad::concat<float>({a, b}); }, {"concat", "[2, 3]", "[4]"});
    expect<ShapeError>("concat other axis differs", [&] { xgrad::concat<float>({a, t({2, 4})}, 0); },
                       {"concat", "[2, 3]", "[2, 4]"});
    expect<ValueError>("concat of nothing", [&] { xgrad::concat<float>({}); }, {"concat"});
    expect<ShapeError>("concat axis out of range", [&] { xgrad::concat<float>({a, a}, 2); }, {"concat", "[2, 3]"});
    expect<ShapeError>("flatten of a scalar", [&] { xgrad::flatten(xgrad::scalar(1.0f)); }, {"flatten", "[]"});
    expect<ShapeError>("softmax axis out of range", [&] { xgrad::softmax(a, 2); }, {"softmax", "[2, 3]"});
    expect<ShapeError>("log_softmax axis out of range", [&] { xgrad::log_softmax(a, -3); }, {"log_softmax", "[2, 3]"});
}

TEST_CASE("bad input: matmul, convolution, pooling and normalisation", "[errors][battery]") {
    expect<ShapeError>("matmul inner sizes", [&] { xgrad::matmul(t({2, 3}), t({4, 5})); },
                       {"matmul", "[2, 3]", "[4, 5]"});
    expect<ShapeError>("matmul of a vector", [&] { xgrad::matmul(t({3}), t({3, 2})); }, {"matmul", "[3]", "[3, 2]"});
    expect<ShapeError>("matmul batch sizes", [&] { xgrad::matmul(t({2, 2, 3}), t({3, 3, 4})); },
                       {"matmul", "[2, 2, 3]", "[3, 3, 4]"});
    expect<ShapeError>("linear in-features", [&] { xgrad::linear(t({2, 3}), t({4, 5})); }, {"linear", "[2, 3]", "[4, 5]"});

    const auto x = t({1, 5, 5, 2}), w = t({3, 3, 2, 4});
    expect<ShapeError>("conv2d input of rank 3", [&] { xgrad::conv2d(t({5, 5, 2}), w); }, {"conv2d", "[5, 5, 2]"});
    expect<ShapeError>("conv2d kernel of rank 3", [&] { xgrad::conv2d(x, t({3, 3, 2})); }, {"conv2d", "[3, 3, 2]"});
    expect<ShapeError>("conv2d channels differ", [&] { xgrad::conv2d(x, t({3, 3, 3, 4})); },
                       {"conv2d", "[1, 5, 5, 2]", "[3, 3, 3, 4]"});
    expect<ValueError>("conv2d stride 0", [&] { xgrad::conv2d(x, w, {.stride = 0}); }, {"conv2d", "stride"});
    expect<ValueError>("conv2d negative stride", [&] { xgrad::conv2d(x, w, {.stride = {1, -1}}); }, {"conv2d", "stride"});
    expect<ValueError>("conv2d dilation 0", [&] { xgrad::conv2d(x, w, {.dilation = 0}); }, {"conv2d", "dilation"});
    expect<ValueError>("conv2d negative padding", [&] { xgrad::conv2d(x, w, {.padding = -1}); }, {"conv2d", "negative"});
    expect<ValueError>("conv2d groups 0", [&] { xgrad::conv2d(x, w, {.groups = 0}); }, {"conv2d", "groups"});
    expect<ValueError>("conv2d groups not dividing", [&] { xgrad::conv2d(t({1, 5, 5, 3}), t({3, 3, 1, 4}), {.groups = 3}); },
                       {"conv2d", "groups"});
    expect<ShapeError>("conv2d kernel larger than a valid input", [&] { xgrad::conv2d(t({1, 2, 2, 2}), w); },
                       {"conv2d", "[1, 2, 2, 2]", "[3, 3, 2, 4]"});
    expect<ShapeError>("conv2d bias size", [&] { xgrad::conv2d(x, w, t({3})); }, {"conv2d", "[3]"});

    const xgrad::Pool2dOptions bad_kernel{.kernel = 0}, bad_stride{.kernel = 2, .stride = 0},
        big_pad{.kernel = 2, .padding = 2};
    expect<ShapeError>("max_pool2d input of rank 2", [&] { xgrad::max_pool2d(t({4, 4})); }, {"max_pool2d", "[4, 4]"});
    expect<ValueError>("max_pool2d kernel 0", [&] { xgrad::max_pool2d(x, bad_kernel); }, {"max_pool2d", "kernel"});
    expect<ValueError>("max_pool2d stride 0", [&] { xgrad::max_pool2d(x, bad_stride); }, {"max_pool2d", "stride"});
    expect<ValueError>("max_pool2d padding over half the kernel", [&] { xgrad::max_pool2d(x, big_pad); },
                       {"max_pool2d", "padding"});
    expect<ShapeError>("max_pool2d window larger than the input", [&] { xgrad::max_pool2d(t({1, 1, 1, 2})); },
                       {"max_pool2d", "[1, 1, 1, 2]"});
    expect<ValueError>("avg_pool2d kernel 0", [&] { xgrad::avg_pool2d(x, bad_kernel); }, {"avg_pool2d", "kernel"});
    expect<ShapeError>("avg_pool2d input of rank 3", [&] { xgrad::avg_pool2d(t({4, 4, 1})); }, {"avg_pool2d", "[4, 4, 1]"});
    expect<ShapeError>("global_avg_pool2d input of rank 2", [&] { xgrad::global_avg_pool2d(t({4, 4})); }, {"[4, 4]"});

    auto mean = xgrad::zeros({2}), var = xgrad::ones({2});
    expect<ShapeError>("batch_norm gamma size", [&] { xgrad::batch_norm(t({4, 2}), t({3}), t({2}), mean, var, true); },
                       {"batch_norm", "[4, 2]", "[3]"});
    expect<ShapeError>("batch_norm running stats size", [&] {
        auto m3 = xgrad::zeros({3});
        xgrad::batch_norm(t({4, 2}), t({2}), t({2}), m3, var, true);
    }, {"batch_norm", "[3]"});
    expect<ValueError>("batch_norm one value per channel in training",
                       [&] { xgrad::batch_norm(t({1, 2}), t({2}), t({2}), mean, var, true); }, {"batch_norm", "[1, 2]"});
    expect<ValueError>("dropout p = 1", [&] { xgrad::dropout(x, 1.0, true); }, {"dropout", "1"});
    expect<ValueError>("dropout p < 0", [&] { xgrad::dropout(x, -0.1, true); }, {"dropout"});
    expect<ValueError>("dropout p NaN", [&] { xgrad::dropout(x, std::nan(""), true); }, {"dropout"});
}

TEST_CASE("bad input: losses and their targets", "[errors][battery]") {
    const auto logits = t({2, 3});
    auto labels = [](std::vector<float> v) { return Tensor(xt::adapt(v, Shape{v.size()})); };
    expect<ShapeError>("cross_entropy logits of rank 1", [&] { xgrad::cross_entropy(t({3}), labels({1})); },
                       {"cross_entropy", "[3]"});
    expect<ShapeError>("cross_entropy target count", [&] { xgrad::cross_entropy(logits, labels({0, 1, 2})); },
                       {"cross_entropy", "[2, 3]", "[3]"});
    expect<ShapeError>("cross_entropy one-hot width", [&] { xgrad::cross_entropy(logits, t({2, 4})); },
                       {"cross_entropy", "[2, 3]", "[2, 4]"});
    expect<ValueError>("cross_entropy label out of range", [&] { xgrad::cross_entropy(logits, labels({0, 3})); },
                       {"cross_entropy", "3"});
    expect<ValueError>("cross_entropy negative label", [&] { xgrad::cross_entropy(logits, labels({-1, 0})); },
                       {"cross_entropy", "-1"});
    expect<ValueError>("cross_entropy fractional label", [&] { xgrad::cross_entropy(logits, labels({0.5f, 0})); },
                       {"cross_entropy", "0.5"});
    expect<ValueError>("cross_entropy NaN label", [&] { xgrad::cross_entropy(logits, labels({kNaN, 0})); },
                       {"cross_entropy", "nan"});
    expect<ShapeError>("mse_loss shapes", [&] { xgrad::mse_loss(logits, t({3, 2})); }, {"mse_loss", "[2, 3]", "[3, 2]"});
    expect<ShapeError>("binary_cross_entropy shapes", [&] { xgrad::binary_cross_entropy(logits, t({2})); },
                       {"binary_cross_entropy", "[2, 3]", "[2]"});
    expect<ValueError>("binary_cross_entropy probability above 1",
                       [&] { xgrad::binary_cross_entropy(xgrad::full({2}, 1.5f), t({2})); }, {"binary_cross_entropy"});
    expect<ShapeError>("binary_cross_entropy_with_logits shapes",
                       [&] { xgrad::binary_cross_entropy_with_logits(logits, t({6})); },
                       {"binary_cross_entropy_with_logits", "[2, 3]", "[6]"});
}

TEST_CASE("bad input: tensors and the tape", "[errors][battery]") {
    expect<ValueError>("backward of a non-scalar without a gradient", [&] { xgrad::exp(t({3}, true)).backward(); },
                       {"[3]", "backward(grad_output)"});
    expect<ShapeError>("backward with a gradient of the wrong shape",
                       [&] { xgrad::exp(t({3}, true)).backward(xt::xarray<float>::from_shape({2})); }, {"[3]", "[2]"});
    expect<ValueError>("backward twice", [&] {
        auto x = t({3}, true);
        auto loss = xgrad::sum(xgrad::exp(x));
        loss.backward();
        loss.backward();
    }, {"backward"});
    expect<ValueError>("backward of a tensor without grad", [&] { xgrad::sum(t({3})).backward(); },
                       {"does not require grad"});
    expect<ValueError>("grad of a tensor that does not require one", [&] { (void)t({3}).grad(); }, {"[3]"});
    expect<ValueError>("grad before backward", [&] { (void)t({3}, true).grad(); }, {"[3]", "backward"});
    expect<ValueError>("item of a non-scalar", [&] { (void)t({2, 2}).item(); }, {"item", "[2, 2]"});
    expect<ValueError>("an undefined tensor", [&] { (void)Tensor().shape(); }, {"undefined"});
    expect<ValueError>("set_num_threads(0)", [&] { xgrad::set_num_threads(0); }, {"set_num_threads"});
    expect<ValueError>("a generator state that is not one", [&] { xgrad::set_generator_state("not a state"); },
                       {"set_generator_state"});

    const xgrad::AnomalyGuard anomaly;
    expect<ValueError>("anomaly: NaN input", [&] { xgrad::exp(xgrad::full({2}, kNaN)); }, {"anomaly", "exp", "[2]"});
    expect<ValueError>("anomaly: Inf produced by log", [&] { xgrad::log(xgrad::zeros({2, 1})); }, {"anomaly", "log", "[2, 1]"});
    expect<ValueError>("anomaly: Inf in a backward", [&] {
        auto x = xgrad::zeros({3}, true);
        xgrad::sum(xgrad::sqrt(x)).backward();
    }, {"anomaly", "sqrt", "[3]"});
}

TEST_CASE("bad input: layers, models, optimizers and data", "[errors][battery]") {
    nn::Dense dense(4, 3);
    nn::Conv2D conv(2, 4, 3);
    expect<ShapeError>("Dense input width", [&] { dense(t({2, 5})); }, {"[2, 5]", "[4, 3]"});
    expect<ShapeError>("Conv2D input channels", [&] { conv(t({1, 5, 5, 3})); }, {"conv2d", "[1, 5, 5, 3]"});
    expect<ValueError>("Dense with 0 inputs", [&] { nn::Dense(0, 3); }, {"Dense", "0"});
    expect<ValueError>("Conv2D with 0 filters", [&] { nn::Conv2D(2, 0, 3); }, {"Conv2D", "0"});
    expect<ValueError>("Conv2D with a 0 kernel", [&] { nn::Conv2D(2, 4, 0); }, {"Conv2D", "kernel"});
    expect<ValueError>("BatchNorm with 0 channels", [&] { nn::BatchNorm(0); }, {"BatchNorm", "0"});
    expect<ValueError>("Dropout p = 1.5", [&] { nn::Dropout(1.5); }, {"Dropout", "1.5"});

    Small model;
    expect<ValueError>("SGD negative lr", [&] { optim::SGD(model.parameters(), {.lr = -0.1}); }, {"SGD", "-0.1"});
    expect<ValueError>("SGD negative momentum", [&] { optim::SGD(model.parameters(), {.momentum = -1}); }, {"SGD", "momentum"});
    expect<ValueError>("SGD nesterov without momentum", [&] { optim::SGD(model.parameters(), {.nesterov = true}); },
                       {"SGD", "nesterov"});
    expect<ValueError>("SGD negative weight decay", [&] { optim::SGD(model.parameters(), {.weight_decay = -1}); },
                       {"SGD", "weight_decay"});
    expect<ValueError>("SGD without parameters", [&] { optim::SGD({}, {}); }, {"SGD", "parameter"});
    expect<ValueError>("Adam beta1 = 1", [&] { optim::Adam(model.parameters(), {.beta1 = 1}); }, {"Adam", "betas", "beta1 1"});
    expect<ValueError>("Adam negative eps", [&] { optim::Adam(model.parameters(), {.eps = -1}); }, {"Adam", "eps"});
    expect<ValueError>("RMSprop negative alpha", [&] { optim::RMSprop(model.parameters(), {.alpha = -0.5}); },
                       {"RMSprop", "alpha"});
    expect<ValueError>("Adagrad NaN lr", [&] { optim::Adagrad(model.parameters(), {.lr = std::nan("")}); }, {"Adagrad"});
    optim::SGD sgd(model.parameters());
    expect<ValueError>("StepLR step 0", [&] { optim::StepLR(sgd, 0); }, {"StepLR"});
    expect<ValueError>("CosineAnnealingLR t_max 0", [&] { optim::CosineAnnealingLR(sgd, 0); }, {"CosineAnnealingLR"});
    expect<ValueError>("GradientAverager without parameters", [&] { xgrad::distributed::GradientAverager({}); },
                       {"GradientAverager", "empty"});
    expect<ValueError>("GradientAverager with 0-byte buckets",
                       [&] { xgrad::distributed::GradientAverager(model.parameters(), {.bucket_bytes = 0}); },
                       {"GradientAverager", "bucket_bytes"});
    expect<ValueError>("distributed timeout 0", [&] { xgrad::distributed::set_timeout(0); }, {"set_timeout", "0"});
    expect<ValueError>("clip_grad_norm negative", [&] { optim::clip_grad_norm(model.parameters(), -1); },
                       {"clip_grad_norm"});

    nn::Sequential seq({4});
    seq.add(nn::Dense(4, 3));
    const xgrad::data::Dataset data{t({8, 4}), xgrad::zeros({8})};
    expect<ValueError>("fit before compile", [&] { seq.fit(data); }, {"compile"});
    expect<ValueError>("compile without an optimizer", [&] { seq.compile(nullptr); }, {"compile"});
    seq.compile(std::make_shared<optim::SGD>(seq.parameters()));
    expect<ValueError>("fit batch size 0", [&] { seq.fit(data, {.batch_size = 0}); }, {"batch"});
    expect<ValueError>("fit validation split 1.5", [&] { seq.fit(data, {.validation_split = 1.5}); }, {"validation_split"});
    expect<ValueError>("predict batch size 0", [&] { seq.predict(t({8, 4}), 0); }, {"predict", "batch"});
    expect<ShapeError>("fit on samples of the wrong shape", [&] {
        seq.fit({t({8, 5}), xgrad::zeros({8})}, {.progress = xgrad::Progress::Mode::quiet});
    }, {"[8, 5]"});

    namespace data_ns = xgrad::data;
    expect<ValueError>("DataLoader batch 0", [&] { data_ns::DataLoader(data, {.batch_size = 0}); }, {"DataLoader"});
    expect<ValueError>("DataLoader empty dataset", [&] { data_ns::DataLoader(data_ns::Dataset{}, {}); }, {"DataLoader"});
    expect<ValueError>("DataLoader batch out of range",
                       [&] { data_ns::DataLoader(data, {.batch_size = 4}).batch(0, 2); }, {"DataLoader", "2"});
    expect<ValueError>("Dataset slice out of range", [&] { data.slice(4, 9); }, {"slice", "9"});
    expect<ShapeError>("DataLoader x and y counts differ",
                       [&] { data_ns::DataLoader(data_ns::Dataset{t({8, 4}), xgrad::zeros({7})}, {}); },
                       {"DataLoader", "[8, 4]", "[7]"});
}

TEST_CASE("bad input: files (IDX, npz, weights, checkpoints)", "[errors][battery]") {
    const std::string missing = "/tmp/xgrad_bad_input_does_not_exist";
    expect<IoError>("IDX missing", [&] { xgrad::data::read_idx(missing); }, {missing});
    const auto not_idx = temp_file("not.idx", "hello world");
    expect<IoError>("IDX bad magic", [&] { xgrad::data::read_idx(not_idx); }, {not_idx, "magic"});
    const auto floats = temp_file("floats.idx", std::string("\0\0\x0d\x01\0\0\0\x01", 8) + "abcd");
    expect<IoError>("IDX of floats", [&] { xgrad::data::read_idx(floats); }, {floats, "0x0d"});
    const auto short_idx = temp_file("short.idx", std::string("\0\0\x08\x01\0\0\0\x05", 8) + "ab");
    expect<IoError>("IDX truncated", [&] { xgrad::data::read_idx(short_idx); }, {short_idx, "truncated", "[5]"});
    expect<IoError>("dataset directory without the files", [&] { xgrad::data::load_mnist_format("/tmp", xgrad::data::Split::test); },
                    {"/tmp", "t10k"});

    expect<IoError>("npz missing", [&] { io::read_npz(missing); }, {missing});
    const auto empty = temp_file("empty.npz", "");
    expect<IoError>("npz empty", [&] { io::read_npz(empty); }, {empty});
    const auto text = temp_file("text.npz", std::string(100, 'x'));
    expect<IoError>("npz not a zip", [&] { io::read_npz(text); }, {text, "not a zip"});
    expect<IoError>("npz written to a missing directory", [&] { io::write_npz("/nonexistent_dir/x.npz", {}); },
                    {"/nonexistent_dir/x.npz"});

    Small model;
    const auto weights = std::string("/tmp/xgrad_bad_input_weights.npz");
    model.save(weights);
    const auto full = io::read_npz(weights);
    auto write_changed = [&](const std::string& name, const std::function<void(io::NpzArchive&)>& change) {
        auto arrays = full;
        change(arrays);
        const std::string path = "/tmp/xgrad_bad_input_" + name + ".npz";
        io::write_npz(path, arrays);
        return path;
    };
    const auto truncated = temp_file("truncated.npz", [&] {
        std::ifstream f(weights, std::ios::binary);
        const std::string bytes(std::istreambuf_iterator<char>(f), {});
        return bytes.substr(0, bytes.size() - 30);
    }());
    expect<IoError>("weights truncated", [&] { model.load(truncated); }, {truncated});
    // integers load (numpy writes them: converted to the model's precision); bytes do not
    const auto byte_dtype = write_changed("byte_dtype", [](io::NpzArchive& a) {
        a[0].second = io::NpyArray{{4, 3}, "|u1", std::vector<unsigned char>(12)};
    });
    expect<IoError>("weights of dtype |u1 (bytes)", [&] { model.load(byte_dtype); }, {byte_dtype, "fc.weight", "|u1"});
    const auto reshaped = write_changed("reshaped", [](io::NpzArchive& a) { a[0].second.shape = {3, 4}; });
    expect<IoError>("weights of another shape", [&] { model.load(reshaped); }, {reshaped, "fc.weight", "[3, 4]", "[4, 3]"});
    const auto fewer = write_changed("fewer", [](io::NpzArchive& a) { a.pop_back(); });
    expect<IoError>("weights missing a tensor", [&] { model.load(fewer); }, {fewer, "fc.bias"});

    optim::SGD opt(model.parameters(), {.momentum = 0.9});
    expect<IoError>("weights file as a checkpoint", [&] { io::load_checkpoint(weights, model, opt); },
                    {weights, "not an xgrad checkpoint"});
    nn::Sequential other({4});
    other.add(nn::Dense(4, 5));
    optim::SGD other_opt(other.parameters(), {.momentum = 0.9});
    const std::string other_ckpt = "/tmp/xgrad_bad_input_other.ckpt";
    io::save_checkpoint(other_ckpt, other, other_opt, 1);
    expect<IoError>("another model's checkpoint", [&] { io::load_checkpoint(other_ckpt, model, opt); }, {other_ckpt});
    expect<IoError>("checkpoint missing", [&] { io::load_checkpoint(missing, model, opt); }, {missing});
}

TEST_CASE("bad input: sizes that overflow, odd geometries and degenerate states", "[errors][battery]") {
    // Shapes whose element count wraps around 2^64 (or whose bytes do), with and without a
    // zero among the dimensions.
    const std::size_t big = std::size_t{1} << 33;
    expect<ShapeError>("zeros with a wrapping element count", [&] { xgrad::zeros({big, big}); }, {"zeros", "[8589934592, 8589934592]"});
    expect<ShapeError>("ones with a wrapping count beside a zero", [&] { xgrad::ones({0, big, big}); }, {"ones"});
    expect<ShapeError>("full whose bytes overflow", [&] { xgrad::full({std::size_t{1} << 62}, 1.0f); }, {"full"});
    expect<ShapeError>("randn with a wrapping count", [&] { xgrad::randn({big, big, 4}); }, {"randn"});
    expect<ShapeError>("reshape to a wrapping shape of an empty tensor",
                       [&] { xgrad::reshape(xgrad::zeros({0}), {0, 1LL << 33, 1LL << 33}); }, {"reshape", "[0]"});
    expect<ShapeError>("reshape with -1 and a wrapping rest",
                       [&] { xgrad::reshape(xgrad::zeros({4}), {-1, 1LL << 40, 1LL << 40}); }, {"reshape"});
    expect<ValueError>("zeros too large to allocate", [&] { xgrad::zeros({std::size_t{1} << 50}); },
                       {"zeros", "cannot allocate"});
    expect<ValueError>("arange with a NaN bound", [&] { xgrad::arange<float>(0, kNaN); }, {"arange", "finite"});
    expect<ValueError>("arange with an infinite bound",
                       [&] { xgrad::arange<double>(0, std::numeric_limits<double>::infinity()); }, {"arange"});
    expect<ValueError>("arange of 2^70 elements", [&] { xgrad::arange<double>(0, 1e21, 1e-3); }, {"arange"});

    // Pooling: a padding whose double overflows an int; empty images.
    expect<ValueError>("max_pool2d with padding near 2^30",
                       [&] { xgrad::max_pool2d(t({1, 4, 4, 1}), {.kernel = 3, .padding = 1 << 30}); },
                       {"max_pool2d", "padding", "[1, 4, 4, 1]"});
    expect<ValueError>("avg_pool2d with a height padding of 2^30",
                       [&] { xgrad::avg_pool2d(t({1, 4, 4, 1}), {.kernel = 3, .padding = {1 << 30, 1}}); },
                       {"avg_pool2d"});
    expect<ShapeError>("max_pool2d over an image without rows, padded",
                       [&] { xgrad::max_pool2d(t({1, 0, 4, 2}), {.kernel = 2, .padding = 1}); },
                       {"max_pool2d", "[1, 0, 4, 2]"});
    expect<ShapeError>("avg_pool2d over an image without columns, padded, count_include_pad off",
                       [&] { xgrad::avg_pool2d(t({1, 3, 0, 2}), {.kernel = 2, .padding = 1, .count_include_pad = false}); },
                       {"avg_pool2d", "[1, 3, 0, 2]"});

    // A convolution whose padded image cannot be held: the error reaches the caller (not
    // std::terminate inside an OpenMP region). Without libxsmm the geometry takes img2col,
    // whose buffers are small, and the result is computed instead.
    const int p = 1 << 20;
    for (const bool f64 : {false, true}) {
        ++cases;
        try {
            if (f64)
                xgrad::conv2d(xgrad::ones<double>({1, 1, 1, 16}), xgrad::ones<double>({3, 3, 16, 1}), {.stride = p, .padding = p});
            else
                xgrad::conv2d(t({1, 1, 1, 16}), t({3, 3, 16, 1}), {.stride = p, .padding = p});
        } catch (const ValueError& e) {
            CHECK_THAT(e.what(), Catch::Matchers::Contains("conv2d") && Catch::Matchers::Contains("cannot allocate"));
        }
    }
    expect<ShapeError>("conv2d whose padded size overflows",
                       [&] { xgrad::conv2d(t({1, 1, 1, 1}), t({1, 1, 1, 1}), {.padding = {INT32_MAX, INT32_MAX, INT32_MAX, INT32_MAX}, .groups = 1}); },
                       {"conv2d"});

    // The generator's all-zero state returns zeros forever (randn never ends): refused.
    std::string zero_state;
    for (int i = 0; i < 312; ++i) zero_state += "0 ";
    zero_state += "312";
    const std::string before = xgrad::generator_state();
    expect<ValueError>("set_generator_state of all zeros", [&] { xgrad::set_generator_state(zero_state); },
                       {"set_generator_state", "zeros"});
    CHECK(xgrad::generator_state() == before);

    // Options that must be finite and in range.
    expect<ValueError>("batch_norm with eps 0", [&] {
        auto rm = xgrad::zeros({2}), rv = xgrad::ones({2});
        xgrad::batch_norm(t({4, 2}), t({2}), t({2}), rm, rv, true, 0.1, 0.0);
    }, {"batch_norm", "eps", "[4, 2]"});
    expect<ValueError>("batch_norm with a NaN momentum", [&] {
        auto rm = xgrad::zeros({2}), rv = xgrad::ones({2});
        xgrad::batch_norm(t({4, 2}), t({2}), t({2}), rm, rv, true, kNaN, 1e-5);
    }, {"batch_norm", "momentum"});
    expect<ValueError>("batch_norm with momentum 1.5", [&] {
        auto rm = xgrad::zeros({2}), rv = xgrad::ones({2});
        xgrad::batch_norm(t({4, 2}), t({2}), t({2}), rm, rv, false, 1.5, 1e-5);
    }, {"batch_norm", "momentum"});
    expect<ValueError>("BatchNorm layer with an infinite eps",
                       [&] { nn::BatchNorm(3, 0.1, std::numeric_limits<double>::infinity()); }, {"BatchNorm"});
    expect<ValueError>("SGD with a NaN dampening",
                       [&] { optim::SGD({t({2}, true)}, {.momentum = 0.9, .dampening = kNaN}); }, {"SGD", "dampening"});
    expect<ValueError>("Adam with an infinite eps",
                       [&] { optim::Adam({t({2}, true)}, {.eps = std::numeric_limits<double>::infinity()}); }, {"Adam", "eps"});
    expect<ValueError>("a parameter passed twice to an optimizer", [&] {
        auto p = t({3}, true);
        optim::SGD({p, t({2}, true), p}, {});
    }, {"SGD", "parameter 2", "parameter 0"});
    expect<ShapeError>("count_correct with zero classes", [&] { nn::count_correct(t({3, 0}), t({3})); },
                       {"count_correct", "[3, 0]"});
    expect<ValueError>("DataLoader whose batch_size x shards overflows", [&] {
        xgrad::data::Dataset d{t({4, 2}), t({4})};
        xgrad::data::DataLoader(d, {.batch_size = std::size_t{1} << 62, .shard = 1, .shards = 8});
    }, {"DataLoader", "overflows"});
    {
        // 2^61 shards of batch 4 (no overflow): one global batch of 4 samples, which none of
        // the shards gets (fewer samples than shards), so the epoch has no batch; nothing crashes.
        xgrad::data::Dataset d{t({4, 2}), t({4})};
        xgrad::data::DataLoader loader(d, {.batch_size = 4, .shard = 5, .shards = std::size_t{1} << 61});
        CHECK(loader.size() == 0);
    }
    // A model with a layer added twice lists (and steps) its tensors once.
    {
        nn::Sequential shared({4});
        auto layer = std::make_shared<nn::Dense>(4, 4);
        shared.add(layer);
        shared.add(layer);
        CHECK(shared.parameters().size() == 2);
        CHECK_NOTHROW(optim::SGD(shared.parameters(), {}));
    }}

TEST_CASE("bad input: checkpoints, archives and saves, second round", "[errors][battery]") {
    Small model;
    optim::SGD opt(model.parameters(), {.lr = 0.1, .momentum = 0.9});
    xgrad::sum((*model.fc)(t({2, 4}))).backward();
    opt.step();
    const std::string good = "/tmp/xgrad_bad_input_r2.ckpt";
    std::filesystem::remove(good);
    io::save_checkpoint(good, model, opt, 3);
    const auto full = io::read_npz(good);
    const std::string before_rng = xgrad::generator_state();
    const auto before_state = opt.state();
    auto changed = [&](const std::string& name, const std::function<void(io::NpzArchive&)>& change) {
        auto arrays = full;
        change(arrays);
        const std::string path = "/tmp/xgrad_bad_input_r2_" + name + ".ckpt";
        io::write_npz(path, arrays);
        return path;
    };
    auto set = [](io::NpzArchive& a, const std::string& key, xt::xarray<double> v) {
        for (auto& [name, arr] : a)
            if (name == key) arr = io::to_npy(v);
    };
    auto drop = [](io::NpzArchive& a, const std::string& prefix) {
        std::erase_if(a, [&](const auto& e) { return e.first.rfind(prefix, 0) == 0; });
    };
    const double nan = std::numeric_limits<double>::quiet_NaN(), inf = std::numeric_limits<double>::infinity();
    const std::vector<std::pair<std::string, std::function<void(io::NpzArchive&)>>> tampered = {
        {"steps NaN", [&](auto& a) { set(a, "optim/steps", xt::xarray<double>(nan)); }},
        {"steps negative", [&](auto& a) { set(a, "optim/steps", xt::xarray<double>(-1.0)); }},
        {"steps fractional", [&](auto& a) { set(a, "optim/steps", xt::xarray<double>(1.5)); }},
        {"steps empty", [&](auto& a) { set(a, "optim/steps", xt::xarray<double>::from_shape({0})); }},
        {"lr NaN", [&](auto& a) { set(a, "optim/lr", xt::xarray<double>(nan)); }},
        {"lr infinite", [&](auto& a) { set(a, "optim/lr", xt::xarray<double>(inf)); }},
        {"lr negative", [&](auto& a) { set(a, "optim/lr", xt::xarray<double>(-0.1)); }},
        {"lr empty", [&](auto& a) { set(a, "optim/lr", xt::xarray<double>::from_shape({0})); }},
        {"steps missing", [&](auto& a) { drop(a, "optim/steps"); }},
        {"lr missing", [&](auto& a) { drop(a, "optim/lr"); }},
        {"momentum buffers missing", [&](auto& a) { drop(a, "optim/momentum_buffer"); }},
        {"one momentum buffer missing", [&](auto& a) { drop(a, "optim/momentum_buffer.1"); }},
        {"an extra model tensor", [&](auto& a) { a.emplace_back("model/fc.extra", io::to_npy(xt::xarray<float>{1})); }},
        {"an unknown entry", [&](auto& a) { a.emplace_back("notes", io::bytes_to_npy("hi")); }},
        {"an Adam slot in an SGD checkpoint", [&](auto& a) { a.emplace_back("optim/exp_avg.0", a[3].second); }},
    };
    for (const auto& [what, change] : tampered) {
        const auto path = changed(std::to_string(cases), change);
        expect<IoError>("checkpoint with " + what, [&] { io::load_checkpoint(path, model, opt); }, {path});
        CHECK(xgrad::generator_state() == before_rng);
        CHECK(opt.state().size() == before_state.size());
        CHECK(opt.steps() == 1);
    }
    // An SGD checkpoint does not load into Adam.
    optim::Adam adam(model.parameters());
    expect<IoError>("an SGD checkpoint into Adam", [&] { io::load_checkpoint(good, model, adam); },
                    {good, "SGD(momentum=0.9", "Adam(beta1=0.9"});
    CHECK(adam.steps() == 0);
    // Nor into an SGD with other options, nor (without the type entry, as older checkpoints)
    // into Adam by its slots alone.
    optim::SGD other(model.parameters(), {.lr = 0.1, .momentum = 0.5});
    expect<IoError>("an SGD checkpoint into SGD with another momentum", [&] { io::load_checkpoint(good, model, other); },
                    {good, "momentum=0.9", "momentum=0.5"});
    CHECK(other.steps() == 0);
    const auto untyped = changed("untyped", [&](auto& a) { drop(a, "optim/type"); });
    expect<IoError>("an untyped SGD checkpoint into Adam", [&] { io::load_checkpoint(untyped, model, adam); },
                    {untyped, "momentum_buffer"});
    optim::SGD same(model.parameters(), {.lr = 0.1, .momentum = 0.9});
    CHECK_NOTHROW(io::load_checkpoint(untyped, model, same));
    CHECK(same.steps() == 1);
    // Weights files are strict too.
    const std::string weights = "/tmp/xgrad_bad_input_r2.npz";
    model.save(weights);
    auto extra = io::read_npz(weights);
    extra.emplace_back("fc.extra", io::to_npy(xt::xarray<float>{1}));
    io::write_npz("/tmp/xgrad_bad_input_r2_extra.npz", extra);
    expect<IoError>("weights with an extra tensor", [&] { model.load("/tmp/xgrad_bad_input_r2_extra.npz"); }, {"fc.extra"});

    // Saves that could not be loaded back are refused when saving.
    expect<ValueError>("a checkpoint of epoch -1", [&] { io::save_checkpoint(good, model, opt, -1); }, {"epoch -1"});
    expect<IoError>("an archive with two arrays of one name", [&] {
        io::write_npz("/tmp/xgrad_bad_input_r2_dup.npz", {{"a", io::to_npy(xt::xarray<float>{1})}, {"a", io::to_npy(xt::xarray<float>{2})}});
    }, {"two arrays named 'a'"});
    expect<IoError>("an array name of 70000 bytes", [&] {
        io::write_npz("/tmp/xgrad_bad_input_r2_long.npz", {{std::string(70000, 'n'), io::to_npy(xt::xarray<float>{1})}});
    }, {"name of 70000 bytes"});
    expect<IoError>("an archive of 65536 arrays", [&] {
        io::NpzArchive many;
        for (int i = 0; i < 65536; ++i) many.emplace_back(std::to_string(i), io::bytes_to_npy(""));
        io::write_npz("/tmp/xgrad_bad_input_r2_many.npz", many);
    }, {"65536 arrays"});

    // Archives made by hand: duplicate names (numpy keeps the last, we refuse), and a local
    // header whose name disagrees with the directory.
    std::string bytes;
    {
        const std::string one = "/tmp/xgrad_bad_input_r2_ab.npz";
        io::write_npz(one, {{"aa", io::to_npy(xt::xarray<float>{1})}, {"bb", io::to_npy(xt::xarray<float>{2})}});
        std::ifstream f(one, std::ios::binary);
        bytes.assign(std::istreambuf_iterator<char>(f), {});
    }
    auto replace_all = [](std::string s, const std::string& from, const std::string& to) {
        for (std::size_t at = s.find(from); at != std::string::npos; at = s.find(from, at + to.size())) s.replace(at, from.size(), to);
        return s;
    };
    const auto dup = temp_file("r2_dup.npz", replace_all(bytes, "bb.npy", "aa.npy"));
    expect<IoError>("npz with a duplicate entry name", [&] { io::read_npz(dup); }, {dup, "two entries"});
    {
        // Only the central directory's second name changes: it now names "cc" over bb's data.
        std::string s = bytes;
        const auto at = s.rfind("bb.npy");
        s.replace(at, 2, "cc");
        const auto mismatch = temp_file("r2_mismatch.npz", s);
        expect<IoError>("npz whose directory and local header disagree", [&] { io::read_npz(mismatch); },
                        {mismatch, "local header"});
    }
    const std::string dir = "/tmp/xgrad_bad_input_r2_dir";
    std::filesystem::create_directories(dir);
    expect<IoError>("npz that is a directory", [&] { io::read_npz(dir); }, {dir});
    expect<IoError>("weights that are a directory", [&] { model.load(dir); }, {dir});
    expect<IoError>("IDX that is a directory", [&] { xgrad::data::read_idx(dir); }, {dir});
}

TEST_CASE("saves: stale temporaries are removed, threads do not collide, symbolic links are followed", "[io]") {
    namespace fs = std::filesystem;
    const std::string dir = "/tmp/xgrad_test_saves";
    fs::remove_all(dir);
    fs::create_directories(dir);
    const std::string path = dir + "/w.npz";
    // A dead process's temporary (pid 2^22 + 1 exceeds the default pid_max) goes; a live one's stays.
    std::ofstream(path + ".tmp4194305.0") << "partial";
    std::ofstream(path + ".tmp1") << "pid 1 runs";
    std::ofstream(dir + "/other.npz.tmp4194305.0") << "another file's";
    io::write_npz(path, {{"a", io::to_npy(xt::xarray<float>{1})}});
    CHECK_FALSE(fs::exists(path + ".tmp4194305.0"));
    CHECK(fs::exists(path + ".tmp1"));
    CHECK(fs::exists(dir + "/other.npz.tmp4194305.0"));
    // Two threads saving to one path: both succeed, the file is one of the two, whole.
    std::vector<std::thread> savers;
    std::atomic<int> failures{0};
    for (int k = 0; k < 2; ++k)
        savers.emplace_back([&, k] {
            for (int i = 0; i < 50; ++i) {
                try {
                    io::write_npz(path, {{"a", io::to_npy(xt::xarray<float>(xt::ones<float>({1000}) * float(k)))}});
                } catch (const std::exception&) {
                    ++failures;
                }
            }
        });
    for (auto& s : savers) s.join();
    CHECK(failures == 0);
    CHECK(io::read_npz(path).size() == 1);
    // Through a symbolic link: the target is written, the link stays a link.
    const std::string link = dir + "/link.npz";
    fs::create_symlink("w.npz", link);
    io::write_npz(link, {{"b", io::to_npy(xt::xarray<float>{2})}});
    CHECK(fs::is_symlink(link));
    CHECK(io::read_npz(path)[0].first == "b");
}

namespace {

// Peak resident memory since the last reset_peak_rss(), in MiB (Linux: VmHWM).
double peak_rss_mib() {
    std::ifstream f("/proc/self/status");
    for (std::string line; std::getline(f, line);)
        if (line.rfind("VmHWM:", 0) == 0) return std::stod(line.substr(6)) / 1024;
    return 0;
}
void reset_peak_rss() { std::ofstream("/proc/self/clear_refs") << "5"; }

void put32_at(std::string& s, std::size_t at, std::uint32_t v) {
    for (int i = 0; i < 4; ++i) s[at + static_cast<std::size_t>(i)] = static_cast<char>(v >> (8 * i) & 0xff);
}

}  // namespace

TEST_CASE("bad input: decompression bombs fail before they fill memory", "[errors][battery]") {
    // An IDX header for 16 bytes followed by 512 MiB of zeros, gzip'd (about 500 KiB).
    const std::string bomb = "/tmp/xgrad_bad_input_bomb.idx.gz";
    {
        gzFile f = gzopen(bomb.c_str(), "wb1");
        REQUIRE(f);
        const std::string header("\0\0\x08\x01\0\0\0\x10", 8);
        gzwrite(f, header.data(), static_cast<unsigned>(header.size()));
        const std::string zeros(1 << 20, '\0');
        for (int i = 0; i < 512; ++i) gzwrite(f, zeros.data(), static_cast<unsigned>(zeros.size()));
        gzclose(f);
    }
    reset_peak_rss();
    const double base = peak_rss_mib();
    expect<IoError>("IDX gzip bomb", [&] { xgrad::data::read_idx(bomb); }, {bomb, "longer than its header"});
    CHECK(peak_rss_mib() - base < 64);

    // A deflated .npz entry whose directory claims 4 GiB (within deflate's ratio for its
    // 4.4 MB of data, which is not even valid deflate): refused without allocating the claim.
    const std::string stored = "/tmp/xgrad_bad_input_big.npz";
    io::write_npz(stored, {{"a", io::to_npy(xt::xarray<float>(xt::zeros<float>({1100000})))}});
    std::string bytes;
    {
        std::ifstream f(stored, std::ios::binary);
        bytes.assign(std::istreambuf_iterator<char>(f), {});
    }
    const std::size_t central = bytes.rfind(std::string("PK\x01\x02", 4));
    REQUIRE(central != std::string::npos);
    bytes[8] = 8;             // local header: method deflate
    bytes[central + 10] = 8;  // central directory: method deflate
    put32_at(bytes, 22, 0xffffffffu);
    put32_at(bytes, central + 24, 0xffffffffu);
    const auto claimed = temp_file("claims_4gib.npz", bytes);
    reset_peak_rss();
    const double base2 = peak_rss_mib();
    expect<IoError>("npz entry claiming 4 GiB", [&] { io::read_npz(claimed); }, {claimed});
    CHECK(peak_rss_mib() - base2 < 256);
}

TEST_CASE("bad input: the battery's size", "[errors][battery]") {
    // Run alone ("[battery]"), the battery has this many cases; a shrinking count means cases
    // were lost. Run with other tests first, the count is the same: each case runs once.
    if (cases > 0) {
        WARN("bad-input battery: " << cases << " cases");
        CHECK(cases >= 100);
    }
}
