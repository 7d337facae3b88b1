#include "xgrad/nn/module.hpp"

#include <map>
#include <set>

#include <fmt/format.h>

#include "xgrad/io/npz.hpp"

namespace xgrad::nn {

template <class T>
basic_tensor<T> basic_module<T>::add_parameter(std::string name, Tensor t) {
    t.set_requires_grad(true);
    parameters_.emplace_back(std::move(name), t);
    return t;
}

template <class T>
basic_tensor<T> basic_module<T>::add_buffer(std::string name, Tensor t) {
    buffers_.emplace_back(std::move(name), t);
    return t;
}

template <class T>
void basic_module<T>::add_child(std::string name, std::shared_ptr<basic_module> child) {
    child->train(training_);
    children_.emplace_back(std::move(name), std::move(child));
}

template <class T>
void basic_module<T>::collect(const std::string& prefix, bool parameters, std::vector<NamedTensor>& out) const {
    for (const auto& [name, t] : parameters ? parameters_ : buffers_) out.emplace_back(prefix + name, t);
    for (const auto& [name, child] : children_) child->collect(prefix + name + ".", parameters, out);
}

template <class T>
std::vector<basic_named_tensor<T>> basic_module<T>::named_parameters() const {
    std::vector<NamedTensor> out;
    collect("", true, out);
    return out;
}

template <class T>
std::vector<basic_tensor<T>> basic_module<T>::parameters() const {
    // Each tensor once, as PyTorch: a layer added twice (shared weights) would otherwise be
    // stepped twice per update.
    std::vector<Tensor> out;
    std::set<const void*> seen;
    for (auto& [name, t] : named_parameters())
        if (seen.insert(t.node().get()).second) out.push_back(t);
    return out;
}

template <class T>
std::vector<basic_named_tensor<T>> basic_module<T>::named_buffers() const {
    std::vector<NamedTensor> out;
    collect("", false, out);
    return out;
}

template <class T>
std::vector<basic_named_tensor<T>> basic_module<T>::state() const {
    auto out = named_parameters();
    for (auto& b : named_buffers()) out.push_back(std::move(b));
    return out;
}

template <class T>
void basic_module<T>::summary_rows(const std::string& path, std::string& out) const {
    std::vector<std::string> shapes;
    std::size_t count = 0;
    for (const auto& [name, t] : parameters_) {
        shapes.push_back(name + " " + to_string(t.shape()));
        count += t.size();
    }
    fmt::format_to(std::back_inserter(out), "{:<32} {:<40} {:>10}\n",
                   (path.empty() ? "" : path + " ") + "(" + type_name() + ")", fmt::format("{}", fmt::join(shapes, ", ")),
                   count);
    for (const auto& [name, child] : children_) child->summary_rows(path.empty() ? name : path + "." + name, out);
}

template <class T>
std::string basic_module<T>::summary(bool print) const {
    std::string out = fmt::format("{:<32} {:<40} {:>10}\n{}\n", "Module (type)", "Parameters", "Count",
                                  std::string(84, '='));
    summary_rows("", out);
    std::size_t trainable = 0, buffers = 0;
    for (const auto& t : parameters()) trainable += t.size();
    for (const auto& [name, t] : named_buffers()) buffers += t.size();
    fmt::format_to(std::back_inserter(out), "{}\nTotal params: {}\nTrainable params: {}\nNon-trainable (buffers): {}\n",
                   std::string(84, '='), trainable + buffers, trainable, buffers);
    if (print) fmt::print("{}", out);
    return out;
}

template <class T>
void basic_module<T>::train(bool on) {
    training_ = on;
    for (auto& [name, child] : children_) child->train(on);
}

template <class T>
void basic_module<T>::zero_grad() {
    for (auto& t : parameters()) t.zero_grad();
}

template <class T>
void basic_module<T>::save(const std::string& path) const {
    io::NpzArchive arrays;
    for (const auto& [name, t] : state()) arrays.emplace_back(name, io::to_npy(t.value()));
    io::write_npz(path, arrays);
}

template <class T>
void basic_module<T>::load(const std::string& path) { load_state(io::read_npz(path), "", path); }

template <class T>
void basic_module<T>::load_state(const io::NpzArchive& archive, const std::string& prefix, const std::string& source) {
    std::map<std::string, const io::NpyArray*> arrays;
    for (const auto& [name, a] : archive)
        if (name.rfind(prefix, 0) == 0) arrays.emplace(name, &a);
    // Check everything before changing anything, so a bad file leaves the module as it was.
    std::vector<std::pair<Tensor, xt::xarray<T>>> updates;
    for (const auto& [name, t] : state()) {
        const auto it = arrays.find(prefix + name);
        if (it == arrays.end())
            throw IoError(fmt::format("load: {} has no tensor '{}' (shape {}) of this model", source, name,
                                      to_string(t.shape())));
        xt::xarray<T> value = io::npy_to<T>(*it->second, source + ", tensor " + name);
        if (value.shape() != t.shape())
            throw IoError(fmt::format("load: {}: tensor '{}' has shape {} but the model expects {}", source, name,
                                      to_string(value.shape()), to_string(t.shape())));
        updates.emplace_back(t, std::move(value));
        arrays.erase(it);
    }
    // Strict, as PyTorch's load_state_dict by default: a tensor the model does not have means
    // the file belongs to another model (or another version of this one).
    if (!arrays.empty())
        throw IoError(fmt::format("load: {} has {} tensor(s) this model does not have, first '{}'", source,
                                  arrays.size(), arrays.begin()->first.substr(prefix.size())));
    for (auto& [t, value] : updates) t.mutable_value() = std::move(value);
}

template class basic_module<float>;
template class basic_module<double>;

}  // namespace xgrad::nn
