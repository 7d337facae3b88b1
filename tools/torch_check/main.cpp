// torch_check: the xgrad half of tools/check_torch.py, which compares ops with PyTorch.
// Reads cases from an .npz (for case i: p_i = [op code, parameters...], inputs a_i, b_i, c_i
// already in xgrad's layout, an optional target t_i that takes no gradient, and the output
// gradient gy_i), runs each op forward and backward in float64 (or float32 with --float32),
// and writes y_i and the inputs' gradients ga_i, gb_i, gc_i, or err_i with the message of the
// xgrad::Error it threw. The op codes are check_torch.py's table.
//
//   build/tools/torch_check in.npz out.npz [--float32]

#include <cstdio>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "xgrad/io/npz.hpp"
#include "xgrad/xgrad.hpp"

namespace {

template <class T>
using Tensor = xgrad::basic_tensor<T>;

xgrad::Reduction reduction(int code) {
    return code == 0 ? xgrad::Reduction::mean : code == 1 ? xgrad::Reduction::sum : xgrad::Reduction::none;
}

template <class T>
Tensor<T> run_op(int op, const std::vector<double>& p, const std::vector<Tensor<T>>& in, const Tensor<T>& target) {
    using namespace xgrad;
    const auto i = [&](std::size_t k) { return static_cast<int>(p.at(k)); };
    switch (op) {
        case 0:
            return conv_transpose2d(in.at(0), in.at(1),
                                    {.stride = {i(1), i(2)}, .dilation = {i(3), i(4)},
                                     .padding = PadSpec{i(5), i(5), i(6), i(6)}, .output_padding = {i(7), i(8)},
                                     .groups = i(9)});
        case 1:
            return conv2d(in.at(0), in.at(1),
                          {.stride = {i(1), i(2)}, .dilation = {i(3), i(4)}, .padding = PadSpec{i(5), i(5), i(6), i(6)},
                           .groups = i(7)});
        case 2: return max_pool2d(in.at(0), {.kernel = Size2{i(1), i(2)}, .stride = Size2{i(3), i(4)}, .padding = Size2{i(5), i(6)}});
        case 3:
            return avg_pool2d(in.at(0), {.kernel = Size2{i(1), i(2)}, .stride = Size2{i(3), i(4)},
                                         .padding = Size2{i(5), i(6)}, .count_include_pad = i(7) != 0});
        case 4: return adaptive_avg_pool2d(in.at(0), Size2{i(1), i(2)});
        case 5:
            return upsample2d(in.at(0), {.size = Size2{i(1), i(2)},
                                         .mode = i(3) ? Interpolation::bilinear : Interpolation::nearest,
                                         .align_corners = i(4) != 0});
        case 6: return group_norm(in.at(0), static_cast<std::size_t>(i(1)), in.at(1), in.at(2));
        case 7: {
            const auto& s = in.at(0).shape();
            const Shape trailing(s.end() - i(1), s.end());
            return layer_norm(in.at(0), trailing, in.at(1), in.at(2));
        }
        case 8: return softmax(in.at(0), i(1));
        case 9: return log_softmax(in.at(0), i(1));
        case 10: return gelu(in.at(0), i(1) ? Gelu::tanh : Gelu::none);
        case 11: return silu(in.at(0));
        case 12: return elu(in.at(0), p.at(1));
        case 13: return softplus(in.at(0), p.at(1), p.at(2));
        case 14: return hardswish(in.at(0));
        case 15: return leaky_relu(in.at(0), p.at(1));
        case 16: {
            AttentionOptions o{.causal = i(1) != 0};
            if (p.at(2) > 0) o.scale = p.at(2);
            return scaled_dot_product_attention(in.at(0), in.at(1), in.at(2), o);
        }
        case 17: return cross_entropy(in.at(0), target, CrossEntropyOptions{.label_smoothing = p.at(1)});
        case 18: return mse_loss(in.at(0), target, reduction(i(1)));
        case 19: return l1_loss(in.at(0), target, reduction(i(1)));
        case 20: return huber_loss(in.at(0), target, p.at(2), reduction(i(1)));
        case 21: return smooth_l1_loss(in.at(0), target, p.at(2), reduction(i(1)));
        case 22: return binary_cross_entropy(in.at(0), target, reduction(i(1)));
        case 23: return binary_cross_entropy_with_logits(in.at(0), target, reduction(i(1)));
        case 24: {  // training mode; the running statistics are not compared
            const std::size_t c = in.at(0).shape().back();
            Tensor<T> mean = zeros<T>({c}), var = ones<T>({c});
            return batch_norm(in.at(0), in.at(1), in.at(2), mean, var, true, 0.1, p.at(1));
        }
        case 25: return matmul(in.at(0), in.at(1));
        case 26: return linear(in.at(0), in.at(1), in.at(2));
        case 27: return embedding(target, in.at(0));
        case 28: case 29: case 30: {  // sum, mean, max over the axes p[2..] (keepdims p[1])
            const Axes axes(p.begin() + 2, p.end());
            const bool keep = i(1) != 0;
            return op == 28 ? sum(in.at(0), axes, keep) : op == 29 ? mean(in.at(0), axes, keep) : max(in.at(0), axes, keep);
        }
        case 31: return clamp(in.at(0), static_cast<T>(p.at(1)), static_cast<T>(p.at(2)));
        case 32: return pow(in.at(0), static_cast<T>(p.at(1)));
        case 33: return sqrt(in.at(0));
        case 34: return abs(in.at(0));
        case 35: return pow(in.at(0), in.at(1));
        case 36: {  // cross_entropy or nll_loss (p[1]) with class weights p[3..] and ignore_index p[2] (-1: none)
            CrossEntropyOptions o{.weight = std::vector<double>(p.begin() + 3, p.end())};
            if (i(2) >= 0) o.ignore_index = i(2);
            return i(1) ? nll_loss(in.at(0), target, o) : cross_entropy(in.at(0), target, o);
        }
        case 37: return instance_norm(in.at(0), in.at(1), in.at(2), p.at(1));
        case 38: return conv2d(in.at(0), in.at(1), {.dilation = {i(1), i(2)}, .padding = Padding::same});
        default: throw xgrad::ValueError("torch_check: unknown op code " + std::to_string(op));
    }
}

// p = [39, GRU?, input size, hidden size, layers, bidirectional]: the module's output for x
// [N, T, in] and the gradients of x (ga_i) and of each parameter (gp_i/<name>).
template <class T>
void run_recurrent(const std::vector<double>& p, const Tensor<T>& x, const xgrad::io::NpzArchive& archive,
                   const std::string& s, const xt::xarray<double>& gy, xgrad::io::NpzArchive& out) {
    namespace nn = xgrad::nn;
    const auto in = static_cast<std::size_t>(p.at(2)), hidden = static_cast<std::size_t>(p.at(3));
    const nn::RecurrentOptions o{.num_layers = static_cast<std::size_t>(p.at(4)), .bidirectional = p.at(5) != 0};
    std::unique_ptr<nn::basic_recurrent<T>> m;
    if (p.at(1) != 0)
        m = std::make_unique<nn::basic_gru<T>>(in, hidden, o);
    else
        m = std::make_unique<nn::basic_lstm<T>>(in, hidden, o);
    m->load_state(archive, "m_" + s + "/", "check_torch");
    auto y = m->forward(x);
    y.backward(xt::xarray<T>(gy));
    out.push_back({"y_" + s, xgrad::io::to_npy(xt::xarray<double>(y.value()))});
    out.push_back({"ga_" + s, xgrad::io::to_npy(xt::xarray<double>(x.grad()))});
    for (const auto& [name, t] : m->named_parameters())
        out.push_back({"gp_" + s + "/" + name, xgrad::io::to_npy(xt::xarray<double>(t.grad()))});
}

template <class T>
int run(const std::string& in_path, const std::string& out_path) {
    const auto archive = xgrad::io::read_npz(in_path);
    std::map<std::string, xt::xarray<double>> a;
    for (const auto& [name, array] : archive)
        if (name.find('/') == std::string::npos) a[name] = xgrad::io::npy_to_double(array, name);
    xgrad::io::NpzArchive out;
    std::size_t cases = 0;
    for (;; ++cases) {
        const std::string s = std::to_string(cases);
        if (!a.count("p_" + s)) break;
        const auto& pv = a["p_" + s];
        const std::vector<double> p(pv.begin(), pv.end());
        std::vector<Tensor<T>> in;
        for (const char* name : {"a_", "b_", "c_"})
            if (a.count(name + s)) in.emplace_back(xt::xarray<T>(a[name + s]), true);
        const Tensor<T> target = a.count("t_" + s) ? Tensor<T>(xt::xarray<T>(a["t_" + s])) : Tensor<T>();
        try {
            if (p.at(0) == 39) {  // LSTM or GRU (p[1]) with PyTorch's parameters, m_i/<name>
                run_recurrent<T>(p, in.at(0), archive, s, a.at("gy_" + s), out);
                continue;
            }
            auto y = run_op<T>(static_cast<int>(p.at(0)), p, in, target);
            y.backward(xt::xarray<T>(a.at("gy_" + s)));
            out.push_back({"y_" + s, xgrad::io::to_npy(xt::xarray<double>(y.value()))});
            const char* grads[] = {"ga_", "gb_", "gc_"};
            for (std::size_t k = 0; k < in.size(); ++k)
                out.push_back({grads[k] + s, xgrad::io::to_npy(xt::xarray<double>(in[k].grad()))});
        } catch (const xgrad::Error& e) {
            out.push_back({"err_" + s, xgrad::io::bytes_to_npy(e.what())});
        }
    }
    xgrad::io::write_npz(out_path, out);
    std::printf("%zu cases\n", cases);
    return 0;
}

}  // namespace

int main(int argc, char** argv) {
    CLI::App app{"Runs check_torch.py's cases in xgrad (float64 unless --float32)."};
    std::string in_path, out_path;
    bool float32 = false;
    app.add_option("input", in_path, "cases (.npz)")->required();
    app.add_option("output", out_path, "results (.npz)")->required();
    app.add_flag("--float32", float32, "run in float32");
    CLI11_PARSE(app, argc, argv);
    return float32 ? run<float>(in_path, out_path) : run<double>(in_path, out_path);
}
