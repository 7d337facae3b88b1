#include "xgrad/data/dataset.hpp"

#include <zlib.h>

#include <algorithm>
#include <cerrno>
#include <cctype>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <future>
#include <numeric>
#include <random>

#include <fmt/format.h>
#include <xtensor/xbuilder.hpp>

#include "detail/check.hpp"
#include "xgrad/io/png.hpp"

namespace xgrad::data {

namespace {

// An IDX file opened through zlib (which reads plain files unchanged), read in pieces so
// that what is held never exceeds what the header claims (plus one byte): a gzip bomb behind a
// small header fails after a few bytes, not after inflating gigabytes.
class GzReader {
public:
    explicit GzReader(const std::string& path) : path_(path) {
        std::error_code ec;
        if (std::filesystem::is_directory(path, ec))
            throw IoError(fmt::format("idx: {} is a directory, not an IDX file", path));
        f_ = gzopen(path.c_str(), "rb");
        if (!f_) throw IoError(fmt::format("idx: cannot open {}: {}", path, std::strerror(errno)));
    }
    ~GzReader() { gzclose(f_); }
    GzReader(const GzReader&) = delete;
    GzReader& operator=(const GzReader&) = delete;

    // Appends up to n bytes to `out`; returns how many came (fewer at the end of the file).
    std::size_t read(std::vector<std::uint8_t>& out, std::size_t n) {
        std::size_t got = 0;
        while (got < n) {
            const std::size_t want = std::min<std::size_t>(n - got, 1 << 20);
            const std::size_t at = out.size();
            out.resize(at + want);
            const int r = gzread(f_, out.data() + at, static_cast<unsigned>(want));
            if (r < 0) fail_corrupt();
            out.resize(at + static_cast<std::size_t>(r));
            got += static_cast<std::size_t>(r);
            if (r == 0) break;
        }
        // A truncated gzip stream reads as a short file; zlib reports it only here.
        int code = 0;
        gzerror(f_, &code);
        if (code != Z_OK && code != Z_STREAM_END) fail_corrupt();
        return got;
    }

private:
    [[noreturn]] void fail_corrupt() {
        int code = 0;
        const std::string msg = gzerror(f_, &code);
        throw IoError(fmt::format("idx: {} is corrupt: {}", path_, msg));
    }
    std::string path_;
    gzFile f_ = nullptr;
};

std::string first_existing(const std::string& dir, const std::string& stem) {
    for (const auto& name : {stem + ".gz", stem})
        if (std::filesystem::exists(dir + "/" + name)) return dir + "/" + name;
    throw IoError(fmt::format("dataset: neither {0}/{1}.gz nor {0}/{1} exists{2}", dir, stem,
                              dir == kFashionMnistDir ? " (Debian: apt-get install dataset-fashion-mnist)" : ""));
}

}  // namespace

IdxArray read_idx(const std::string& path) {
    GzReader in(path);
    std::vector<std::uint8_t> bytes;
    in.read(bytes, 4);
    if (bytes.size() < 4 || bytes[0] != 0 || bytes[1] != 0)
        throw IoError(fmt::format("idx: {} is not an IDX file (bad magic number)", path));
    if (bytes[2] != 0x08)
        throw IoError(fmt::format("idx: {} holds type 0x{:02x}; only unsigned bytes (0x08) are supported", path, bytes[2]));
    const std::size_t dims = bytes[3];
    if (dims == 0 || in.read(bytes, 4 * dims) < 4 * dims)
        throw IoError(fmt::format("idx: {} is truncated in its header ({} dimensions)", path, dims));
    IdxArray a;
    std::size_t count = 1;
    for (std::size_t d = 0; d < dims; ++d) {
        const std::uint8_t* p = bytes.data() + 4 + 4 * d;
        const std::size_t n = std::size_t{p[0]} << 24 | std::size_t{p[1]} << 16 | std::size_t{p[2]} << 8 | p[3];
        a.shape.push_back(n);
        if (__builtin_mul_overflow(count, n, &count) || count > (std::size_t{1} << 34))
            throw IoError(fmt::format("idx: {} claims an absurd size (shape {}...)", path, to_string(a.shape)));
    }
    // The data, and one byte more to tell a longer file: never more than the header claims.
    std::vector<std::uint8_t> values;
    const std::size_t body = in.read(values, count + 1);
    if (body != count)
        throw IoError(fmt::format("idx: {} is {}: shape {} needs {} bytes of data, the file has {}", path,
                                  body < count ? "truncated" : "longer than its header says", to_string(a.shape),
                                  count, body < count ? fmt::format("{}", body) : std::string("more")));
    a.values = std::move(values);
    return a;
}

template <class T>
basic_dataset<T> basic_dataset<T>::slice(std::size_t begin, std::size_t end) const {
    detail::check_value(begin <= end && end <= size(), "Dataset::slice: [{}, {}) is outside [0, {})", begin, end,
                        size());
    std::vector<std::size_t> idx(end - begin);
    std::iota(idx.begin(), idx.end(), begin);
    return {take_rows(x, idx), take_rows(y, idx)};
}

Dataset load_mnist_format(const std::string& dir, Split split) {
    const std::string prefix = split == Split::train ? "train" : "t10k";
    const std::string image_path = first_existing(dir, prefix + "-images-idx3-ubyte");
    const std::string label_path = first_existing(dir, prefix + "-labels-idx1-ubyte");
    const auto images = read_idx(image_path);
    const auto labels = read_idx(label_path);
    if (images.shape.size() != 3)
        throw IoError(fmt::format("dataset: {} should hold [N, rows, cols] images, has shape {}", image_path,
                                  to_string(images.shape)));
    if (labels.shape.size() != 1 || labels.shape[0] != images.shape[0])
        throw IoError(fmt::format("dataset: {} has labels of shape {} but {} has {} images", label_path,
                                  to_string(labels.shape), image_path, images.shape[0]));
    xt::xarray<float> x = xt::empty<float>(Shape{images.shape[0], images.shape[1], images.shape[2], 1});
    for (std::size_t i = 0; i < images.values.size(); ++i) x.data()[i] = static_cast<float>(images.values[i]) / 255.0f;
    xt::xarray<float> y = xt::empty<float>(Shape{labels.shape[0]});
    for (std::size_t i = 0; i < labels.values.size(); ++i) y.data()[i] = labels.values[i];
    return {Tensor(std::move(x)), Tensor(std::move(y))};
}

Dataset load_fashion_mnist(Split split, const std::string& dir) { return load_mnist_format(dir, split); }

const std::vector<std::string>& fashion_mnist_classes() {
    static const std::vector<std::string> names = {"T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                                                   "Sandal",      "Shirt",   "Sneaker",  "Bag",   "Ankle boot"};
    return names;
}

template <class T>
basic_tensor<T> take_rows(const basic_tensor<T>& x, const std::vector<std::size_t>& indices) {
    Shape shape = x.shape();
    const std::size_t row = shape.empty() || shape[0] == 0 ? 0 : x.size() / shape[0];
    shape[0] = indices.size();
    xt::xarray<T> out = xt::empty<T>(shape);
    for (std::size_t i = 0; i < indices.size(); ++i) {
        detail::check_value(indices[i] < x.shape()[0], "take_rows: row {} of x {}", indices[i], x.shape());
        std::copy_n(x.value().data() + indices[i] * row, row, out.data() + i * row);
    }
    return basic_tensor<T>(std::move(out));
}

namespace {

// SplitMix64's finaliser: a well-mixed 64-bit value from any input.
std::uint64_t mix(std::uint64_t z) {
    z += 0x9E3779B97F4A7C15ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

// One sample [H, W, C] augmented in place from its own draw: crop offsets, then the flip.
template <class T>
void augment_sample(T* x, std::size_t h, std::size_t w, std::size_t c, const Augment& a, std::uint64_t draw,
                    std::vector<T>& scratch) {
    const std::size_t span = 2 * a.crop_padding + 1;
    const auto shift_y = static_cast<std::ptrdiff_t>(draw % span) - static_cast<std::ptrdiff_t>(a.crop_padding);
    const auto shift_x = static_cast<std::ptrdiff_t>((draw >> 21) % span) - static_cast<std::ptrdiff_t>(a.crop_padding);
    const bool flip = a.horizontal_flip && (draw >> 63) != 0;
    scratch.assign(x, x + h * w * c);
    for (std::size_t y = 0; y < h; ++y)
        for (std::size_t xo = 0; xo < w; ++xo) {
            // the cropped image's column (mirrored when flipping), then its source in the input
            const std::size_t col = flip ? w - 1 - xo : xo;
            const auto sy = static_cast<std::ptrdiff_t>(y) + shift_y, sx = static_cast<std::ptrdiff_t>(col) + shift_x;
            T* out = x + (y * w + xo) * c;
            if (sy < 0 || sx < 0 || sy >= static_cast<std::ptrdiff_t>(h) || sx >= static_cast<std::ptrdiff_t>(w))
                std::fill(out, out + c, T(0));
            else
                std::copy_n(scratch.data() + (static_cast<std::size_t>(sy) * w + static_cast<std::size_t>(sx)) * c, c, out);
        }
}

}  // namespace

namespace {

// " (name)" when the source names sample i.
template <class T>
std::string named(const basic_source<T>& source, std::size_t i) {
    const auto n = source.name(i);
    return n.empty() ? n : " (" + n + ")";
}

// Samples idx of a source stacked into a batch: x [n, ...], y [n, ...].
template <class T>
basic_batch<T> stack_samples(const basic_source<T>& source, const std::vector<std::size_t>& idx) {
    std::vector<basic_sample<T>> samples;
    samples.reserve(idx.size());
    for (const auto i : idx) samples.push_back(source.get(i));
    const auto& first = samples.front();
    auto stacked = [&](bool inputs) {
        const auto& proto = inputs ? first.x : first.y;
        Shape shape{samples.size()};
        shape.insert(shape.end(), proto.shape().begin(), proto.shape().end());
        xt::xarray<T> out = xt::empty<T>(shape);
        for (std::size_t j = 0; j < samples.size(); ++j) {
            const auto& a = inputs ? samples[j].x : samples[j].y;
            detail::check_shape(a.shape() == proto.shape(),
                                "DataLoader: sample {}{}'s {} has shape {}, but sample {}{}'s is {}", idx[j],
                                named(source, idx[j]), inputs ? "x" : "y", Shape(a.shape().begin(), a.shape().end()),
                                idx[0], named(source, idx[0]), Shape(proto.shape().begin(), proto.shape().end()));
            std::copy(a.begin(), a.end(), out.data() + j * proto.size());
        }
        return basic_tensor<T>(std::move(out));
    };
    return {stacked(true), stacked(false)};
}

template <class T>
class FunctionSource : public basic_source<T> {
public:
    FunctionSource(std::size_t n, std::function<basic_sample<T>(std::size_t)> get) : n_(n), get_(std::move(get)) {}
    std::size_t size() const override { return n_; }
    basic_sample<T> get(std::size_t i) const override { return get_(i); }

private:
    std::size_t n_;
    std::function<basic_sample<T>(std::size_t)> get_;
};

}  // namespace

template <class T>
std::shared_ptr<basic_source<T>> make_source(std::size_t size,
                                             std::function<basic_sample<std::type_identity_t<T>>(std::size_t)> get) {
    detail::check_value(static_cast<bool>(get), "make_source: the function is empty");
    return std::make_shared<FunctionSource<T>>(size, std::move(get));
}

ImageFolder::ImageFolder(const std::string& root, ImageFolderOptions options) : options_(std::move(options)) {
    namespace fs = std::filesystem;
    detail::check_value(options_.channels <= 4, "ImageFolder: channels must be 0 (the files'), 1, 2, 3 or 4, got {}",
                        options_.channels);
    std::error_code ec;
    if (!fs::is_directory(root, ec)) throw IoError(fmt::format("ImageFolder: {} is not a directory", root));
    auto lower = [](std::string t) {
        for (auto& ch : t) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
        return t;
    };
    auto is_image = [&](const fs::path& p) {
        const auto ext = lower(p.extension().string());
        return std::any_of(options_.extensions.begin(), options_.extensions.end(),
                           [&](const std::string& e) { return lower(e) == ext; });
    };
    auto sorted_entries = [&](const fs::path& dir) {
        std::vector<fs::path> out;
        for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) out.push_back(it->path());
        if (ec) throw IoError(fmt::format("ImageFolder: cannot list {}: {}", dir.string(), ec.message()));
        std::sort(out.begin(), out.end());
        return out;
    };
    for (const auto& dir : sorted_entries(root)) {
        if (!fs::is_directory(dir, ec)) continue;
        const std::size_t label = classes_.size();
        classes_.push_back(dir.filename().string());
        for (const auto& file : sorted_entries(dir))
            if (fs::is_regular_file(file, ec) && is_image(file)) {
                files_.push_back(file.string());
                labels_.push_back(label);
            }
    }
    if (classes_.empty())
        throw IoError(fmt::format("ImageFolder: {} has no class subdirectories (root/class_name/image.png)", root));
    if (files_.empty())
        throw IoError(fmt::format("ImageFolder: the {} class directories of {} hold no {} files", classes_.size(), root,
                                  fmt::join(options_.extensions, "/")));
}

Sample ImageFolder::get(std::size_t i) const {
    detail::check_value(i < files_.size(), "ImageFolder: sample {} of {}", i, files_.size());
    return {io::load_png(files_[i], options_.channels), xt::xarray<float>(static_cast<float>(labels_[i]))};
}

Dataset read_csv(const std::string& path, const CsvOptions& o) {
    std::ifstream f(path);
    if (!f) throw IoError(fmt::format("csv: cannot open {}", path));
    std::vector<float> x, y;
    std::size_t columns = 0, rows = 0, line_no = 0;
    std::string line;
    while (std::getline(f, line)) {
        ++line_no;
        if (!line.empty() && line.back() == '\r') line.pop_back();
        if (line_no == 1 && o.header) continue;
        if (line.find_first_not_of(" \t") == std::string::npos) continue;
        std::vector<float> values;
        std::size_t start = 0;
        while (true) {
            const auto end = line.find(o.delimiter, start);
            const std::string cell = line.substr(start, end == std::string::npos ? std::string::npos : end - start);
            const char* b = cell.c_str();
            char* stop = nullptr;
            errno = 0;
            const float v = std::strtof(b, &stop);
            while (stop && (*stop == ' ' || *stop == '\t')) ++stop;
            if (stop == b || *stop != '\0' || errno == ERANGE)
                throw IoError(fmt::format("csv: {}:{}: column {} ('{}') is not a number", path, line_no,
                                          values.size() + 1, cell));
            values.push_back(v);
            if (end == std::string::npos) break;
            start = end + 1;
        }
        if (rows == 0) {
            columns = values.size();
            if (o.labels && columns < 2)
                throw IoError(fmt::format("csv: {}:{}: one column; a label column needs at least one feature", path,
                                          line_no));
            if (o.labels && o.label_column && *o.label_column >= columns)
                throw IoError(fmt::format("csv: {}: label column {} of {} columns", path, *o.label_column, columns));
        } else if (values.size() != columns) {
            throw IoError(fmt::format("csv: {}:{}: {} columns, the first row has {}", path, line_no, values.size(),
                                      columns));
        }
        const std::size_t label = o.labels ? o.label_column.value_or(columns - 1) : columns;
        for (std::size_t c = 0; c < columns; ++c) (c == label ? y : x).push_back(values[c]);
        ++rows;
    }
    if (f.bad()) throw IoError(fmt::format("csv: reading {} failed", path));
    if (rows == 0) throw IoError(fmt::format("csv: {} holds no rows", path));
    const std::size_t features = o.labels ? columns - 1 : columns;
    Dataset out{from_vector(x, {rows, features}), {}};
    if (o.labels) out.y = from_vector(y, {rows});
    return out;
}

template <class T>
basic_dataset<T> normalize(const basic_dataset<T>& data, const std::vector<double>& mean, const std::vector<double>& std) {
    const std::size_t c = data.x.dim() ? data.x.shape().back() : 0;
    detail::check_value(data.x.dim() >= 2 && mean.size() == c && std.size() == c,
                        "normalize: mean and std need one entry per channel of x {} (got {} and {})", data.x.shape(),
                        mean.size(), std.size());
    for (std::size_t j = 0; j < c; ++j)
        detail::check_value(std[j] > 0 && std::isfinite(std[j]) && std::isfinite(mean[j]),
                            "normalize: channel {} has mean {} and std {}; std must be positive and both finite", j,
                            mean[j], std[j]);
    xt::xarray<T> x = data.x.value();
    for (std::size_t k = 0; k < x.size(); ++k)
        x.data()[k] = static_cast<T>((x.data()[k] - mean[k % c]) / std[k % c]);
    return {basic_tensor<T>(std::move(x)), data.y};
}

// The batch being prepared on the worker thread, and which one it is.
template <class T>
struct basic_data_loader<T>::Prefetch {
    std::size_t epoch = 0, index = 0;
    std::future<basic_batch<T>> batch;
};

template <class T>
basic_data_loader<T>::basic_data_loader(Dataset data, LoaderOptions options)
    : data_(std::move(data)), options_(options) {
    detail::check_value(data_.size() > 0, "DataLoader: the dataset is empty");
    detail::check_shape(data_.y.defined() && data_.y.shape()[0] == data_.size(),
                        "DataLoader: x {} and y {} hold different numbers of samples", data_.x.shape(),
                        data_.y.defined() ? data_.y.shape() : Shape{});
    detail::check_shape(!options.augment.enabled() || data_.x.dim() == 4,
                        "DataLoader: augmentation needs images x [N, H, W, C]; x {}", data_.x.shape());
    check();
}

template <class T>
basic_data_loader<T>::basic_data_loader(std::shared_ptr<const basic_source<T>> source, LoaderOptions options)
    : source_(std::move(source)), options_(options) {
    detail::check_value(source_ != nullptr, "DataLoader: the source is null");
    detail::check_value(source_->size() > 0, "DataLoader: the source is empty");
    check();
}

template <class T>
void basic_data_loader<T>::check() const {
    const LoaderOptions& options = options_;
    detail::check_value(options.batch_size > 0, "DataLoader: batch_size must be positive");
    detail::check_value(options.shard < options.shards, "DataLoader: shard {} of {} shards", options.shard,
                        options.shards);
    std::size_t global = 0;
    detail::check_value(!__builtin_mul_overflow(options.batch_size, options.shards, &global),
                        "DataLoader: batch_size {} x {} shards overflows the size of a global batch",
                        options.batch_size, options.shards);
}

template <class T>
basic_data_loader<T>::basic_data_loader(const basic_data_loader& other)
    : data_(other.data_), source_(other.source_), options_(other.options_) {}

template <class T>
basic_data_loader<T>& basic_data_loader<T>::operator=(const basic_data_loader& other) {
    if (this != &other) {
        if (prefetch_ && prefetch_->batch.valid()) prefetch_->batch.wait();
        prefetch_.reset();
        data_ = other.data_;
        source_ = other.source_;
        options_ = other.options_;
        order_epoch_ = static_cast<std::size_t>(-1);
    }
    return *this;
}

template <class T>
basic_data_loader<T>::~basic_data_loader() {
    if (prefetch_ && prefetch_->batch.valid()) prefetch_->batch.wait();
}

template <class T>
std::size_t basic_data_loader<T>::samples() const {
    return source_ ? source_->size() : data_.size();
}

template <class T>
std::size_t basic_data_loader<T>::size() const {
    const std::size_t n = samples(), global = options_.batch_size * options_.shards;
    // A last, partial global batch counts when every shard gets a sample of it.
    return n / global + (!options_.drop_last && n % global >= options_.shards ? 1 : 0);
}

template <class T>
const std::vector<std::size_t>& basic_data_loader<T>::order(std::size_t epoch) const {
    if (order_epoch_ != epoch) {
        order_.resize(samples());
        std::iota(order_.begin(), order_.end(), 0);
        if (options_.shuffle) {
            std::mt19937_64 g(options_.seed * 0x9E3779B97F4A7C15ull + epoch);
            std::shuffle(order_.begin(), order_.end(), g);
        }
        order_epoch_ = epoch;
    }
    return order_;
}

template <class T>
basic_batch<T> basic_data_loader<T>::batch(std::size_t epoch, std::size_t i) const {
    detail::check_value(i < size(), "DataLoader: batch {} of an epoch of {}", i, size());
    std::optional<Batch> ready;
    if (prefetch_ && prefetch_->batch.valid()) {
        // The worker's batch, when it is the one asked for (its error too); otherwise it is
        // finished and dropped, so that nothing runs beside this call.
        const bool wanted = prefetch_->epoch == epoch && prefetch_->index == i;
        if (wanted) {
            ready = prefetch_->batch.get();
        } else {
            try {
                prefetch_->batch.get();
            } catch (const std::exception&) {  // a batch nobody asked for
            }
        }
    }
    Batch b = ready ? std::move(*ready) : make_batch(epoch, i);
    if (options_.prefetch) {
        if (!prefetch_) prefetch_ = std::make_unique<Prefetch>();
        const bool last = i + 1 == size();
        prefetch_->epoch = last ? epoch + 1 : epoch;
        prefetch_->index = last ? 0 : i + 1;
        prefetch_->batch = std::async(std::launch::async, [this, e = prefetch_->epoch, k = prefetch_->index] {
            return make_batch(e, k);
        });
    }
    return b;
}

template <class T>
basic_batch<T> basic_data_loader<T>::make_batch(std::size_t epoch, std::size_t i) const {
    const auto& o = order(epoch);
    // This shard's part of global batch i.
    const std::size_t global = options_.batch_size * options_.shards, first = i * global;
    const std::size_t len = std::min(global, o.size() - first), r = options_.shard;
    // In 128 bits: r · len may exceed 2^64 for a huge number of shards.
    __extension__ typedef unsigned __int128 Wide;
    const auto begin = static_cast<std::size_t>(first + Wide{r} * len / options_.shards);
    const auto end = static_cast<std::size_t>(first + Wide{r + 1} * len / options_.shards);
    const std::vector<std::size_t> idx(o.begin() + static_cast<std::ptrdiff_t>(begin),
                                       o.begin() + static_cast<std::ptrdiff_t>(end));
    basic_batch<T> b = source_ ? stack_samples(*source_, idx) : basic_batch<T>{take_rows(data_.x, idx), take_rows(data_.y, idx)};
    const Augment& a = options_.augment;
    if (a.enabled()) {
        detail::check_shape(b.x.dim() == 4, "DataLoader: augmentation needs images x [N, H, W, C]; a batch's x {}",
                            b.x.shape());
        const Shape& s = b.x.shape();
        const std::size_t per = s[1] * s[2] * s[3];
        std::vector<T> scratch;
        T* x = b.x.mutable_value().data();
        for (std::size_t j = 0; j < idx.size(); ++j)
            augment_sample(x + j * per, s[1], s[2], s[3], a, mix(mix(mix(options_.seed) ^ epoch) ^ idx[j]), scratch);
    }
    return b;
}

#define XGRAD_INSTANTIATE(T)                                                                   \
    template std::shared_ptr<basic_source<T>> make_source<T>(std::size_t, std::function<basic_sample<T>(std::size_t)>); \
    template struct basic_dataset<T>;                                                          \
    template class basic_data_loader<T>;                                                       \
    template basic_tensor<T> take_rows(const basic_tensor<T>&, const std::vector<std::size_t>&); \
    template basic_dataset<T> normalize(const basic_dataset<T>&, const std::vector<double>&, const std::vector<double>&);
XGRAD_INSTANTIATE(float)
XGRAD_INSTANTIATE(double)
#undef XGRAD_INSTANTIATE

}  // namespace xgrad::data
